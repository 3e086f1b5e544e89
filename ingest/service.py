"""The ingest service: files in, chunk rows + vectors out, kept consistent across crashes.

Contract (the CLI and the REST layer call these, nothing else):
- `IngestService.of(parts)` is the service over the parts of `assistant.parts.Parts` (database, vector index,
  embedder), built once per `Parts`; it runs `recover()` first. `open(settings, embedder=None)` = `of(Parts(...))`.
- `ingest_paths(paths, collection) -> IngestReport`: files, folders (recursive, hidden files skipped) and globs.
- `ingest_file(name, data, collection) -> FileResult`: one uploaded file. Errors are per file (`FileResult.failure`
  with the `assistant.errors` type and HTTP status); a failing file never changes stored data.
- Incremental: a document is identified by (collection, source). Same bytes again = 'unchanged' (no-op); changed
  bytes = 'replaced' (its chunk rows and vectors are swapped, the document id stays); the same bytes under another
  source in the collection = 'duplicate' (skipped). Exact duplicate chunks (SHA-256) and near duplicates (MinHash
  LSH, `ingest.near_duplicate_threshold`) of chunks already in the collection are dropped and reported.
- `delete_document(doc_id)` removes the row, its chunk rows and their vectors; `rebuild_index()` rebuilds the index
  from the rows (flat or HNSW by size, tombstones dropped, missing vectors re-embedded); `check_index()` reports
  whether index and rows agree.

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
A process killed anywhere leaves: rows in 'processing' or 'staging' (deleted on open with their chunk rows; the old
version of a replace is untouched) and possibly vectors whose rows are gone (removed on open). A 'ready' document's
vectors are always in the saved file, because step 2 precedes step 3; should one be missing anyway (a lost file),
`recover()` re-embeds it from the stored text. A step that fails (embedding error, disk full, SQL error) undoes only
the new version's rows and vectors. Deletion commits the rows first and saves the index second, so its only crash
residue is orphan vectors.

Shared database (several replicas, `assistant.index.replication`): chunk ids are picked in the database under a lock,
every vector is also stored there with a change-log entry, and recovery deletes only unfinished rows this data
directory wrote (or ones untouched for ten minutes), never another replica's upload in progress.

Locks: a writing service holds the data directory's writer lock (`ingest.writer_lock`: one writing process per
data dir; a second one gets a 409 naming the holder); `read_only=True` (index check) takes none. Public methods are
serialised by the service's own lock; the `write_lock` (the server's index lock, which
searches take) is held only inside each write step above, never while parsing or embedding.
"""

from __future__ import annotations

import functools
import glob
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from assistant.dedup import NearDuplicateIndex, SelectionReport, content_hash
from assistant.embedding import Embedder, embedder_space
from assistant.errors import AssistantError, NotFoundError, PayloadTooLargeError, UnprocessableError
from assistant.index import VectorIndex, replication
from assistant.parts import Parts
from assistant.settings import Settings
from assistant.storage.db import Database
from assistant.storage.models import Chunk, Document, new_id
from ingest.chunking import Chunker
from ingest.documents import ChunkDraft
from ingest.loaders import LoaderOptions
from ingest.parsing import parse_file
from ingest.pipeline import pipelined
from ingest.results import ConsistencyReport, FileResult, IngestReport
from ingest.writer_lock import WriterLock

log = logging.getLogger(__name__)

UNFINISHED = ("processing", "staging")  # statuses of rows an interrupted write leaves behind
GROUP_BATCHES = 64  # chunks embedded per group = embed_batch_size * GROUP_BATCHES (large: less padding)
T = TypeVar("T")


def _serialised(method: Callable[..., T]) -> Callable[..., T]:
    """Run a public mutating method under the service's lock (one writer at a time, e.g. concurrent uploads)."""

    @functools.wraps(method)
    def wrapper(self: IngestService, *args: object, **kwargs: object) -> T:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


@dataclass
class _Prepared:
    """A parsed, cleaned, chunked file waiting for its embeddings."""

    source: str
    collection: str
    document_id: str
    replaces: bool
    raw_hash: str
    size: int
    title: str
    mime_type: str
    drafts: list[ChunkDraft]
    dropped_chunks: int
    row_id: str | None = None  # the row holding the new chunks until step 3: the document's, or a staging row


@dataclass
class _BatchState:
    """Content seen earlier in the same call (not yet committed)."""

    documents: dict[tuple[str, str], str] = field(default_factory=dict)
    chunks: set[tuple[str, str]] = field(default_factory=set)


class IngestService:
    """Ingests documents into one database + vector index (see the module contract)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        index: VectorIndex,
        embedder: Embedder,
        *,
        recover: bool = True,
        write_lock: threading.RLock | None = None,
        read_only: bool = False,
    ) -> None:
        self.settings = settings
        # One writing process per data dir (an OS file lock); a read-only service (index check) neither takes it
        # nor repairs anything.
        self.writer = None if read_only else WriterLock.acquire(settings.data_dir)
        # Held only while rows/vectors are written or the index saved, never while parsing or embedding: the server
        # passes the lock its searches take (`use_write_lock`), so retrieval waits for a write step, not an upload.
        self.write_lock = write_lock or threading.RLock()
        # Called with the name of each write step as it completes (a no-op; the crash tests stop the process there).
        self.checkpoint: Callable[[str], None] = _no_checkpoint
        self.options = settings.ingest
        self.db = db
        self.index = index
        self.embedder = embedder
        # Vectors are also stored in the database with their space, so other replicas need not re-embed them.
        self.space = replication.space_key(embedder_space(settings, embedder.dim))
        self.writer_id = replication.writer_identity(settings.data_dir)  # recovery drops only its own residue
        self.chunker = Chunker(embedder, self.options.chunk_tokens, self.options.chunk_overlap)
        self.loader_options = LoaderOptions.from_settings(self.options)
        self._near: dict[str, NearDuplicateIndex] = {}
        self._lock = threading.RLock()
        if recover and not read_only:
            self.recover()

    def close(self) -> None:
        """Give back the data directory's writer lock (the process exiting does it too)."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None

    @classmethod
    def of(cls, parts: Parts, *, read_only: bool = False) -> IngestService:
        """The ingest service over `parts` (database, index, embedder), built once per `Parts`; it recovers from an
        interrupted run unless `read_only` (an index check beside a running writer)."""
        return parts.attach("ingest-read-only" if read_only else "ingest", lambda p: cls._build(p, read_only))

    @classmethod
    def _build(cls, parts: Parts, read_only: bool) -> IngestService:
        if read_only:
            return cls(parts.settings, parts.db, parts.index, parts.embedder, read_only=True)
        early = WriterLock.acquire(parts.settings.data_dir)  # fail fast, before loading a model, when another writes
        try:
            return cls(parts.settings, parts.db, parts.index, parts.embedder)
        finally:
            early.release()

    @classmethod
    def open(cls, settings: Settings, embedder: Embedder | None = None) -> IngestService:
        """`of(Parts(settings, embedder=embedder))`: a service over its own parts (scripts and tests)."""
        return cls.of(Parts(settings, embedder=embedder))

    # ------------------------------------------------------------ public API

    @_serialised
    def ingest_paths(self, paths: Sequence[str | Path], collection: str = "default") -> IngestReport:
        """Ingest files, folders (recursively) and glob patterns; one `FileResult` per file.

        Files are prepared (parsed, cleaned, chunked, deduplicated) in groups of about
        `embed_batch_size * GROUP_BATCHES` chunks; a group is embedded in a background thread while the next one is
        prepared, and written (in the crash-safe order) once its vectors are ready (`ingest.pipeline`).
        """
        started = time.perf_counter()
        report, state = IngestReport(), _BatchState()
        files, missing = expand_paths(paths)
        report.files.extend(FileResult.failure(m, collection, NotFoundError(f"{m}: no such file")) for m in missing)
        prepare = functools.partial(self._prepare_path, collection=collection, state=state, selection=report.selection)
        groups = self._prepared_groups(files, prepare, report)
        report.files.extend(pipelined(groups, self._embed_batch, self._store_batch))
        report.seconds = time.perf_counter() - started
        log.info(
            "ingested %d files into %r in %.1f s: %s", len(report.files), collection, report.seconds, report.counts()
        )
        return report

    @_serialised
    def ingest_files(self, files: Sequence[tuple[str, bytes]], collection: str = "default") -> list[FileResult]:
        """Ingest several uploaded files (source name, bytes) like `ingest_paths`: pipelined, one index save per
        group rather than per file. One `FileResult` per file, in the order given."""
        names = [name for name, _data in files]
        if len(set(names)) < len(names):  # a later same-named file replaces an earlier one: one at a time, in order
            return [self.ingest_file(name, data, collection) for name, data in files]
        report, state = IngestReport(), _BatchState()

        def prepare(item: tuple[str, bytes]) -> _Prepared | FileResult:
            return self._prepare(item[0], item[1], collection, state, report.selection)

        report.files.extend(
            pipelined(self._prepared_groups(list(files), prepare, report), self._embed_batch, self._store_batch)
        )
        return _in_order(report.files, names)

    def _prepared_groups(
        self, items: Sequence[T], prepare: Callable[[T], _Prepared | FileResult], report: IngestReport
    ) -> Iterator[list[_Prepared]]:
        """Groups of prepared files; files that need no write (unchanged, failed) go straight to the report."""
        batch: list[_Prepared] = []
        target = self.options.embed_batch_size  # a small first group gets the embedder busy early
        for item in items:
            prepared = prepare(item)
            if isinstance(prepared, FileResult):
                report.files.append(prepared)
                continue
            batch.append(prepared)
            if sum(len(p.drafts) for p in batch) >= target:
                yield batch
                batch, target = [], self.options.embed_batch_size * GROUP_BATCHES
        if batch:
            yield batch

    @_serialised
    def ingest_file(self, name: str, data: bytes, collection: str = "default") -> FileResult:
        """Ingest one file's bytes under the source name `name` (an upload)."""
        prepared = self._prepare(name, data, collection, _BatchState(), SelectionReport())
        if isinstance(prepared, FileResult):
            return prepared
        done: Future[np.ndarray] = Future()
        try:
            done.set_result(self._embed_batch([prepared]))
        except (RuntimeError, ValueError) as exc:
            done.set_exception(exc)
        return self._store_batch([prepared], done)[0]

    def use_write_lock(self, lock: threading.RLock) -> None:
        """Share the lock the caller's readers take (see `write_lock`)."""
        self.write_lock = lock

    @_serialised
    def delete_document(self, document_id: str) -> int:
        """Delete a document, its chunk rows and their vectors; returns the number of chunks removed."""
        with self.db.session() as session:
            document = session.get(Document, document_id)
            if document is None:
                raise NotFoundError(f"document {document_id} does not exist", param="document_id")
            collection = document.collection
            ids = list(session.scalars(select(Chunk.id).where(Chunk.document_id == document_id)))
        with self.write_lock:
            with self.db.session() as session:
                session.execute(delete(Chunk).where(Chunk.document_id == document_id))
                session.execute(delete(Document).where(Document.id == document_id))
                replication.record_removed(session, ids)
            self.index.remove(np.asarray(ids, dtype=np.int64))
            self.index.save()
        if collection in self._near:
            self._near[collection].remove_group(document_id)
        log.info("deleted document %s (%d chunks)", document_id, len(ids))
        return len(ids)

    @_serialised
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

    @_serialised
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

    @_serialised
    def rebuild_index(self, reembed: bool = False) -> ConsistencyReport:
        """Rebuild the index from the rows: structure by size (flat/HNSW), tombstones dropped, gaps re-embedded
        (every chunk with `reembed=True`: the embedder changed)."""
        with self.db.session() as session:
            rows = session.execute(
                select(Chunk.id, Chunk.text).join(Document).where(Document.status == "ready").order_by(Chunk.id)
            ).all()
        ids = np.asarray([row[0] for row in rows], dtype=np.int64)
        stored = {} if reembed else self.index.vectors(ids)
        missing = [(chunk_id, text) for chunk_id, text in rows if chunk_id not in stored]
        stored.update(zip([m[0] for m in missing], self.embedder.embed([m[1] for m in missing]), strict=True))
        self._store_vectors([m[0] for m in missing], [stored[m[0]] for m in missing])
        vectors = np.stack([stored[int(i)] for i in ids]) if len(ids) else np.zeros((0, self.embedder.dim), "float32")
        with self.write_lock:
            self.index.rebuild(vectors, ids)
            self.index.save()
        log.info("rebuilt the index: %d vectors (%s)", len(ids), self.index.kind)
        return self.check_index()

    # ------------------------------------------------------------ preparing (no writes)

    def _prepare_path(
        self, path: Path, *, collection: str, state: _BatchState, selection: SelectionReport
    ) -> _Prepared | FileResult:
        source = str(path.resolve())
        try:
            self._check_size(source, path.stat().st_size)
            data = path.read_bytes()
        except AssistantError as exc:
            return FileResult.failure(source, collection, exc)
        except OSError as exc:
            return FileResult.failure(source, collection, UnprocessableError(f"{source}: cannot be read ({exc})"))
        return self._prepare(source, data, collection, state, selection)

    def _check_size(self, source: str, size: int) -> None:
        limit = self.options.max_file_mb * 1024 * 1024
        if size > limit:
            raise PayloadTooLargeError(
                f"{source}: {size / 1e6:.1f} MB is over the {self.options.max_file_mb:g} MB limit (ingest.max_file_mb)"
            )

    def _prepare(
        self, source: str, data: bytes, collection: str, state: _BatchState, selection: SelectionReport
    ) -> _Prepared | FileResult:
        try:
            self._check_size(source, len(data))
            return self._parse(source, data, collection, state, selection)
        except AssistantError as exc:
            log.warning("%s", exc.message)
            return FileResult.failure(source, collection, exc)

    def _parse(
        self, source: str, data: bytes, collection: str, state: _BatchState, selection: SelectionReport
    ) -> _Prepared | FileResult:
        raw_hash = content_hash(data)
        existing = self._find_document(collection, source)
        if existing is not None and existing.content_hash == raw_hash and existing.status == "ready":
            selection.drop(source, "document", "unchanged", f"same content as {existing.id}")
            return FileResult(source, collection, "unchanged", existing.id, chunks=self._chunk_count(existing.id))
        duplicate_of = state.documents.get((collection, raw_hash)) or self._find_duplicate(collection, raw_hash, source)
        if duplicate_of is not None:
            selection.drop(source, "document", "duplicate", f"same content as {duplicate_of}")
            return FileResult(source, collection, "duplicate", duplicate_of)
        clean, report = parse_file(source, data, self.loader_options, self.options.parse_timeout_s)
        document_id = existing.id if existing is not None else new_id("doc")
        drafts = self._select_chunks(self.chunker.chunk(clean), source, collection, document_id, state, report)
        selection.extend(report)
        if not drafts:
            return FileResult(source, collection, "duplicate", document_id, dropped_chunks=len(report.dropped))
        state.documents[(collection, raw_hash)] = document_id
        return _Prepared(
            source,
            collection,
            document_id,
            existing is not None,
            raw_hash,
            len(data),
            clean.title,
            clean.mime_type,
            drafts,
            sum(1 for d in report.dropped if d.level == "chunk"),
        )

    def _select_chunks(
        self,
        drafts: list[ChunkDraft],
        source: str,
        collection: str,
        document_id: str,
        state: _BatchState,
        report: SelectionReport,
    ) -> list[ChunkDraft]:
        """Drop exact duplicates (in the collection, the batch, the document) and near duplicates."""
        stored = self._stored_chunk_hashes(collection, [d.content_hash for d in drafts], document_id)
        near = self._near_index(collection)
        near.remove_group(document_id)  # a replaced version must not count as a duplicate of the new one
        kept: list[ChunkDraft] = []
        for draft in drafts:
            if draft.content_hash in stored or (collection, draft.content_hash) in state.chunks:
                report.drop(source, "chunk", "duplicate", f"chunk {draft.ordinal} at {draft.char_start}")
            elif near.find(draft.text):
                report.drop(source, "chunk", "near_duplicate", f"chunk {draft.ordinal} at {draft.char_start}")
            else:
                state.chunks.add((collection, draft.content_hash))
                draft.ordinal = len(kept)
                near.add((document_id, draft.ordinal), draft.text, group=document_id)
                kept.append(draft)
        return kept

    # ------------------------------------------------------------ database reads

    def _find_document(self, collection: str, source: str) -> Document | None:
        with self.db.session() as session:
            return session.scalars(
                select(Document).where(Document.collection == collection, Document.source == source)
            ).first()

    def _find_duplicate(self, collection: str, raw_hash: str, source: str) -> str | None:
        with self.db.session() as session:
            return session.scalars(
                select(Document.id).where(
                    Document.collection == collection,
                    Document.content_hash == raw_hash,
                    Document.source != source,
                    Document.status == "ready",
                )
            ).first()

    def _chunk_count(self, document_id: str) -> int:
        with self.db.session() as session:
            return int(session.scalar(select(func.count(Chunk.id)).where(Chunk.document_id == document_id)) or 0)

    def _stored_chunk_hashes(self, collection: str, hashes: list[str], document_id: str) -> set[str]:
        with self.db.session() as session:
            return set(
                session.scalars(
                    select(Chunk.content_hash).where(
                        Chunk.collection == collection,
                        Chunk.content_hash.in_(hashes),
                        Chunk.document_id != document_id,
                    )
                ).all()
            )

    def _near_index(self, collection: str) -> NearDuplicateIndex:
        """The collection's MinHash LSH, built from its stored chunks on first use."""
        if collection not in self._near:
            near = NearDuplicateIndex(self.options.near_duplicate_threshold)
            with self.db.session() as session:
                rows = session.execute(
                    select(Chunk.document_id, Chunk.ordinal, Chunk.text)
                    .join(Document)
                    .where(Chunk.collection == collection, Document.status == "ready")
                ).all()
            for document_id, ordinal, text in rows:
                near.add((document_id, ordinal), text, group=document_id)
            self._near[collection] = near
        return self._near[collection]

    # ------------------------------------------------------------ writing (the crash-safe order)

    def _embed_batch(self, batch: list[_Prepared]) -> np.ndarray:
        return self.embedder.embed([draft.text for p in batch for draft in p.drafts])

    def _store_batch(self, batch: list[_Prepared], embedded: Future[np.ndarray]) -> list[FileResult]:
        """Write a group of prepared files, once their vectors are ready, in the crash-safe order (module docstring).

        Waiting for the vectors happens before the write lock is taken; each write step holds it only briefly.
        """
        try:
            vectors = embedded.result()
        except (RuntimeError, ValueError) as exc:
            return [self._fail(p, UnprocessableError(f"{p.source}: embedding failed ({exc})")) for p in batch]
        self.checkpoint("embedded")
        results: list[FileResult] = []
        staged: list[_Prepared] = []
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

    def _stage(self, prepared: _Prepared, vectors: np.ndarray) -> None:
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

    def _version_row(self, prepared: _Prepared) -> Document:
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
        )

    def _save_index(self) -> None:
        with self.write_lock:
            self.index.save()

    def _swap(self, staged: list[_Prepared]) -> list[int]:
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
                document.status, document.error = "ready", None
                session.flush()
                session.delete(staging)
            replication.record_removed(session, old_ids)
        return old_ids

    def _fail_all(self, staged: list[_Prepared], reason: str) -> list[FileResult]:
        failed = [self._fail(p, UnprocessableError(f"{p.source}: {reason}")) for p in staged]
        try:
            self._save_index()  # best effort: the saved file may hold the failed files' vectors
        except OSError as exc:
            log.warning("index not saved after a failed write (%s); repaired on the next open", exc)
        return failed

    def _fail(self, prepared: _Prepared, error: AssistantError) -> FileResult:
        """Undo whatever a failed file wrote (its new rows, vectors, LSH entries); an old version is left alone."""
        log.warning("%s", error.message)
        self._near_index(prepared.collection).remove_group(prepared.document_id)
        if prepared.replaces:
            self._near.pop(prepared.collection, None)  # rebuilt from the stored (old) chunks on next use
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
    """Default `IngestService.checkpoint`."""


def _chunk_row(prepared: _Prepared, draft: ChunkDraft, chunk_id: int) -> dict[str, object]:
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


def _in_order(results: list[FileResult], sources: list[str]) -> list[FileResult]:
    """`results` (one per source, in completion order) sorted back into the order of `sources` (distinct names)."""
    by_source = {result.source: result for result in results}
    return [by_source[source] for source in sources]


def _stored_result(prepared: _Prepared) -> FileResult:
    status = "replaced" if prepared.replaces else "ingested"
    return FileResult(
        prepared.source,
        prepared.collection,
        status,
        prepared.document_id,
        len(prepared.drafts),
        prepared.dropped_chunks,
    )


def expand_paths(paths: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """Files named by `paths` (files, folders recursively, glob patterns), de-duplicated; and the missing ones."""
    files: list[Path] = []
    missing: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(_folder_files(path))
        elif path.is_file():
            files.append(path)
        else:
            matches = [Path(m) for m in sorted(glob.glob(str(raw), recursive=True)) if Path(m).is_file()]
            files.extend(matches) if matches else missing.append(str(raw))
    unique = {file.resolve(): file for file in files}
    return list(unique.values()), missing


def _folder_files(folder: Path) -> list[Path]:
    return sorted(
        file
        for file in folder.rglob("*")
        if file.is_file() and not any(part.startswith(".") for part in file.relative_to(folder).parts)
    )
