"""Config checks name the flag to change; the registry writes versions atomically; the CLI delegates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.errors import AssistantError, ConfigError
from assistant.storage.db import Database
from training.config import LORA_TARGETS, TrainingConfigError, build_run_config, lora_target_modules
from training.options import options_from_flags
from training.registry import AdapterRegistry


@pytest.mark.parametrize(
    ("method", "options", "flag"),
    [
        ("psft", {"eps_low": 1.5}, "eps_low"),
        ("psft", {"eps_high": 0}, "eps_high"),
        ("sft", {"lora_alpha": 0}, "lora_alpha"),
        ("sft", {"eval_split": 1.0}, "eval_split"),
        ("dpo", {"lora_r": 0}, "lora_r"),
        ("dpo", {"beta": -1}, "beta"),
        ("sft", {"eps_low": 0.1}, "eps_low"),  # a PSFT option on SFT
        ("sft", {"no_such_option": 1}, "no_such_option"),
    ],
)
def test_config_errors_name_the_flag(tmp_path: Path, method: str, options: dict, flag: str) -> None:
    with pytest.raises(TrainingConfigError) as info:
        build_run_config(method, tmp_path, options)
    assert info.value.param == flag and f"--{flag.replace('_', '-')}" in info.value.message


def test_psft_defaults_and_lora_table(tmp_path: Path) -> None:
    config = build_run_config("psft", tmp_path, {})
    assert (config.eps_low, config.eps_high) == (0.2, 0.28)
    assert lora_target_modules("llama") == LORA_TARGETS["qwen2"] == LORA_TARGETS["mistral"]
    assert lora_target_modules("llama", ["q_proj"]) == ["q_proj"]
    with pytest.raises(TrainingConfigError, match="--lora-target-modules"):
        lora_target_modules("mamba")


def test_flags_map_to_fields() -> None:
    options = options_from_flags("psft", {"lr": 1e-3, "eps_high": 0.3}, ["warmup_steps=2"], "q_proj,v_proj")
    assert options == {"learning_rate": 1e-3, "eps_high": 0.3, "warmup_steps": 2,
                       "lora_target_modules": ["q_proj", "v_proj"]}  # fmt: skip
    with pytest.raises(TrainingConfigError, match="--beta"):
        options_from_flags("sft", {"beta": 0.2})


def test_qlora_needs_cuda_and_bitsandbytes() -> None:
    import torch

    from training.modeling import quantization_config

    if torch.cuda.is_available():
        pytest.skip("CPU-only check")
    with pytest.raises(ConfigError, match=r"bitsandbytes|CUDA"):
        quantization_config(True)


def fake_adapter(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    (path / "adapter_model.safetensors").write_bytes(b"0")
    return path


def test_registry_versions_and_atomic_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    db.migrate()
    registry = AdapterRegistry(db, tmp_path / "adapters")
    source = fake_adapter(tmp_path / "run" / "adapter")
    first = registry.register("kb", source, base_model="b", method="sft", lineage={"a": 1}, metrics={})
    second = registry.register("kb", source, base_model="b", method="dpo", lineage={}, metrics={}, parent_id=first.id)
    assert (first.version, second.version) == (1, 2) and registry.resolve("kb:v1").id == first.id
    assert registry.resolve("kb").parent_id == first.id

    from assistant.storage.orm import Adapter

    def broken_init(self: Adapter, **kwargs: object) -> None:
        raise RuntimeError("database down")

    monkeypatch.setattr(Adapter, "__init__", broken_init)
    with pytest.raises(RuntimeError):
        registry.register("kb", source, base_model="b", method="sft", lineage={}, metrics={})
    assert sorted(p.name for p in (tmp_path / "adapters" / "kb").iterdir()) == ["v1", "v2"]
    with pytest.raises(AssistantError, match="not a PEFT adapter"):
        registry.register("kb", tmp_path, base_model="b", method="sft", lineage={}, metrics={})


def test_cli_train_sft(tmp_path: Path, tiny_model_dir: Path, sft_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from cli import train_cmds

    monkeypatch.setenv("ASSISTANT_MODELS__LM", str(tiny_model_dir))
    app = typer.Typer()
    train_cmds.register(app, typer.Typer())
    args = [
        "train",
        "sft",
        "--data",
        str(sft_file),
        "--data-dir",
        str(tmp_path / "d"),
        "--name",
        "cli-kb",
        "--max-steps",
        "1",
        "--lora-r",
        "4",
        "--batch-size",
        "2",
        "--eval-split",
        "0.25",
        "--set",
        "save_steps=100",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.rindex('{\n  "name"') :])["version"] == 1
    bad = CliRunner().invoke(app, ["train", "dpo", "--data", str(sft_file), "--data-dir", str(tmp_path / "d")])
    assert bad.exit_code == 1 and "field 'prompt' is missing" in bad.output
