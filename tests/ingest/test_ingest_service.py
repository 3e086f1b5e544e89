"""IngestService through the real parts: MiniLM, FAISS files in tmp, SQLite with migrations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from assistant.storage.orm import Chunk, Document
from ingest.ingest_service import IngestService
from tests.fixtures.documents import HTML_PAGE, make_docx, make_encrypted_pdf, make_pdf
from tests.fixtures.retrieval_env import make_settings, shared_embedder

POLICY = "Backups run every night at two o'clock. Daily backups are kept for thirty days in the vault."
TRAVEL = "Travel expenses are reimbursed within two weeks when the receipts are uploaded to the portal."


def _rows(service: IngestService, document_id: str | None = None) -> list[Chunk]:
    with service.db.session() as session:
        query = select(Chunk)
        if document_id:
            query = query.where(Chunk.document_id == document_id)
        return list(session.scalars(query).all())


def test_folder_ingest_keeps_citation_data(service: IngestService, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "report.pdf").write_bytes(make_pdf([["Revenue grew by ten percent."], ["Outlook is stable."]]))
    (docs / "handbook.docx").write_bytes(make_docx())
    (docs / "backup.html").write_bytes(HTML_PAGE)
    (docs / ".hidden.txt").write_text("ignored")
    report = service.ingest_paths([docs], "company")
    assert report.counts() == {"ingested": 3}, report.files
    chunks = _rows(service)
    assert {c.page for c in chunks if c.page} == {1, 2}
    assert "Holidays" in {c.section for c in chunks}
    with service.db.session() as session:
        for chunk in chunks:
            document = session.get(Document, chunk.document_id)
            assert document is not None and document.status == "ready"
            assert chunk.char_end > chunk.char_start and chunk.token_count <= service.embedder.max_tokens
    assert service.check_index().ok
    assert set(service.index.ids().tolist()) == {c.id for c in chunks}


def test_same_content_is_a_noop_and_changed_content_replaces(service: IngestService, tmp_path: Path) -> None:
    path = tmp_path / "policy.txt"
    path.write_text(POLICY)
    first = service.ingest_paths([path]).files[0]
    again = service.ingest_paths([path]).files[0]
    assert (first.status, again.status, again.document_id) == ("ingested", "unchanged", first.document_id)
    old_ids = {c.id for c in _rows(service)}
    path.write_text(TRAVEL)
    replaced = service.ingest_paths([path]).files[0]
    assert (replaced.status, replaced.document_id) == ("replaced", first.document_id)
    rows = _rows(service)
    assert [r.text for r in rows] == [TRAVEL]
    assert not old_ids & set(service.index.ids().tolist())
    assert service.check_index().ok


def test_delete_removes_rows_and_vectors(service: IngestService) -> None:
    kept = service.ingest_file("travel.txt", TRAVEL.encode())
    gone = service.ingest_file("policy.txt", POLICY.encode())
    gone_ids = [c.id for c in _rows(service, gone.document_id)]
    assert service.delete_document(gone.document_id or "") == len(gone_ids) == 1
    assert _rows(service, gone.document_id) == []
    assert not set(gone_ids) & set(service.index.ids().tolist())
    assert len(_rows(service, kept.document_id)) == 1
    assert service.check_index().ok


def test_duplicates_are_dropped_and_reported(make_service: Callable[..., IngestService], tmp_path: Path) -> None:
    service = make_service(chunk_tokens=32, chunk_overlap=0)
    a = tmp_path / "a.txt"
    a.write_text(POLICY + "\n\n" + TRAVEL)
    copy = tmp_path / "copy.txt"
    copy.write_bytes(a.read_bytes())
    near = tmp_path / "near.txt"
    near.write_text(POLICY.replace("thirty", "thirty ") + "\n\nLunch is served at noon in the canteen every weekday.")
    report = service.ingest_paths([a, copy, near])
    statuses = {Path(r.source).name: r.status for r in report.files}
    assert statuses == {"a.txt": "ingested", "copy.txt": "duplicate", "near.txt": "ingested"}
    counts = report.selection.counts()
    assert counts["document:duplicate"] == 1
    assert counts.get("chunk:duplicate", 0) + counts.get("chunk:near_duplicate", 0) >= 1
    near_texts = [c.text for c in _rows(service) if "Lunch" in c.text]
    assert near_texts and all("Backups" not in t for t in near_texts)


def test_bad_files_fail_alone_and_keep_stored_data(make_service: Callable[..., IngestService], tmp_path: Path) -> None:
    service = make_service(max_file_mb=0.01)
    stored = service.ingest_file("earlier.txt", TRAVEL.encode())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrupt.pdf").write_bytes(b"%PDF-1.4\nthis is not a pdf")
    (bad / "empty.txt").write_bytes(b"")
    (bad / "slides.key").write_bytes(b"PK\x03\x04 not supported")
    (bad / "garbage.txt").write_bytes(bytes(range(256)) * 10)
    (bad / "locked.pdf").write_bytes(make_encrypted_pdf())
    (bad / "huge.txt").write_text("word " * 5000)
    (bad / "latin.txt").write_bytes(("Le café de la crèche est fermé à Noël. " * 5).encode("cp1252"))
    report = service.ingest_paths([bad, tmp_path / "missing.txt"])
    codes = {Path(r.source).name: (r.status, r.status_code) for r in report.files}
    assert codes == {
        "corrupt.pdf": ("failed", 422),
        "empty.txt": ("failed", 422),
        "slides.key": ("failed", 415),
        "garbage.txt": ("failed", 422),
        "locked.pdf": ("failed", 422),
        "huge.txt": ("failed", 413),
        "latin.txt": ("ingested", None),
        "missing.txt": ("failed", 404),
    }
    assert len(_rows(service, stored.document_id)) == 1
    assert service.check_index().ok


def test_recover_repairs_orphans_and_stuck_documents(make_service: Callable[..., IngestService]) -> None:
    service = make_service()
    ok = service.ingest_file("ok.txt", TRAVEL.encode())
    stuck = service.ingest_file("stuck.txt", POLICY.encode())
    with service.db.session() as session:
        session.get(Document, stuck.document_id).status = "processing"  # type: ignore[union-attr]
    vector = service.embedder.embed(["orphan"])
    service.index.add(vector, np.array([service.index.next_id + 5]))
    service.index.save()
    found = service.check_index()
    assert not found.ok and found.stuck_documents == [stuck.document_id] and len(found.orphan_vectors) == 2
    reopened = make_service()
    assert reopened.check_index().ok
    with reopened.db.session() as session:
        assert session.scalar(select(func.count(Document.id))) == 1
    assert reopened.ingest_file("stuck.txt", POLICY.encode()).status == "ingested"
    assert len(_rows(reopened, ok.document_id)) == 1


def test_rebuild_switches_to_hnsw_and_back(make_service: Callable[..., IngestService]) -> None:
    service = make_service(approximate_after=2)
    for number, text in enumerate([POLICY, TRAVEL, "The canteen serves lunch at noon."]):
        service.ingest_file(f"doc{number}.txt", text.encode())
    assert service.index.kind == "flat"
    report = service.rebuild_index()
    assert report.ok and report.index_kind == "hnsw" and report.vectors == 3
    service.delete_document(_rows(service)[0].document_id)
    assert service.check_index().ok and len(service.index) == 2
    reopened = make_service(approximate_after=2)
    assert reopened.index.kind == "hnsw" and reopened.check_index().ok


def test_ingest_files_matches_ingest_paths_in_input_order(
    make_service: Callable[..., IngestService], tmp_path: Path
) -> None:
    """Uploads go through the pipelined path: same chunks as a folder ingest, results in the order sent, and a
    broken file among them fails alone."""
    texts = {f"doc{n}.txt": f"{TRAVEL} Item {n}. {POLICY}" * (1 + n % 3) for n in range(6)}
    files = [(name, text.encode()) for name, text in texts.items()]
    files.insert(3, ("broken.pdf", b"%PDF-1.4 not really a pdf"))
    service = make_service(embed_batch_size=2)  # several pipelined groups
    uploaded = service.ingest_files(files, "up")
    assert [r.source for r in uploaded] == [name for name, _data in files]
    assert [r.status for r in uploaded] == ["ingested"] * 3 + ["failed"] + ["ingested"] * 3
    folder = tmp_path / "folder"
    folder.mkdir()
    for name, text in texts.items():
        (folder / name).write_text(text)
    reference = IngestService.open(make_settings(tmp_path / "reference"), shared_embedder())
    reference.ingest_paths([folder], "up")
    assert service.check_index().ok
    assert _chunks_by_file(service) == _chunks_by_file(reference) and len(_chunks_by_file(service)) >= 6


def _chunks_by_file(service: IngestService) -> list[tuple[str, int, str]]:
    with service.db.session() as session:
        rows = session.execute(select(Document.source, Chunk.ordinal, Chunk.text).join(Document)).all()
    return sorted((Path(source).name, ordinal, text) for source, ordinal, text in rows)
