"""The SQuAD retrieval harness on a tiny SQuAD-format file (and, marked slow, on the shared dev file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.embedding import Embedder
from ingest.retrieval_eval import load_squad, run_squad_evaluation
from tests.fixtures.retrieval_env import make_settings

PARAGRAPHS = {
    "Backups": [
        ("Backups of the file servers run every night at two o'clock.", "When do backups run?"),
        ("Daily backups are kept for thirty days in the vault.", "How long are daily backups kept?"),
    ],
    "Leave": [
        ("Every employee gets twenty-five days of paid leave per year.", "How many days of paid leave are there?"),
        ("Laptops are replaced every three years by the IT desk.", "How often are laptops replaced?"),
    ],
}


def _squad_file(path: Path) -> Path:
    def paragraph(context: str, question: str) -> dict[str, object]:
        return {"context": context, "qas": [{"id": question, "question": question, "answers": []}]}

    data = [{"title": title, "paragraphs": [paragraph(c, q) for c, q in ps]} for title, ps in PARAGRAPHS.items()]
    path.write_text(json.dumps({"data": data}))
    return path


def test_tiny_squad_evaluation(tmp_path: Path, embedder: Embedder) -> None:
    squad = _squad_file(tmp_path / "squad.json")
    corpus = load_squad(squad)
    assert [p.key for p in corpus.passages] == ["000-000", "000-001", "001-000", "001-001"]
    scores = run_squad_evaluation(make_settings(tmp_path / "unused"), squad, embedder=embedder)
    assert set(scores) == {"dense", "bm25", "hybrid"}
    assert scores["hybrid"].queries == 4 and scores["hybrid"].recall_at_1 == 1.0
    assert not (tmp_path / "unused").exists()  # evaluation never touches the configured data directory


@pytest.mark.slow
def test_shared_squad_hybrid_beats_dense(shared_data: Path, embedder: Embedder, tmp_path: Path) -> None:
    scores = run_squad_evaluation(make_settings(tmp_path), shared_data / "squad-v1.1-dev-part1.json", 300, embedder)
    assert scores["hybrid"].recall_at_5 >= 1.05 * scores["dense"].recall_at_5
    assert scores["hybrid"].recall_at_5 >= scores["bm25"].recall_at_5
