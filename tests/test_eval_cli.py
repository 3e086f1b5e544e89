"""`assistant eval answers`: a SQuAD v2.0-format file through the in-process chat path (tiny model, real retrieval)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from assistant.prompts import NO_SOURCES_ANSWER
from cli.main import app
from tests.fixtures.squad_eval import DOCS, QUESTIONS, squad_v2_bytes


def test_eval_answers_writes_the_report(tiny_model_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {
        "ASSISTANT_MODELS__LM": str(tiny_model_dir),
        "ASSISTANT_ENGINE__BACKEND": "transformers",
        "ASSISTANT_ENGINE__MAX_MODEL_LEN": "512",
    }
    data = ["--data-dir", str(tmp_path / "data")]
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    assert runner.invoke(app, ["ingest", str(docs), "--collection", "kb", *data], env=env).exit_code == 0
    questions = tmp_path / "dev-v2.json"
    questions.write_bytes(squad_v2_bytes())
    out = tmp_path / "report"

    result = runner.invoke(
        app, ["eval", "answers", str(questions), "--collection", "kb", "--out", str(out), *data], env=env
    )
    assert result.exit_code == 0, result.output
    assert "F1" in result.stdout and "abstention P / R" in result.stdout
    assert [line.split(", ")[0] for line in result.stderr.splitlines() if line.startswith("questions: ")][-1] == (
        "questions: 4/4"  # the progress line (stderr), once every question is answered
    )
    report = json.loads((out / "report.json").read_text())
    assert sorted(r["id"] for r in report["results"]) == sorted(q[0] for q in QUESTIONS)
    assert report["metrics"]["questions"] == 4 and report["metrics"]["unanswerable"] == 1
    football = next(r for r in report["results"] if r["id"] == "q-football")
    assert football["reply"] == NO_SOURCES_ANSWER and report["metrics"]["abstention"]["recall"] == 1.0
    assert (out / "report.md").read_text().startswith("# Answer evaluation")
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")

    from assistant.storage import ChatRecord, Database

    db = Database(f"sqlite:///{tmp_path / 'data' / 'assistant.db'}")
    with db.session() as session:
        stored = [row.answer for row in session.query(ChatRecord).all()]
    assert sorted(stored) == sorted(r["reply"] for r in report["results"])  # every reply came from the chat service

    missing = runner.invoke(app, ["eval", "answers", str(tmp_path / "none.json"), *data], env=env)
    assert missing.exit_code == 1 and "does not exist" in missing.output
