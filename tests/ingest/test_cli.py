"""The ingest/search/index CLI commands end to end (the embedder is the session's, to avoid reloading it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.embedding import Embedder
from cli.main import app


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, embedder: Embedder) -> CliRunner:
    monkeypatch.setattr("assistant.embedding.make_embedder", lambda settings, **_: embedder)
    monkeypatch.delenv("ASSISTANT_CONFIG", raising=False)
    return CliRunner()


def test_ingest_search_and_index_commands(runner: CliRunner, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    doc = tmp_path / "backup.md"
    doc.write_text("# Backups\n\nDaily backups are kept for thirty days in the vault.\n")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"")
    ingested = runner.invoke(app, ["ingest", str(doc), str(bad), "--collection", "it", *data])
    assert ingested.exit_code == 1 and "ingested" in ingested.output and "error 422" in ingested.output
    found = runner.invoke(app, ["search", "how long are backups kept", "--k", "1", "--collection", "it", *data])
    assert found.exit_code == 0, found.output
    assert "backup.md" in found.output and "Backups" in found.output
    checked = runner.invoke(app, ["index", "check", *data])
    assert checked.exit_code == 0 and "consistent" in checked.output
    rebuilt = runner.invoke(app, ["index", "rebuild", *data])
    assert rebuilt.exit_code == 0 and "1 vectors" in rebuilt.output
    wrong = runner.invoke(app, ["search", "backups", "--mode", "fuzzy", *data])
    assert wrong.exit_code == 1
