"""Settings: defaults, YAML file, ASSISTANT_* environment overrides, validation errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from assistant.errors import ConfigError
from assistant.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("ASSISTANT_"):
            monkeypatch.delenv(key)


def test_defaults_point_at_the_embedded_default() -> None:
    settings = Settings()
    assert settings.models.lm == "smollm2-135m-instruct"
    assert settings.resolved_database_url == f"sqlite:///{Path('data') / 'assistant.db'}"
    assert settings.engine.enable_lora


def test_yaml_then_env_then_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text(
        "data_dir: /srv/assistant\nengine:\n  max_model_len: 1024\n  dtype: bfloat16\nretrieval:\n  top_k: 3\n"
    )
    monkeypatch.setenv("ASSISTANT_ENGINE__MAX_MODEL_LEN", "4096")
    settings = load_settings(config, retrieval={"top_k": 7})
    assert settings.data_dir == Path("/srv/assistant")
    assert settings.engine.dtype == "bfloat16"  # from YAML
    assert settings.engine.max_model_len == 4096  # env beats YAML
    assert settings.retrieval.top_k == 7  # explicit argument beats both


def test_invalid_values_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_ENGINE__MAX_MODEL_LEN", "10")
    with pytest.raises(ValidationError, match="max_model_len"):
        Settings()


def test_cross_field_check_names_the_flag() -> None:
    with pytest.raises(ValidationError, match="chunk_overlap"):
        Settings(ingest={"chunk_tokens": 50, "chunk_overlap": 80})


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("engine:\n  max_model_length: 1024\n")
    with pytest.raises(ValidationError, match="max_model_length"):
        load_settings(config)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_every_field_is_described() -> None:
    from pydantic import BaseModel

    def walk(model: type[BaseModel]) -> list[str]:
        missing = [f"{model.__name__}.{name}" for name, f in model.model_fields.items() if not f.description]
        for f in model.model_fields.values():
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
                missing += walk(f.annotation)
        return missing

    assert walk(Settings) == []
