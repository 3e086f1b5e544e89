"""Progress of a folder ingest, an index rebuild and the retrieval evaluation, through the real parts (MiniLM,
FAISS, SQLite): the counts the callbacks get are checked against the rows the run wrote."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from assistant.embedding import Embedder
from assistant.storage.orm import Chunk, Document
from ingest import ingest_service as service_module
from ingest import store
from ingest.ingest_service import IngestProgress, IngestService
from ingest.retrieval_eval import run_squad_evaluation
from tests.fixtures.retrieval_env import make_settings

TOPICS = ["backups", "travel", "holidays", "laptops", "printers", "parking", "canteen", "badges"]
WORDS = [
    "desk", "ticket", "vault", "night", "server", "badge", "invoice", "receipt", "portal", "week", "month", "lunch",
    "noon", "floor", "key", "door", "lamp", "cable", "screen", "phone", "queue", "form", "rule", "team", "budget",
    "audit", "report", "folder", "drive", "backup", "restore",
]  # fmt: skip


def _stored(service: IngestService) -> tuple[int, int]:
    """(ready documents, their chunk rows) as the database has them now."""
    with service.db.session() as session:
        ready = Document.status == "ready"
        documents = session.scalar(select(func.count(Document.id)).where(ready)) or 0
        chunks = session.scalar(select(func.count(Chunk.id)).join(Document).where(ready)) or 0
    return documents, chunks


def _folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a-broken.pdf").write_bytes(b"%PDF-1.4\nthis is not a pdf")  # sorted first: fails before any write
    for n, topic in enumerate(TOPICS):  # distinct random text (no near duplicates), 1 to about 6 chunks
        words = random.Random(n).choices(WORDS, k=80 * (n + 1))
        (docs / f"{topic}.txt").write_text(f"About {topic}. " + " ".join(words) + ".")
    return docs


def test_folder_ingest_reports_each_file_as_it_is_done(
    make_service: Callable[..., IngestService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service(embed_batch_size=4)  # small groups: several written one after another
    monkeypatch.setattr(service_module, "EMBED_SLICE", 3)
    events: list[tuple[IngestProgress, tuple[int, int]]] = []  # with what the database held at that moment
    slices: list[IngestProgress] = []  # reported from the embedding thread

    def record(event: IngestProgress) -> None:
        if event.result is None:
            slices.append(event)
        else:
            events.append((event, _stored(service)))

    report = service.ingest_paths([_folder(tmp_path), tmp_path / "missing.txt"], "kb", record)

    total = len(TOPICS) + 2
    assert [e.files_done for e, _ in events] == list(range(1, total + 1))
    assert {e.files_total for e, _ in events} == {total}
    assert sorted(id(e.result) for e, _ in events) == sorted(id(r) for r in report.files)  # each result, once
    chunks = [e.chunks for e, _ in events]
    assert chunks == sorted(chunks) and chunks[-1] == report.chunks == _stored(service)[1]
    for event, (_documents, stored_chunks) in events:
        assert event.chunks <= stored_chunks  # counted only once written
    written = [e for e, _ in events if e.result is not None and e.result.status == "ingested"]
    assert len(written) == len(TOPICS)
    assert any(documents < len(TOPICS) for _, (documents, _c) in events[2:])  # stored files reported group by group

    embedded = [e.chunks_embedded for e in slices]
    assert embedded == sorted(embedded) and embedded[-1] == report.chunks and len(slices) >= report.chunks // 3
    assert any(e.chunks_embedded > e.chunks for e in slices)  # counted while their group was still being embedded

    failures = [(e, stored) for e, stored in events if e.result is not None and e.result.status == "failed"]
    assert {Path(e.result.source).name: e.result.status_code for e, _ in failures if e.result} == {
        "a-broken.pdf": 422,
        "missing.txt": 404,
    }
    broken = next(stored for e, stored in failures if e.result and e.result.source.endswith("a-broken.pdf"))
    assert broken == (0, 0)  # reported during the run, before any file was written
    assert _stored(service) == (len(TOPICS), report.chunks)


def test_rebuild_reports_the_chunks_it_embeds(
    make_service: Callable[..., IngestService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service()
    service.ingest_paths([_folder(tmp_path)], "kb")
    monkeypatch.setattr(store, "REBUILD_SLICE", 5)
    calls: list[tuple[int, int]] = []
    report = service.rebuild_index(reembed=True, on_progress=lambda done, total: calls.append((done, total)))
    chunks = _stored(service)[1]
    assert report.ok and report.vectors == chunks
    assert calls == [(min(done, chunks), chunks) for done in range(5, chunks + 5, 5)]
    calls.clear()
    service.rebuild_index(on_progress=lambda done, total: calls.append((done, total)))
    assert calls == []  # every vector is in the index: nothing to embed


def test_retrieval_evaluation_reports_its_stages(tmp_path: Path, embedder: Embedder) -> None:
    questions = [{"id": t, "question": f"When is {t} open?", "answers": []} for t in TOPICS[:3]]
    paragraphs = [{"context": f"The {q['id']} desk opens at {n} o'clock.", "qas": [q]} for n, q in enumerate(questions)]
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"title": "Desks", "paragraphs": paragraphs}]}))
    calls: list[tuple[str, int, int]] = []
    scores = run_squad_evaluation(
        make_settings(tmp_path / "unused"), squad, embedder=embedder, on_progress=lambda *c: calls.append(c)
    )
    stages = ["ingest corpus", *(f"search {mode}" for mode in scores)]
    assert calls == [(stage, done, 3) for stage in stages for done in (1, 2, 3)]
