"""Export: a merged model generates exactly what the adapter generates (transformers; and vLLM serving both, slow),
and `--adapter-only` carries the base fingerprint; through the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from assistant.settings import EngineSettings
from training.modeling import base_fingerprint

PROMPT = [{"role": "user", "content": "How long is the warranty?"}]


def greedy(model: Any, tokenizer: Any, tokens: int = 12) -> list[int]:
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return list(out[0, ids["input_ids"].shape[1] :].tolist())


def cli_export(tiny_model_dir: Path, data_dir: Path, *args: str) -> dict[str, Any]:
    from cli.main import app

    env = {"ASSISTANT_MODELS__LM": str(tiny_model_dir)}
    result = CliRunner().invoke(app, ["export", *args, "--data-dir", str(data_dir)], env=env)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def merged_dir(tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "merged"
    cli_export(tiny_model_dir, out.parent / "data", str(tiny_adapter_dir), "--merged", str(out))
    return out


def test_merged_model_equals_adapter(tiny_model_dir: Path, tiny_adapter_dir: Path, merged_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    assert tokenizer.chat_template and (merged_dir / "model.safetensors").is_file()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, str(tiny_adapter_dir)).eval()
    assert greedy(merged, tokenizer) == greedy(adapted, tokenizer)
    with adapted.disable_adapter():
        assert greedy(adapted, tokenizer) != greedy(merged, tokenizer)  # the merge changed the weights
    modelfile = (merged_dir / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM {merged_dir.resolve()}") and 'PARAMETER stop "<|im_end|>"' in modelfile
    manifest = json.loads((merged_dir / "export.json").read_text())
    assert manifest["export"] == "merged" and manifest["base_fingerprint"] == base_fingerprint(tiny_model_dir)


def test_adapter_only_and_refusals(tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path: Path) -> None:
    from cli.main import app

    out = tmp_path / "adapter"
    result = cli_export(tiny_model_dir, tmp_path / "data", str(tiny_adapter_dir), "--adapter-only", str(out))
    assert set(result["files"]) == {"adapter_config.json", "adapter_model.safetensors", "export.json"}
    assert (out / "adapter_model.safetensors").read_bytes() == (
        tiny_adapter_dir / "adapter_model.safetensors"
    ).read_bytes()
    assert json.loads((out / "export.json").read_text())["base_fingerprint"]["hidden_size"] == 128
    env = {"ASSISTANT_MODELS__LM": str(tiny_model_dir)}
    again = CliRunner().invoke(app, ["export", str(tiny_adapter_dir), "--adapter-only", str(out)], env=env)
    assert again.exit_code == 1 and "not empty" in again.output
    both = CliRunner().invoke(app, ["export", str(tiny_adapter_dir)], env=env)
    assert both.exit_code == 1 and "exactly one of" in both.output


async def _complete(vllm: Any, adapter: Any = None) -> str:
    from assistant.engine import SamplingOptions
    from assistant.prompts import build_rag_messages

    prompt = vllm.render_chat(build_rag_messages(PROMPT, None))
    text = ""
    async for chunk in vllm.generate("req", prompt, SamplingOptions(max_tokens=12, temperature=0.0), adapter):
        text += chunk.text
    return text


def _served(model_dir: Path, adapter_dir: Path | None) -> str:
    from assistant.engine import AdapterRef
    from serving.engines.vllm_engine import VLLMEngine

    settings = EngineSettings(max_model_len=512, max_num_seqs=4, dtype="float32")  # type: ignore[call-arg]
    loop = asyncio.new_event_loop()
    vllm = VLLMEngine(model_dir, settings, "tiny")
    loop.run_until_complete(vllm.start())
    try:
        ref = None
        if adapter_dir is not None:
            ref = AdapterRef("kb", 1, str(adapter_dir))
            loop.run_until_complete(vllm.add_adapter(ref))
        return loop.run_until_complete(_complete(vllm, ref))
    finally:
        loop.run_until_complete(vllm.shutdown())
        loop.close()


@pytest.mark.slow
def test_vllm_serves_merged_model_like_the_adapter(
    tiny_model_dir: Path, tiny_adapter_dir: Path, merged_dir: Path
) -> None:
    with_adapter = _served(tiny_model_dir, tiny_adapter_dir)
    merged = _served(merged_dir, None)
    assert merged == with_adapter and merged.strip()
