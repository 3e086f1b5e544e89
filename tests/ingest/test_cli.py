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


def test_ingest_without_a_terminal_prints_progress_on_stderr_and_results_on_stdout(
    runner: CliRunner, tmp_path: Path
) -> None:
    """Not a TTY (a pipe, CI): stdout keeps only the result lines and the summary; stderr has plain progress lines
    and the failed file, named with its reason before the run's last progress line."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a-empty.txt").write_bytes(b"")
    (docs / "backup.md").write_text("# Backups\n\nDaily backups are kept for thirty days in the vault.\n")
    (docs / "travel.md").write_text("# Travel\n\nTravel expenses are reimbursed within two weeks.\n")
    data = ["--data-dir", str(tmp_path / "data")]
    result = runner.invoke(app, ["ingest", str(docs), *data])
    assert result.exit_code == 1, result.output

    from assistant.storage import Database
    from assistant.storage.orm import Chunk, Document

    db = Database(f"sqlite:///{tmp_path / 'data' / 'assistant.db'}")
    with db.session() as session:
        stored = {d.source: session.query(Chunk).filter_by(document_id=d.id).count() for d in session.query(Document)}
    lines, total = result.stdout.splitlines(), sum(stored.values())
    failed = [line for line in lines if line.startswith("failed")]
    assert len(failed) == 1 and failed[0].startswith(f"failed     {(docs / 'a-empty.txt').resolve()}  (error 422: ")
    assert sorted(set(lines[:-1]) - set(failed)) == sorted(f"ingested   {s}  ({n} chunks)" for s, n in stored.items())
    assert lines[-1].startswith("{'failed': 1, 'ingested': 2} in ") and lines[-1].endswith(f" s; {total} chunks")

    errors = result.stderr.splitlines()
    progress = [i for i, line in enumerate(errors) if line.startswith("ingest: ")]
    failure = errors.index(failed[0])  # the same line as on stdout
    assert errors[progress[0]].startswith("ingest: 1/3, 0 chunks embedded, 0 stored, ")
    assert errors[progress[-1]].startswith(f"ingest: 3/3, {total} chunks embedded, {total} stored, ")
    assert failure < progress[-1]  # named while the run went on


def test_eval_retrieval_shows_its_stages_on_stderr(runner: CliRunner, tmp_path: Path) -> None:
    import json

    questions = [{"id": t, "question": f"When is the {t} desk open?", "answers": []} for t in ("it", "hr", "travel")]
    paragraphs = [{"context": f"The {q['id']} desk opens at {n} o'clock.", "qas": [q]} for n, q in enumerate(questions)]
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"title": "Desks", "paragraphs": paragraphs}]}))
    result = runner.invoke(app, ["eval", "retrieval", "--squad", str(squad), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["mode", "dense", "bm25", "hybrid"]
    finished = [line.split(", ")[0] for line in result.stderr.splitlines() if "3/3" in line]
    assert finished == ["ingest corpus: 3/3", "search dense: 3/3", "search bm25: 3/3", "search hybrid: 3/3"]
