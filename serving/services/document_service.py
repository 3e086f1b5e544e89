"""Documents for the API: upload (inline or in the background), list, inspect, delete; domain records out.

Contract: uploads go through the same `IngestService` as the CLI, in a worker thread. The service gets the shared
index lock (the one searches take) as its write lock and holds it only for its short write steps: parsing and
embedding an upload never block retrieval. Sizes are read from the received files and checked once, here, before
anything is read or queued: a file over `ingest.max_file_mb` gets its failed `FileResult` (413) without being read
or handed to the ingest service, and an upload where every file is over it is refused at once (413). An upload whose
total size is at most `server.sync_upload_mb` is ingested before the response (`InlineUpload`: one `FileResult` per
file, in the order sent; a batch where every file failed raises the first file's error, so a single bad file gets
its own 4xx); a larger one is accepted at once (an `UploadTask`, 202) and ingested in the background, its progress
kept in the task polled at `GET /v1/documents/uploads/{id}`. Both go through one write step (`_ingest_step`: read
the accepted files, `ingest_files`, results back in the order sent). A background upload's files are copied to disk
(`<data_dir>/incoming/<task>/`) before the response and read back one step at a time, so memory holds one step's
files, never the whole upload; the folder is removed when the task ends (a crash's leftovers a day later, at a
start). Upload tasks live in memory, at most `ingest.upload_tasks_kept` of them (the oldest finished ones are pruned;
a new background upload is a 503 while that many still run). After a restart, documents a killed upload left in
'processing' are cleaned up by the ingest service's recovery and can be uploaded again. `list`, `get` and `delete`
return `DocumentRecord`s (and the chunk count removed); the JSON is made in `serving.rest_format`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import func, select

from assistant.errors import AssistantError, NotFoundError, PayloadTooLargeError, ServiceUnavailableError
from assistant.storage import Chunk, Database, Document
from ingest.ingest_service import IngestService
from ingest.results import FileResult
from serving.principal import Principal

log = logging.getLogger(__name__)

UPLOAD_STEP_FILES = 50  # files per pipelined ingest call of a background upload (its progress granularity)
Received = tuple[str, BinaryIO]  # a file as received: its name and a readable, seekable file object
# A file of an upload on its way to the store: its name and where its bytes are (the request's file object, or its
# copy on disk for a background upload), or the `FileResult` that already refused it (over `ingest.max_file_mb`).
Pending = tuple[str, BinaryIO | Path | FileResult]


def _size(handle: BinaryIO) -> int:
    handle.seek(0, 2)
    size = handle.tell()
    handle.seek(0)
    return size


@dataclass
class UploadTask:
    """A background upload: its files (names, in the order sent) and the results so far, in that order."""

    id: str
    collection: str
    files: list[str]
    state: str = "queued"  # queued | running | done
    results: list[FileResult] = field(default_factory=list)

    @property
    def progress(self) -> float:
        return len(self.results) / len(self.files) if self.files else 1.0


@dataclass(frozen=True)
class InlineUpload:
    """An upload ingested before the response: one result per file, in the order sent."""

    collection: str
    results: list[FileResult]


@dataclass(frozen=True)
class ChunkRecord:
    id: int
    ordinal: int
    text: str
    page: int | None
    section: str | None
    char_start: int
    char_end: int
    tokens: int


@dataclass(frozen=True)
class DocumentRecord:
    """A stored document; `parse_report` and `chunk_list` only when read one at a time (`get`)."""

    id: str
    collection: str
    source: str
    title: str
    mime_type: str
    size_bytes: int
    status: str
    error: str | None
    chunks: int
    created_at: datetime
    updated_at: datetime
    parse_report: dict[str, Any] | None = None
    chunk_list: list[ChunkRecord] | None = None
    detailed: bool = False  # read one at a time: the JSON carries `parse_report` (even when None)


def _document_record(document: Document, chunks: int, **detail: Any) -> DocumentRecord:
    return DocumentRecord(
        document.id,
        document.collection,
        document.source,
        document.title,
        document.mime_type,
        document.size_bytes,
        document.status,
        document.error,
        chunks,
        document.created_at,
        document.updated_at,
        **detail,
    )


def _chunk_record(chunk: Chunk) -> ChunkRecord:
    return ChunkRecord(
        chunk.id,
        chunk.ordinal,
        chunk.text,
        chunk.page,
        chunk.section,
        chunk.char_start,
        chunk.char_end,
        chunk.token_count,
    )


class DocumentsService:
    def __init__(
        self, ingest: IngestService, db: Database, lock: AbstractContextManager[Any], sync_limit_bytes: int
    ) -> None:
        self.ingest = ingest
        self.db = db
        self.lock = lock
        ingest.use_write_lock(lock)
        self.max_tasks = ingest.settings.ingest.upload_tasks_kept
        self.max_file_mb = ingest.settings.ingest.max_file_mb
        self.sync_limit_bytes = sync_limit_bytes
        self.uploads: dict[str, UploadTask] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def upload(self, files: Sequence[Received], collection: str) -> InlineUpload | UploadTask:
        """The results (inline), or the background task to poll (see the module contract)."""
        sizes = [_size(handle) for _, handle in files]
        pending = [
            self._admit(name, handle, size, collection) for (name, handle), size in zip(files, sizes, strict=True)
        ]
        refused = [item for _, item in pending if isinstance(item, FileResult)]
        if len(refused) == len(pending):
            _raise_if_all_failed(refused)
        if sum(sizes) <= self.sync_limit_bytes:
            results = await self._ingest_step(pending, collection)
            _raise_if_all_failed(results)
            return InlineUpload(collection, results)
        task = UploadTask(f"upload-{uuid.uuid4().hex[:20]}", collection, [name for name, _ in files])
        self._prune_tasks()
        spooled = await asyncio.to_thread(self._spool, task.id, pending)
        self.uploads[task.id] = task
        job = asyncio.create_task(self._run_upload(task, spooled))
        self._background.add(job)
        job.add_done_callback(self._background.discard)
        return task

    def _admit(self, name: str, handle: BinaryIO, size: int, collection: str) -> Pending:
        """The upload's one size check: a file over `ingest.max_file_mb` is refused here, unread."""
        limit = self.max_file_mb
        if size <= limit * 1024 * 1024:
            return name, handle
        error = PayloadTooLargeError(f"{name} is {size / 2**20:.1f} MB; the limit is {limit} MB (ingest.max_file_mb)")
        return name, FileResult.failure(name, collection, error)

    async def _ingest_step(self, pending: Sequence[Pending], collection: str) -> list[FileResult]:
        """The one write path of both kinds of upload: the accepted files read (off the event loop) and ingested in
        one pipelined call; the results, refused files included, in the order given."""

        def read() -> list[tuple[str, bytes]]:
            return [(name, _read(where)) for name, where in pending if not isinstance(where, FileResult)]

        accepted = await asyncio.to_thread(read)
        ingested = iter(await asyncio.to_thread(self.ingest.ingest_files, accepted, collection) if accepted else [])
        return [where if isinstance(where, FileResult) else next(ingested) for _, where in pending]

    def _prune_tasks(self) -> None:
        """Make room for one task: drop the oldest finished ones; refuse when every kept task is still running."""
        finished = [task_id for task_id, task in self.uploads.items() if task.state == "done"]
        excess = len(self.uploads) + 1 - self.max_tasks
        for task_id in finished[: max(excess, 0)]:
            del self.uploads[task_id]
        if len(self.uploads) >= self.max_tasks:
            raise ServiceUnavailableError(
                f"{len(self.uploads)} uploads are still being ingested (ingest.upload_tasks_kept); retry shortly"
            )

    def incoming_dir(self) -> Path:
        return self.ingest.settings.data_dir / "incoming"

    def _spool(self, task_id: str, pending: Sequence[Pending]) -> list[Pending]:
        """Copy a background upload's accepted files to disk (the request's own temporary files go with the
        request); refused files keep their result."""
        folder = self.incoming_dir() / task_id
        folder.mkdir(parents=True, exist_ok=True)
        spooled: list[Pending] = []
        for i, (name, where) in enumerate(pending):
            if not isinstance(where, FileResult | Path):  # the request's file object
                path = folder / f"{i:06d}"
                with path.open("wb") as out:
                    shutil.copyfileobj(where, out, 1024 * 1024)
                where = path
            spooled.append((name, where))
        return spooled

    def remove_stale_incoming(self, older_than_s: float = 86_400) -> None:
        """At start: files of background uploads a crash interrupted (their tasks died with their process). Only
        folders untouched for a day go: another server sharing this data directory may be spooling right now."""
        folder = self.incoming_dir()
        for entry in folder.iterdir() if folder.is_dir() else []:
            if time.time() - entry.stat().st_mtime > older_than_s:
                shutil.rmtree(entry, ignore_errors=True)

    async def _run_upload(self, task: UploadTask, spooled: list[Pending]) -> None:
        """Ingest `UPLOAD_STEP_FILES` files per pipelined call (one index save per group, not per file), read from
        disk one step at a time; the task's progress advances step by step."""
        task.state = "running"
        try:
            for start in range(0, len(spooled), UPLOAD_STEP_FILES):
                await self._run_step(task, spooled[start : start + UPLOAD_STEP_FILES], start)
        finally:
            task.state = "done"
            shutil.rmtree(self.incoming_dir() / task.id, ignore_errors=True)

    async def _run_step(self, task: UploadTask, step: list[Pending], start: int) -> None:
        try:
            task.results.extend(await self._ingest_step(step, task.collection))
        except AssistantError as exc:
            task.results.extend(_failed(step, task.collection, exc))
        except Exception as exc:  # one broken step must not stop the upload; it is reported, not hidden
            log.exception("upload %s: files %d-%d failed", task.id, start, start + len(step) - 1)
            error = f"{type(exc).__name__}: {exc}"
            task.results.extend(
                where if isinstance(where, FileResult) else FileResult(name, task.collection, "failed", error=error)
                for name, where in step
            )

    def upload_status(self, upload_id: str) -> UploadTask:
        task = self.uploads.get(upload_id)
        if task is None:
            raise NotFoundError(f"upload {upload_id} does not exist (upload tasks are kept until a restart)")
        return task

    def list(self, principal: Principal, collection: str | None, limit: int, offset: int) -> list[DocumentRecord]:
        allowed = principal.check_collections([collection] if collection else None)
        counts = select(Chunk.document_id, func.count(Chunk.id).label("n")).group_by(Chunk.document_id).subquery()
        query = select(Document, func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.document_id == Document.id)
        query = query.where(Document.status != "staging")  # a replace's new version, until it is swapped in
        if allowed is not None:
            query = query.where(Document.collection.in_(allowed))
        query = query.order_by(Document.created_at.desc(), Document.id).limit(limit).offset(offset)
        with self.db.session() as session:
            rows = session.execute(query).all()
            return [_document_record(doc, n) for doc, n in rows]

    def get(self, document_id: str, principal: Principal, with_chunks: bool = True) -> DocumentRecord:
        with self.db.session() as session:
            document = session.get(Document, document_id)
            if document is None:
                raise NotFoundError(f"document {document_id} does not exist", param="document_id")
            principal.check_collections([document.collection])
            chunks = session.scalars(
                select(Chunk).where(Chunk.document_id == document_id).order_by(Chunk.ordinal)
            ).all()
            return _document_record(
                document,
                len(chunks),
                parse_report=document.parse_report,  # pages, method per page, tables, warnings (None before)
                chunk_list=[_chunk_record(chunk) for chunk in chunks] if with_chunks else None,
                detailed=True,
            )

    async def delete(self, document_id: str, principal: Principal) -> int:
        """Delete a document the key may read; the number of chunks removed."""
        self.get(document_id, principal, with_chunks=False)  # 404 / 403 before anything changes
        return await asyncio.to_thread(self.ingest.delete_document, document_id)


def _read(where: BinaryIO | Path) -> bytes:
    return where.read_bytes() if isinstance(where, Path) else where.read()


def _failed(step: Sequence[Pending], collection: str, exc: AssistantError) -> list[FileResult]:
    return [
        where if isinstance(where, FileResult) else FileResult.failure(name, collection, exc) for name, where in step
    ]


class UploadFailed(AssistantError):
    """Every file of an inline upload failed: carries the first file's status so the client sees a real 4xx."""

    def __init__(self, first: FileResult, count: int) -> None:
        message = first.error or "upload failed"
        if count > 1:
            message = f"all {count} files failed; first ({first.source}): {message}"
        else:
            message = f"{first.source}: {message}"
        super().__init__(message, param="files")
        self.status_code = first.status_code or 422
        self.error_type = "invalid_request_error"


def _raise_if_all_failed(results: list[FileResult]) -> None:
    if results and all(not r.ok for r in results):
        raise UploadFailed(results[0], len(results))
