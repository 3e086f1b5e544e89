"""Index replication through the database (`assistant.index.replication`), on both engines (`db_url`).

Two data directories (two replicas) share one database: what one ingest service writes, a follower of the other
replica's index applies from the stored vectors and the change log, without an embedder.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, update

from assistant.embedding import Embedder
from assistant.index import open_index, replication
from assistant.index.replication import IndexFollower
from assistant.settings import Settings
from assistant.storage import Chunk, ChunkEmbedding, Database, Document, IndexChange
from ingest.ingest_service import IngestService

TEXTS = {
    "a.txt": "Aardvarks dig burrows at night and eat termites with their long sticky tongues. " * 6,
    "b.txt": "Basalt forms when lava cools quickly at the surface of a volcano, leaving a fine grain. " * 6,
    "c.txt": "Cumulus clouds are puffy and white; they form when warm air rises and its vapour condenses. " * 6,
}


def _service(root: Path, name: str, db_url: str, embedder: Embedder) -> IngestService:
    settings = Settings(data_dir=root / name, database_url=db_url, ingest={"chunk_tokens": 48, "chunk_overlap": 4})
    return IngestService.open(settings, embedder)


def _follower(service: IngestService, root: Path) -> IndexFollower:
    """Another replica's index (its own data directory), following the shared database."""
    index = open_index(root / "replica-b" / "index", service.embedder.dim, 50_000)
    follower = IndexFollower(service.db, index, threading.RLock(), service.space)
    follower.reconcile()
    return follower


def _ready_ids(db: Database) -> set[int]:
    with db.session() as session:
        return set(session.scalars(select(Chunk.id).join(Document).where(Document.status == "ready")))


def test_a_follower_applies_adds_replaces_and_deletes_without_embedding(
    db_url: str, tmp_path: Path, embedder: Embedder
) -> None:
    writer = _service(tmp_path, "replica-a", db_url, embedder)
    writer.ingest_file("a.txt", TEXTS["a.txt"].encode())
    follower = _follower(writer, tmp_path)  # starts after one document: reconcile picks it up
    assert set(follower.index.ids().tolist()) == _ready_ids(writer.db)

    b = writer.ingest_file("b.txt", TEXTS["b.txt"].encode())
    writer.ingest_file("a.txt", TEXTS["c.txt"].encode())  # a replace: old chunks out, new chunks in
    assert follower.catch_up() > 0
    expected = _ready_ids(writer.db)
    assert set(follower.index.ids().tolist()) == expected == set(writer.index.ids().tolist())
    ids = np.asarray(sorted(expected))
    mine, theirs = follower.index.vectors(ids), writer.index.vectors(ids)
    for chunk_id in expected:  # the very vectors the writer embedded, read back from the database
        np.testing.assert_array_equal(mine[chunk_id], theirs[chunk_id])

    # What the follower finds for a query is what the writer finds.
    query = embedder.embed(["volcanic rock from cooled lava"])[0]
    assert [r.id for r in follower.index.search(query, 3)] == [r.id for r in writer.index.search(query, 3)]

    writer.delete_document(b.document_id)
    follower.catch_up()
    assert set(follower.index.ids().tolist()) == _ready_ids(writer.db)
    assert follower.catch_up() == 0  # nothing new
    with writer.db.session() as session:  # embeddings went with their chunk rows
        assert session.scalar(select(func.count()).select_from(ChunkEmbedding)) == len(_ready_ids(writer.db))
    writer.close()


def test_vectors_of_another_embedder_space_are_not_mixed_in(db_url: str, tmp_path: Path, embedder: Embedder) -> None:
    writer = _service(tmp_path, "replica-a", db_url, embedder)
    writer.ingest_file("a.txt", TEXTS["a.txt"].encode())
    index = open_index(tmp_path / "other" / "index", embedder.dim, 50_000)
    follower = IndexFollower(writer.db, index, threading.RLock(), '{"model": "another"}')
    follower.reconcile()
    assert len(index) == 0
    assert follower.status.skipped_space == len(_ready_ids(writer.db)) > 0
    writer.close()


@pytest.mark.postgres
def test_two_writers_on_one_postgres_never_share_a_chunk_id(
    postgres_url: str, tmp_path: Path, embedder: Embedder
) -> None:
    """Two processes' ingest services (two data directories) write at once; ids stay unique, followers converge."""
    writers = [_service(tmp_path, f"replica-{n}", postgres_url, embedder) for n in ("a", "b")]
    errors: list[str] = []

    def upload(service: IngestService, prefix: str) -> None:
        for n in range(6):
            text = f"{prefix} document {n}: " + " ".join(f"{prefix}{n}word{k}" for k in range(120))
            result = service.ingest_file(f"{prefix}-{n}.txt", text.encode())
            if result.status != "ingested":
                errors.append(f"{prefix}-{n}: {result.status} {result.error}")

    threads = [threading.Thread(target=upload, args=(w, p)) for w, p in zip(writers, ("alpha", "beta"), strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    expected = _ready_ids(writers[0].db)
    with writers[0].db.session() as session:
        added = list(session.scalars(select(IndexChange.chunk_id).where(IndexChange.op == "add")))
    assert len(added) == len(set(added)) == len(expected)  # every id logged once: no id was handed out twice
    for writer in writers:
        follower = IndexFollower(writer.db, writer.index, threading.RLock(), writer.space)
        follower.catch_up()
        assert set(writer.index.ids().tolist()) == expected
        writer.close()


@pytest.mark.postgres
def test_recovery_on_a_shared_database_leaves_another_replicas_upload_alone(
    postgres_url: str, tmp_path: Path, embedder: Embedder
) -> None:
    db = Database(postgres_url)
    db.migrate()
    old = datetime.now(UTC) - timedelta(hours=1)
    with db.session() as session:
        for doc_id, writer, updated in (
            ("doc-inflight", "other-host:/srv/replica-2", datetime.now(UTC)),  # another replica, mid-upload
            ("doc-stale", "other-host:/srv/replica-2", old),  # crash residue of another replica, long ago
            ("doc-mine", replication.writer_identity(tmp_path / "replica-a"), datetime.now(UTC)),  # own residue
        ):
            session.add(
                Document(id=doc_id, source=doc_id, content_hash="x", status="processing", meta={"writer": writer})
            )
            session.flush()
            session.execute(update(Document).where(Document.id == doc_id).values(updated_at=updated))
    writer = _service(tmp_path, "replica-a", postgres_url, embedder)  # opening recovers
    with db.session() as session:
        assert set(session.scalars(select(Document.id))) == {"doc-inflight"}
    writer.close()
    db.dispose()
