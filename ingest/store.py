"""The crash-safe store of the ingest service: prepared files + their vectors -> chunk rows + index vectors.

Contract: `DocumentStore(settings, db, index, embedder, write_lock=..., on_failed=...)` writes groups of
`PreparedFile`s with their embeddings (`store_batch`, one `FileResult` per file) in the order below, deletes documents
(`delete_document`), compares index and rows (`check_index`), repairs after an interrupted run (`recover`) and
rebuilds the index from the rows (`rebuild_index`: flat or HNSW by size, tombstones dropped, missing vectors
re-embedded). It is not thread-safe by itself: `ingest.ingest_service.IngestService` serialises the calls. `on_failed`
is called with each file whose write was undone (the preparer forgets its near-duplicate entries).

Crash-safety rule (the order of writes; `recover()` applies the repair on every open). A replace writes the new
version beside the old one and swaps them in one transaction, so whatever fails or is killed, exactly one complete
version (the old or the new) stays retrievable:
1. (`staged`) one transaction commits the new version's row and chunk rows: a new document's own row in status
   'processing', or, for a replace, a 'staging' row with its own id holding the new chunks while the old document
   stays 'ready' and untouched; the new vectors are added in memory (ids above every id the index has ever held, so
   a vector id is never reused);
2. (`saved_new`) the index file is saved atomically (temp file, fsync, rename) with the old and the new vectors;
3. (`swapped`) one transaction: a new document becomes 'ready'; a replace deletes the old chunk rows, moves the staged
   chunks to the document's id, copies the new version's fields onto the document row and deletes the staging row;
4. (`done`) the old vectors are removed and the index saved again.
`checkpoint(step)` is called as each step completes (a no-op; the crash tests stop the process there).
A process killed anywhere leaves: rows in 'processing' or 'staging' (deleted on open with their chunk rows; the old
version of a replace is untouched) and possibly vectors whose rows are gone (removed on open). A 'ready' document's
vectors are always in the saved file, because step 2 precedes step 3; should one be missing anyway (a lost file),
`recover()` re-embeds it from the stored text. A step that fails (embedding error, disk full, SQL error) undoes only
the new version's rows and vectors. Deletion commits the rows first and saves the index second, so its only crash
residue is orphan vectors.

Shared database (several replicas, `assistant.index.replication`): chunk ids are picked in the database under a lock,
every vector is also stored there with a change-log entry, and recovery deletes only unfinished rows this data
directory wrote (or ones untouched for ten minutes), never another replica's upload in progress.

`write_lock` (the server's index lock, which searches take) is held only inside each write step, never while
waiting for the embeddings.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from assistant.embedding import Embedder, embedder_space
from assistant.errors import AssistantError, NotFoundError, UnprocessableError
from assistant.index import VectorIndex, replication
from assistant.settings import Settings
from assistant.storage.db import Database
from assistant.storage.orm import Chunk, Document, new_id
from ingest.document_types import ChunkDraft, PreparedFile
from ingest.results import ConsistencyReport, FileResult

log = logging.getLogger(__name__)

REBUILD_SLICE = 1024  # texts per embed call in a rebuild (a progress report after each)
UNFINISHED = ("processing", "staging")  # statuses of rows an interrupted write leaves behind


class DocumentStore:
    """Chunk rows + vectors of one database and vector index, written in the crash-safe order (module contract)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        index: VectorIndex,
        embedder: Embedder,
        *,
        write_lock: AbstractContextManager[Any] | None = None,
        on_failed: Callable[[PreparedFile], None] | None = None,
    ) -> None:
        self.db = db
        self.index = index
        self.embedder = embedder
        self.write_lock = write_lock or threading.RLock()
        self.checkpoint: Callable[[str], None] = _no_checkpoint
        self.on_failed = on_failed or _no_failure_hook
        # Vectors are also stored in the database with their space, so other replicas need not re-embed them.
        self.space = replication.space_key(embedder_space(settings, embedder.dim))
        self.writer_id = replication.writer_identity(settings.data_dir)  # recovery drops only its own residue

    # ------------------------------------------------------------ operations

    def store_batch(self, batch: list[PreparedFile], embedded: Future[np.ndarray]) -> list[FileResult]:
        """Write a group of prepared files, once their vectors are ready, in the crash-safe order (module docstring).

        Waiting for the vectors happens before the write lock is taken; each write step holds it only briefly.
        """
        try:
            vectors = embedded.result()
        except (RuntimeError, ValueError) as exc:
            return [self._fail(p, UnprocessableError(f"{p.source}: embedding failed ({exc})")) for p in batch]
        self.checkpoint("embedded")
        results: list[FileResult] = []
        staged: list[PreparedFile] = []
        offset = 0
        for prepared in batch:
            count = len(prepared.drafts)
            try:
                self._stage(prepared, vectors[offset : offset + count])  # step 1
                staged.append(prepared)
            except (SQLAlchemyError, AssistantError) as exc:
                results.append(self._fail(prepared, UnprocessableError(f"{prepared.source}: not stored ({exc})")))
            offset += count
        self.checkpoint("staged")
        try:
            self._save_index()  # step 2
        except OSError as exc:
            return results + self._fail_all(staged, f"index not saved ({exc})")
        self.checkpoint("saved_new")
        try:
            old_ids = self._swap(staged)  # step 3
        except SQLAlchemyError as exc:
            return results + self._fail_all(staged, f"not stored ({exc})")
        self.checkpoint("swapped")
        if old_ids:
            with self.write_lock:
                self.index.remove(np.asarray(old_ids, dtype=np.int64))  # step 4
            try:
                self._save_index()
            except OSError as exc:  # only old vectors are left over in the file: `recover()` drops them
                log.warning("index not saved after a replace (%s); repaired on the next open", exc)
        self.checkpoint("done")
        results.extend(_stored_result(p) for p in staged)
        return results

    def delete_document(self, document_id: str) -> int:
        """Delete a document, its chunk rows and their vectors; returns the number of chunks removed."""
        with self.db.session() as session:
            if session.get(Document, document_id) is None:
                raise NotFoundError(f"document {document_id} does not exist", param="document_id")
            ids = list(session.scalars(select(Chunk.id).where(Chunk.document_id == document_id)))
        with self.write_lock:
            with self.db.session() as session:
                session.execute(delete(Chunk).where(Chunk.document_id == document_id))
                session.execute(delete(Document).where(Document.id == document_id))
                replication.record_removed(session, ids)
            self.index.remove(np.asarray(ids, dtype=np.int64))
            self.index.save()
        log.info("deleted document %s (%d chunks)", document_id, len(ids))
        return len(ids)

    def check_index(self) -> ConsistencyReport:
        """Compare the vector ids with the chunk rows of 'ready' documents."""
        index_ids = set(self.index.ids().tolist())
        with self.db.session() as session:
            ready = set(session.scalars(select(Chunk.id).join(Document).where(Document.status == "ready")).all())
            stuck = list(session.scalars(select(Document.id).where(Document.status.in_(UNFINISHED))).all())
        return ConsistencyReport(
            vectors=len(index_ids),
            chunks=len(ready),
            orphan_vectors=sorted(index_ids - ready),
            missing_vectors=sorted(ready - index_ids),
            stuck_documents=stuck,
            index_kind=self.index.kind,
        )

    def recover(self) -> ConsistencyReport:
        """Apply the crash-safety repair (see the module docstring); returns the state found before repairing."""
        found = self.check_index()
        if found.ok:
            return found
        log.warning("repairing after an interrupted run: %s", found.summary())
        with self.write_lock:
            with self.db.session() as session:
                stuck = replication.abandoned_documents(session, found.stuck_documents, self.writer_id)
            self._drop_documents(stuck)
            after = self.check_index()
            self.index.remove(np.asarray(after.orphan_vectors, dtype=np.int64))
            self._reembed(after.missing_vectors)
            self.index.save()
        return found

    def rebuild_index(
        self, reembed: bool = False, on_progress: Callable[[int, int], None] | None = None
    ) -> ConsistencyReport:
        """Rebuild the index from the rows: structure by size (flat/HNSW), tombstones dropped, gaps re-embedded
        (every chunk with `reembed=True`: the embedder changed), `REBUILD_SLICE` texts at a time so that
        `on_progress(embedded, to_embed)` can follow it."""
        with self.db.session() as session:
            rows = session.execute(
                select(Chunk.id, Chunk.text).join(Document).where(Document.status == "ready").order_by(Chunk.id)
            ).all()
        ids = np.asarray([row[0] for row in rows], dtype=np.int64)
        stored = {} if reembed else self.index.vectors(ids)
        missing = [(chunk_id, text) for chunk_id, text in rows if chunk_id not in stored]
        for start in range(0, len(missing), REBUILD_SLICE):
            part = missing[start : start + REBUILD_SLICE]
            stored.update(zip([m[0] for m in part], self.embedder.embed([m[1] for m in part]), strict=True))
            if on_progress is not None:
                on_progress(start + len(part), len(missing))
        self._store_vectors([m[0] for m in missing], [stored[m[0]] for m in missing])
        vectors = np.stack([stored[int(i)] for i in ids]) if len(ids) else np.zeros((0, self.embedder.dim), "float32")
        with self.write_lock:
            self.index.rebuild(vectors, ids)
            self.index.save()
        log.info("rebuilt the index: %d vectors (%s)", len(ids), self.index.kind)
        return self.check_index()

    # ------------------------------------------------------------ the write steps

    def _stage(self, prepared: PreparedFile, vectors: np.ndarray) -> None:
        """Step 1: the new version's rows (one transaction) and vectors, beside any old version.

        A new document gets its own row in status 'processing'; a replace gets a 'staging' row (its own id and a
        source derived from that id, so it never collides with the old row) that holds the new chunks until the swap.
        """
        prepared.row_id = new_id("doc") if prepared.replaces else prepared.document_id
        with self.write_lock:
            with self.db.session() as session:
                replication.lock_index_writes(session)  # chunk ids unique across processes sharing the database
                first_id = replication.next_chunk_id(session, self.index.next_id)
                ids = np.arange(first_id, first_id + len(prepared.drafts), dtype=np.int64)
                session.add(self._version_row(prepared))
                session.flush()
                rows = [_chunk_row(prepared, draft, int(i)) for draft, i in zip(prepared.drafts, ids, strict=True)]
                session.execute(insert(Chunk), rows)
                replication.record_added(session, ids.tolist(), vectors, self.space)
            self.index.add(vectors, ids)

    def _version_row(self, prepared: PreparedFile) -> Document:
        if prepared.replaces:
            source = f"{prepared.row_id}:{prepared.source}"[:1000]
            status, meta = "staging", dict[str, Any](replaces=prepared.document_id)
        else:
            source, status, meta = prepared.source, "processing", dict[str, Any]()
        meta |= {"chunks": len(prepared.drafts), "dropped_chunks": prepared.dropped_chunks, "writer": self.writer_id}
        return Document(
            id=prepared.row_id,
            collection=prepared.collection,
            source=source,
            title=prepared.title,
            mime_type=prepared.mime_type,
            content_hash=prepared.raw_hash,
            size_bytes=prepared.size,
            status=status,
            meta=meta,
            parse_report=prepared.parse_report,
        )

    def _save_index(self) -> None:
        with self.write_lock:
            self.index.save()

    def _swap(self, staged: list[PreparedFile]) -> list[int]:
        """Step 3, one transaction: new documents become 'ready'; each replaced document's old chunk rows are deleted,
        the staged chunks move to it and its row takes the new version's fields. Returns the old chunk ids."""
        old_ids: list[int] = []
        with self.write_lock, self.db.session() as session:
            for prepared in staged:
                if not prepared.replaces:
                    session.execute(update(Document).where(Document.id == prepared.row_id).values(status="ready"))
                    continue
                old_ids += session.scalars(select(Chunk.id).where(Chunk.document_id == prepared.document_id))
                session.execute(delete(Chunk).where(Chunk.document_id == prepared.document_id))
                session.execute(
                    update(Chunk).where(Chunk.document_id == prepared.row_id).values(document_id=prepared.document_id)
                )
                staging = session.get(Document, prepared.row_id)
                document = session.get(Document, prepared.document_id)
                if staging is None or document is None:
                    raise SQLAlchemyError(f"document {prepared.document_id} changed during the replace")
                document.title, document.mime_type = staging.title, staging.mime_type
                document.content_hash, document.size_bytes = staging.content_hash, staging.size_bytes
                document.meta = {k: v for k, v in staging.meta.items() if k != "replaces"}
                document.parse_report = staging.parse_report
                document.status, document.error = "ready", None
                session.flush()
                session.delete(staging)
            replication.record_removed(session, old_ids)
        return old_ids

    # ------------------------------------------------------------ undoing and repairing

    def _fail_all(self, staged: list[PreparedFile], reason: str) -> list[FileResult]:
        failed = [self._fail(p, UnprocessableError(f"{p.source}: {reason}")) for p in staged]
        try:
            self._save_index()  # best effort: the saved file may hold the failed files' vectors
        except OSError as exc:
            log.warning("index not saved after a failed write (%s); repaired on the next open", exc)
        return failed

    def _fail(self, prepared: PreparedFile, error: AssistantError) -> FileResult:
        """Undo whatever a failed file wrote (its new rows and vectors; `on_failed` its LSH entries); an old version
        is left alone."""
        log.warning("%s", error.message)
        self.on_failed(prepared)
        if prepared.row_id is not None:
            with self.write_lock:
                self._drop_documents([prepared.row_id])
        return FileResult.failure(prepared.source, prepared.collection, error)

    def _drop_documents(self, document_ids: list[str]) -> None:
        if not document_ids:
            return
        with self.db.session() as session:
            ids = list(session.scalars(select(Chunk.id).where(Chunk.document_id.in_(document_ids))))
            session.execute(delete(Chunk).where(Chunk.document_id.in_(document_ids)))
            session.execute(delete(Document).where(Document.id.in_(document_ids)))
            replication.record_removed(session, ids)
        self.index.remove(np.asarray(ids, dtype=np.int64))

    def _reembed(self, chunk_ids: list[int]) -> None:
        if not chunk_ids:
            return
        with self.db.session() as session:
            rows = session.execute(select(Chunk.id, Chunk.text).where(Chunk.id.in_(chunk_ids))).all()
        vectors = self.embedder.embed([text for _id, text in rows])
        self._store_vectors([r[0] for r in rows], vectors)
        self.index.add(vectors, np.asarray([r[0] for r in rows]))

    def _store_vectors(self, chunk_ids: Sequence[int], vectors: Sequence[np.ndarray] | np.ndarray) -> None:
        """Keep re-embedded vectors in the database too (other replicas read them there)."""
        if len(chunk_ids):
            with self.db.session() as session:
                replication.record_added(session, chunk_ids, np.asarray(vectors), self.space)


def _no_checkpoint(step: str) -> None:
    """Default `DocumentStore.checkpoint`."""


def _no_failure_hook(prepared: PreparedFile) -> None:
    """Default `DocumentStore.on_failed`."""


def _chunk_row(prepared: PreparedFile, draft: ChunkDraft, chunk_id: int) -> dict[str, object]:
    return {
        "id": chunk_id,
        "document_id": prepared.row_id,
        "collection": prepared.collection,
        "ordinal": draft.ordinal,
        "text": draft.text,
        "content_hash": draft.content_hash,
        "page": draft.page,
        "section": draft.section,
        "char_start": draft.char_start,
        "char_end": draft.char_end,
        "token_count": draft.token_count,
        "meta": {},
    }


def _stored_result(prepared: PreparedFile) -> FileResult:
    status = "replaced" if prepared.replaces else "ingested"
    return FileResult(
        prepared.source,
        prepared.collection,
        status,
        prepared.document_id,
        len(prepared.drafts),
        prepared.dropped_chunks,
    )
