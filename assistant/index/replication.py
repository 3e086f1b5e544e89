"""Vector index replication through the database: several server replicas (and CLI/worker writers) on one database
each keep their own in-memory FAISS index in step with the chunk rows, without re-embedding.

Contract:
- Writers (the ingest service) call, inside the transaction that writes the chunk rows: `next_chunk_id` (after
  `lock_index_writes`) to pick ids, `record_added(session, ids, vectors, space)` when chunk vectors are stored (the
  vectors go to `chunk_embeddings` as float32 bytes with the embedder space, and one 'add' entry per chunk to the
  `index_changes` log) and `record_removed(session, ids)` when chunk rows are deleted (one 'remove' entry each; the
  embeddings go with the rows by cascade).
- Ordering: every transaction that writes the log first takes one transaction-scoped lock (`pg_advisory_xact_lock`
  on PostgreSQL; SQLite serialises writers itself), so log sequence numbers are assigned in commit order and a reader
  that saw entry `seq` has seen every earlier one. The same lock makes chunk ids unique across writing processes:
  an id is above every chunk id stored or ever logged, never reused.
- `abandoned_documents` tells the ingest recovery which unfinished ('processing'/'staging') documents are crash
  residue it may delete: on a shared database, only its own (`writer_identity`, kept in the document's meta) or
  ones untouched for `ABANDONED_AFTER_S`, never another replica's upload in progress.
- `IndexFollower(db, index, lock, space)`: `reconcile()` brings the index to the rows (vectors of chunks it lacks are
  read from `chunk_embeddings`; vectors whose chunk row is gone are removed) and remembers the log head it started
  from; `catch_up()` applies the log entries after the last one applied (adds read their vectors from the database;
  ids already in the index are skipped, so a replica's own writes are not added twice). Vectors of another embedder
  space are never mixed in: they are skipped and counted (`skipped_space`). Index mutations happen under `lock`
  (the lock searches take). The follower does not save the index file: a restart reconciles from the database.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.orm import Session

from assistant.index.vector_index import VectorIndex
from assistant.storage.db import Database
from assistant.storage.orm import Chunk, ChunkEmbedding, Document, IndexChange

log = logging.getLogger(__name__)

LOCK_KEY = 0x415353_4958  # arbitrary, constant: the advisory lock every index-log writer takes ("ASSIX")
ABANDONED_AFTER_S = 600.0  # an unfinished document of another writer untouched this long is crash residue
BATCH = 2000  # rows per statement (bound parameters stay far below PostgreSQL's and SQLite's limits)


def space_key(space: dict[str, object]) -> str:
    """The stored form of an embedder space (`assistant.embedding.embedder_space`)."""
    return json.dumps(space, sort_keys=True)


def lock_index_writes(session: Session) -> None:
    """Serialise index-log writers until this transaction ends (a no-op on SQLite, which has one writer anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})


def next_chunk_id(session: Session, floor: int = 1) -> int:
    """The first free chunk id: above every stored or logged chunk id and at least `floor` (call under the lock)."""
    stored = session.scalar(select(func.max(Chunk.id))) or 0
    logged = session.scalar(select(func.max(IndexChange.chunk_id))) or 0
    return max(int(stored) + 1, int(logged) + 1, floor)


def record_added(session: Session, ids: Sequence[int], vectors: np.ndarray, space: str) -> None:
    """Store the vectors of chunks `ids` (replacing older ones) and log their addition."""
    lock_index_writes(session)
    ids = [int(i) for i in ids]
    vectors = np.ascontiguousarray(vectors, dtype="<f4").reshape(len(ids), -1)
    now = datetime.now(UTC)
    for part in _batches(range(len(ids))):
        chunk_ids = [ids[i] for i in part]
        session.execute(delete(ChunkEmbedding).where(ChunkEmbedding.chunk_id.in_(chunk_ids)))
        rows = [{"chunk_id": ids[i], "space": space, "vector": vectors[i].tobytes()} for i in part]
        session.execute(insert(ChunkEmbedding), rows)
        session.execute(insert(IndexChange), [{"chunk_id": i, "op": "add", "created_at": now} for i in chunk_ids])


def record_removed(session: Session, ids: Iterable[int]) -> None:
    """Log the removal of chunks `ids` (their rows, and with them their embeddings, are deleted by the caller)."""
    ids = [int(i) for i in ids]
    if not ids:
        return
    lock_index_writes(session)
    now = datetime.now(UTC)
    session.execute(insert(IndexChange), [{"chunk_id": i, "op": "remove", "created_at": now} for i in ids])


def writer_identity(data_dir: Path) -> str:
    """Who writes a document: the machine and the data directory (one writer per data directory)."""
    return f"{socket.gethostname()}:{data_dir.resolve()}"


def abandoned_documents(
    session: Session, document_ids: Sequence[str], writer: str, grace_s: float = ABANDONED_AFTER_S
) -> list[str]:
    """Of unfinished documents, those no other process may still be writing: on SQLite all of them (one writer per
    database file); on a shared database those written by `writer` itself (its own crash residue) or left untouched
    for `grace_s` seconds. Another replica's upload in progress is never taken for crash residue."""
    if session.get_bind().dialect.name == "sqlite":
        return list(document_ids)
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
    rows = session.scalars(select(Document).where(Document.id.in_(list(document_ids)))).all()
    return [row.id for row in rows if row.meta.get("writer") in (writer, None) or _aware(row.updated_at) < cutoff]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _batches(items: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


@dataclass
class SyncStatus:
    """What a follower has applied (shown under `replica` in the server's `/health`)."""

    seq: int = 0
    vectors: int = 0
    added: int = 0
    removed: int = 0
    skipped_space: int = 0
    last_sync_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class IndexFollower:
    """Keeps one process's vector index in step with the chunk rows and the change log (module contract)."""

    def __init__(self, db: Database, index: VectorIndex, lock: AbstractContextManager[Any], space: str) -> None:
        self.db = db
        self.index = index
        self.lock = lock
        self.space = space
        self.status = SyncStatus()

    def head(self) -> int:
        """The newest log sequence number (0 for an empty log)."""
        with self.db.session() as session:
            return int(session.scalar(select(func.max(IndexChange.seq))) or 0)

    def reconcile(self) -> SyncStatus:
        """Make the index hold exactly the stored vectors of existing chunks; later changes come from `catch_up`."""
        head = self.head()  # first: entries committed while reconciling are applied again by catch_up (idempotent)
        with self.db.session() as session:
            chunk_ids = np.asarray(session.scalars(select(Chunk.id)).all(), dtype=np.int64)
        with self.lock:
            present = self.index.ids()
        gone = present[~np.isin(present, chunk_ids)]
        self._apply(added=chunk_ids[~np.isin(chunk_ids, present)].tolist(), removed=gone.tolist())
        self.status.seq = head
        return self.status

    def catch_up(self) -> int:
        """Apply the log entries after the last one applied; returns how many entries were read."""
        total = 0
        while True:
            with self.db.session() as session:
                rows = session.execute(
                    select(IndexChange.seq, IndexChange.chunk_id, IndexChange.op)
                    .where(IndexChange.seq > self.status.seq)
                    .order_by(IndexChange.seq)
                    .limit(BATCH * 5)
                ).all()
            if not rows:
                break
            final = {int(chunk_id): op for _seq, chunk_id, op in rows}  # the last entry per chunk wins
            self._apply(
                added=[i for i, op in final.items() if op == "add"],
                removed=[i for i, op in final.items() if op == "remove"],
            )
            self.status.seq = int(rows[-1][0])
            total += len(rows)
            if len(rows) < BATCH * 5:
                break
        self.status.last_sync_at = time.time()
        return total

    def _apply(self, added: list[int], removed: list[int]) -> None:
        vectors = self._stored_vectors(added)
        with self.lock:
            removed_count = self.index.remove(np.asarray(removed, dtype=np.int64)) if removed else 0
            ids = np.asarray(sorted(vectors), dtype=np.int64)
            new = ids[~np.isin(ids, self.index.ids())] if len(ids) else ids
            if len(new):
                self.index.add(np.stack([vectors[int(i)] for i in new]), new)
            self.status.vectors = len(self.index)
        self.status.added += len(new)
        self.status.removed += removed_count
        if len(new) or removed_count:
            log.info("index caught up: +%d -%d vectors (log seq %d)", len(new), removed_count, self.status.seq)

    def _stored_vectors(self, ids: list[int]) -> dict[int, np.ndarray]:
        """The stored vectors of `ids` in this follower's space (chunks deleted meanwhile have none)."""
        found: dict[int, np.ndarray] = {}
        skipped = 0
        for part in _batches(ids):
            with self.db.session() as session:
                rows = session.execute(
                    select(ChunkEmbedding.chunk_id, ChunkEmbedding.space, ChunkEmbedding.vector).where(
                        ChunkEmbedding.chunk_id.in_(list(part))
                    )
                ).all()
            for chunk_id, space, blob in rows:
                if space != self.space:
                    skipped += 1
                    continue
                found[int(chunk_id)] = np.frombuffer(blob, dtype="<f4")
        if skipped:
            self.status.skipped_space += skipped
            log.warning("%d stored vectors are of another embedder space: not added (rebuild the index)", skipped)
        return found
