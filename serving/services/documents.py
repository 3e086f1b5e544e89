"""Documents for the API: upload (inline or in the background), list, inspect, delete.

Contract: uploads go through the same `IngestService` as the CLI, in a worker thread. The service gets the shared
index lock (the one searches take) as its write lock and holds it only for its short write steps: parsing and
embedding an upload never block retrieval. An upload whose total size is at most `server.sync_upload_mb` is ingested
before the response (one `FileResult` per file; a batch where every file failed raises the first file's error, so a
single bad file gets its own 4xx); a larger one is accepted at once (202) and ingested in the background, its
progress kept in an `UploadTask` polled at `GET /v1/documents/uploads/{id}`. A background upload's files are copied
to disk (`<data_dir>/incoming/<task>/`) before the response and read back one ingest step at a time, so memory holds
one step's files, never the whole upload; the folder is removed when the task ends (a crash's leftovers a day later,
at a start). Sizes are read from the received files, so an oversized file is refused (413) without reading it.
Upload tasks live in memory, at most `ingest.upload_tasks_kept` of them (the oldest finished ones are pruned; a new
background upload is a 503 while that many still run). After a restart, documents a killed upload left in
'processing' are cleaned up by the ingest service's recovery and can be uploaded again.
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
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import func, select

from assistant.errors import AssistantError, NotFoundError, PayloadTooLargeError, ServiceUnavailableError
from assistant.storage import Chunk, Database, Document
from ingest.results import FileResult
from ingest.service import IngestService
from serving.principal import Principal

log = logging.getLogger(__name__)

UPLOAD_STEP_FILES = 50  # files per pipelined ingest call of a background upload (its progress granularity)
Received = tuple[str, BinaryIO]  # a file as received: its name and a readable, seekable file object


def _size(handle: BinaryIO) -> int:
    handle.seek(0, 2)
    size = handle.tell()
    handle.seek(0)
    return size


@dataclass
class UploadTask:
    id: str
    collection: str
    files: list[str]
    state: str = "queued"  # queued | running | done
    results: list[FileResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        done = len(self.results)
        return {
            "id": self.id,
            "object": "upload",
            "collection": self.collection,
            "state": self.state,
            "progress": done / len(self.files) if self.files else 1.0,
            "files": self.files,
            "results": [r.to_dict() for r in self.results],
        }


def document_dict(document: Document, chunk_count: int) -> dict[str, Any]:
    return {
        "id": document.id,
        "object": "document",
        "collection": document.collection,
        "source": document.source,
        "title": document.title,
        "mime_type": document.mime_type,
        "size_bytes": document.size_bytes,
        "status": document.status,
        "error": document.error,
        "chunks": chunk_count,
        "created_at": int(document.created_at.timestamp()),
        "updated_at": int(document.updated_at.timestamp()),
    }


class DocumentsService:
    def __init__(
        self, ingest: IngestService, db: Database, lock: AbstractContextManager[Any], sync_limit_bytes: int
    ) -> None:
        self.ingest = ingest
        self.db = db
        self.lock = lock
        ingest.use_write_lock(lock)
        self.max_tasks = ingest.settings.ingest.upload_tasks_kept
        self.sync_limit_bytes = sync_limit_bytes
        self.uploads: dict[str, UploadTask] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def upload(self, files: Sequence[Received], collection: str) -> tuple[int, dict[str, Any]]:
        """(status code, body): 200 with per-file results, or 202 with an upload task to poll.

        Files over the ingest size limit are refused up front (never queued), so a lone oversized file gets its 413
        at once even when it would otherwise go to the background.
        """
        sizes = [_size(handle) for _, handle in files]
        refused = [self._refuse_oversized(name, size, collection) for (name, _), size in zip(files, sizes, strict=True)]
        if all(refused):
            _raise_if_all_failed([r for r in refused if r is not None])
        if sum(sizes) <= self.sync_limit_bytes:
            payload = [(name, handle.read()) for name, handle in files]
            results = await asyncio.to_thread(self.ingest.ingest_files, payload, collection)
            _raise_if_all_failed(results)
            return 200, {"object": "list", "collection": collection, "data": [r.to_dict() for r in results]}
        task = UploadTask(f"upload-{uuid.uuid4().hex[:20]}", collection, [name for name, _ in files])
        self._prune_tasks()
        spooled = await asyncio.to_thread(self._spool, task.id, files)
        self.uploads[task.id] = task
        job = asyncio.create_task(self._run_upload(task, spooled))
        self._background.add(job)
        job.add_done_callback(self._background.discard)
        return 202, task.to_dict()

    def _refuse_oversized(self, name: str, size: int, collection: str) -> FileResult | None:
        limit = self.ingest.settings.ingest.max_file_mb
        if size <= limit * 1024 * 1024:
            return None
        error = PayloadTooLargeError(f"{name} is {size / 2**20:.1f} MB; the limit is {limit} MB (ingest.max_file_mb)")
        return FileResult.failure(name, collection, error)

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

    def _spool(self, task_id: str, files: Sequence[Received]) -> list[tuple[str, Path]]:
        """Copy a background upload's files to disk (the request's own temporary files go with the request)."""
        folder = self.incoming_dir() / task_id
        folder.mkdir(parents=True, exist_ok=True)
        spooled = []
        for i, (name, handle) in enumerate(files):
            path = folder / f"{i:06d}"
            with path.open("wb") as out:
                shutil.copyfileobj(handle, out, 1024 * 1024)
            spooled.append((name, path))
        return spooled

    def remove_stale_incoming(self, older_than_s: float = 86_400) -> None:
        """At start: files of background uploads a crash interrupted (their tasks died with their process). Only
        folders untouched for a day go: another server sharing this data directory may be spooling right now."""
        folder = self.incoming_dir()
        for entry in folder.iterdir() if folder.is_dir() else []:
            if time.time() - entry.stat().st_mtime > older_than_s:
                shutil.rmtree(entry, ignore_errors=True)

    async def _run_upload(self, task: UploadTask, spooled: list[tuple[str, Path]]) -> None:
        """Ingest `UPLOAD_STEP_FILES` files per pipelined call (one index save per group, not per file), read from
        disk one step at a time; the task's progress advances step by step."""
        task.state = "running"
        try:
            for start in range(0, len(spooled), UPLOAD_STEP_FILES):
                await self._run_step(task, spooled[start : start + UPLOAD_STEP_FILES], start)
        finally:
            task.state = "done"
            if spooled:
                shutil.rmtree(spooled[0][1].parent, ignore_errors=True)

    async def _run_step(self, task: UploadTask, paths: list[tuple[str, Path]], start: int) -> None:
        step = await asyncio.to_thread(lambda: [(name, path.read_bytes()) for name, path in paths])
        try:
            task.results.extend(await asyncio.to_thread(self.ingest.ingest_files, step, task.collection))
        except AssistantError as exc:
            task.results.extend(FileResult.failure(name, task.collection, exc) for name, _data in step)
        except Exception as exc:  # one broken step must not stop the upload; it is reported, not hidden
            log.exception("upload %s: files %d-%d failed", task.id, start, start + len(step) - 1)
            error = f"{type(exc).__name__}: {exc}"
            task.results.extend(FileResult(name, task.collection, "failed", error=error) for name, _data in step)

    def upload_status(self, upload_id: str) -> dict[str, Any]:
        task = self.uploads.get(upload_id)
        if task is None:
            raise NotFoundError(f"upload {upload_id} does not exist (upload tasks are kept until a restart)")
        return task.to_dict()

    def list(self, principal: Principal, collection: str | None, limit: int, offset: int) -> dict[str, Any]:
        allowed = principal.check_collections([collection] if collection else None)
        counts = select(Chunk.document_id, func.count(Chunk.id).label("n")).group_by(Chunk.document_id).subquery()
        query = select(Document, func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.document_id == Document.id)
        query = query.where(Document.status != "staging")  # a replace's new version, until it is swapped in
        if allowed is not None:
            query = query.where(Document.collection.in_(allowed))
        query = query.order_by(Document.created_at.desc(), Document.id).limit(limit).offset(offset)
        with self.db.session() as session:
            rows = session.execute(query).all()
        return {"object": "list", "data": [document_dict(doc, n) for doc, n in rows]}

    def get(self, document_id: str, principal: Principal, with_chunks: bool = True) -> dict[str, Any]:
        with self.db.session() as session:
            document = session.get(Document, document_id)
            if document is None:
                raise NotFoundError(f"document {document_id} does not exist", param="document_id")
            principal.check_collections([document.collection])
            chunks = session.scalars(
                select(Chunk).where(Chunk.document_id == document_id).order_by(Chunk.ordinal)
            ).all()
            body = document_dict(document, len(chunks))
            body["parse_report"] = document.parse_report  # pages, method per page, tables, warnings (None before)
            if with_chunks:
                body["chunk_list"] = [_chunk_dict(chunk) for chunk in chunks]
        return body

    async def delete(self, document_id: str, principal: Principal) -> dict[str, Any]:
        self.get(document_id, principal, with_chunks=False)  # 404 / 403 before anything changes
        removed = await asyncio.to_thread(self._delete, document_id)
        return {"id": document_id, "object": "document.deleted", "deleted": True, "chunks": removed}

    def _delete(self, document_id: str) -> int:
        return self.ingest.delete_document(document_id)


def _chunk_dict(chunk: Chunk) -> dict[str, Any]:
    return {
        "id": chunk.id,
        "ordinal": chunk.ordinal,
        "text": chunk.text,
        "page": chunk.page,
        "section": chunk.section,
        "char_start": chunk.char_start,
        "char_end": chunk.char_end,
        "tokens": chunk.token_count,
    }


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
