"""Model provisioning: the GGUF default converts once, atomically; unknown hub ids fail with a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.errors import ModelNotAvailableError
from assistant.model_files import convert_gguf, model_report, resolve_embedder, resolve_lm, smollm2_gguf
from assistant.settings import Settings


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return resolve_lm(Settings(data_dir=tmp_path_factory.mktemp("models-data")))


def test_default_lm_is_converted_to_a_loadable_directory(converted: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    assert (converted / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(converted).model_type == "llama"
    tokenizer = AutoTokenizer.from_pretrained(converted)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered.endswith("<|im_start|>assistant\n")


def test_conversion_is_idempotent(converted: Path) -> None:
    before = (converted / "model.safetensors").stat().st_mtime_ns
    assert convert_gguf(smollm2_gguf(), converted) == converted
    assert (converted / "model.safetensors").stat().st_mtime_ns == before


def test_interrupted_conversion_leaves_no_half_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed mid-conversion")

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", crash)
    dest = tmp_path / "models" / "smollm2"
    with pytest.raises(KeyboardInterrupt):
        convert_gguf(smollm2_gguf(), dest)
    assert not dest.exists()
    assert list((tmp_path / "models").iterdir()) == []


def test_hub_id_not_in_cache_says_how_to_fix(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, models={"lm": "some-org/not-downloaded-model"})
    with pytest.raises(ModelNotAvailableError, match="never downloads") as info:
        resolve_lm(settings)
    assert "huggingface-cli download some-org/not-downloaded-model" in info.value.message


def test_local_directory_without_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match=r"config\.json"):
        resolve_lm(Settings(data_dir=tmp_path, models={"lm": str(tmp_path / "empty")}))


def test_embedder_from_package_loads() -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(resolve_embedder(Settings())), device="cpu")
    assert model.encode(["hello world"]).shape == (1, 384)


def test_report_without_prepare_converts_nothing(tmp_path: Path) -> None:
    rows = {row.role: row for row in model_report(Settings(data_dir=tmp_path))}
    assert not rows["lm"].ready and "assistant models prepare" in rows["lm"].detail
    assert rows["embedder"].ready
    assert not (tmp_path / "models").exists()
