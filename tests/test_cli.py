"""The `assistant` command: help, settings display, model listing and error reporting."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "chat", "models", "config", "eval"):
        assert command in result.output


def test_config_show_reflects_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_ENGINE__MAX_NUM_SEQS", "7")
    result = runner.invoke(app, ["config", "show", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "max_num_seqs: 7" in result.output


def test_models_list(tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "list", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "smollm2-135m-instruct" in result.output and "all-minilm-l6-v2" in result.output


def test_chat_with_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["chat", "hi", "--data-dir", str(tmp_path)], env={"ASSISTANT_MODELS__LM": "org/missing"}
    )
    assert result.exit_code == 1
    assert "never downloads" in result.output


def test_chat_from_the_terminal(tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {
        "ASSISTANT_MODELS__LM": str(tiny_model_dir),
        "ASSISTANT_ENGINE__BACKEND": "transformers",
        "ASSISTANT_ENGINE__MAX_MODEL_LEN": "512",
    }
    result = runner.invoke(
        app, ["chat", "What is the capital of France?", "--max-tokens", "8", "--data-dir", str(tmp_path)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "[response id: chatcmpl-" in result.output
