"""Directory sources: a folder kept in sync with a collection, through the ingest service's crash-safe replace.

Contract:
- `SourceRegistry(settings, db)` stores sources (`create`, `records`, `get` by id or name, `delete`) as `SourceRecord`s.
  A source is a directory, a collection, a delete policy (`mirror`: a file deleted from the folder is deleted from the
  collection; `keep`: its document stays) and an optional schedule (`interval_s`).
- `SourceSyncer(registry, ingest)` syncs one source: `plan(source)` is the dry-run diff (reads only: nothing is
  claimed, ingested or written) and `sync(source)` applies it; both return a `SyncReport` (added / changed / deleted /
  kept / unchanged / failed files, by their path relative to the source root).
- A file is identified by its path relative to the root; its document is named `<source name>/<relative path>` in
  the collection and belongs to the source only through its `source_files` row. A document the source has no row for
  (uploaded by hand, or by another tool, under that name) is never replaced or deleted: that file fails with a
  message instead. Other documents of the collection are never looked at.
- What changed: size and mtime first (equal: unchanged, the file is not read), then the SHA-256 of the bytes (equal:
  unchanged, the row takes the new mtime). Nothing changed = nothing read, parsed or embedded.
- New and changed files go through `IngestService.ingest_files` in batches of at most `sources.batch_files` files and
  `sources.batch_mb` megabytes (one batch's bytes are in memory at once; a larger file goes alone) (its crash-safe
  replace: a sync killed anywhere leaves each file's old or new version). A row is written before its file's first
  ingest, so a document a killed sync stored is recognised as the source's own afterwards. Deleted files are handled
  after the others, and only when the root itself is readable (a missing or unmounted folder fails the sync; it never
  reads as "every file deleted").
- Per-file errors are recorded (`SyncReport.failed`, the source's `errors`), never fatal. A file that failed for its
  own content (413/415/422) is not re-parsed until it changes; other failures are retried on the next sync.
- One sync at a time per source, across processes sharing the database: `sync` claims the source's lease with a
  compare-and-set update (free, expired after `sources.lease_s`, or left by a dead process on this host), renews it
  while it runs (a heartbeat thread, and after each batch) and gives it back at the end; a second sync gets a
  `ConflictError` (409). `claim` and `run_claimed` are `sync` in two steps, so a server can answer once the claim is
  taken and run the sync in the background.
Hidden files and folders, Office lock files (`~$...`), editor backups (`...~`) and symbolic links are skipped.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from assistant.dedup import content_hash
from assistant.errors import ConflictError, InvalidRequestError, NotFoundError, UnprocessableError
from assistant.settings import Settings
from assistant.storage.db import Database
from assistant.storage.orm import Document, Source, SourceFile
from ingest.ingest_service import IngestService
from ingest.results import FileResult

log = logging.getLogger(__name__)

DELETE_POLICIES = ("mirror", "keep")
MAX_ERRORS_KEPT = 100  # per-file errors kept on the source row (the counts stay exact)
OWN_FAULT = (413, 415, 422)  # the file itself is refused: not re-parsed until it changes
IGNORED_SUFFIXES = ("~", ".tmp", ".swp", ".part", ".crdownload")


@dataclass(frozen=True)
class SourceRecord:
    """A source as stored (see the module contract)."""

    id: str
    name: str
    path: str
    collection: str
    delete_policy: str
    interval_s: float | None
    status: str
    counts: dict[str, int]
    errors: list[dict[str, Any]]
    last_error: str | None
    last_sync_at: datetime | None
    syncing: bool
    created_at: datetime

    @classmethod
    def of(cls, row: Source) -> SourceRecord:
        leased = row.lease_owner is not None and _aware(row.lease_until) > _now()
        return cls(
            row.id,
            row.name,
            row.path,
            row.collection,
            row.delete_policy,
            row.interval_s,
            row.status,
            dict(row.counts or {}),
            list(row.errors or []),
            row.last_error,
            _aware(row.last_sync_at) if row.last_sync_at else None,
            leased,
            _aware(row.created_at),
        )

    def document_name(self, rel_path: str) -> str:
        """The `documents.source` a file of this source is stored under."""
        return f"{self.name}/{rel_path}"


@dataclass
class SyncReport:
    """What a sync did (or, with `dry_run`, would do), file by file (paths relative to the source root)."""

    source_id: str
    dry_run: bool
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # deleted from the folder, kept in the collection (`keep`)
    unchanged: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)  # {"path", "error", "status_code"}
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "changed": len(self.changed),
            "deleted": len(self.deleted),
            "kept": len(self.kept),
            "unchanged": len(self.unchanged),
            "failed": len(self.failed),
        }

    def fail(self, rel_path: str, error: str, status_code: int | None = None) -> None:
        self.failed.append({"path": rel_path, "error": error, "status_code": status_code})


@dataclass(frozen=True)
class _Seen:
    """A file found in the folder: its size and mtime when scanned."""

    size: int
    mtime_ns: int


@dataclass
class _Plan:
    report: SyncReport
    ingest: list[str] = field(default_factory=list)  # added + changed, in path order
    sizes: dict[str, int] = field(default_factory=dict)  # bytes per file, as scanned
    touch: dict[str, _Seen] = field(default_factory=dict)  # same bytes, new mtime: the row takes the new stat
    gone: list[str] = field(default_factory=list)  # rows whose file left the folder


# ---------------------------------------------------------------- the stored sources


class SourceRegistry:
    """Sources in the database (see the module contract)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def create(
        self,
        path: str | Path,
        collection: str,
        *,
        name: str | None = None,
        delete_policy: str = "mirror",
        interval_s: float | None = None,
    ) -> SourceRecord:
        """Register a directory; nothing is read or ingested until the first sync."""
        root = self._checked_root(Path(path))
        if delete_policy not in DELETE_POLICIES:
            raise InvalidRequestError(f"delete must be 'mirror' or 'keep', not {delete_policy!r}", param="delete")
        if interval_s is not None and interval_s <= 0:
            raise InvalidRequestError("interval_s must be positive (leave it out for no schedule)", param="interval_s")
        name = name or _default_name(root)
        with self.db.session() as session:
            same = session.scalars(select(Source).where(Source.path == str(root), Source.collection == collection))
            if (existing := same.first()) is not None:
                raise ConflictError(f"{root} is already synced into {collection!r} by source {existing.name!r}")
            if session.scalars(select(Source.id).where(Source.name == name)).first() is not None:
                raise ConflictError(f"a source named {name!r} already exists; pick another name", param="name")
        row = Source(
            name=name,
            path=str(root),
            collection=collection,
            delete_policy=delete_policy,
            interval_s=interval_s,
            status="new",
            counts={},
            errors=[],
        )
        try:
            with self.db.session() as session:
                session.add(row)
                session.flush()
                record = SourceRecord.of(row)
        except IntegrityError as exc:  # a concurrent create took the name first
            raise ConflictError(f"a source named {name!r} already exists; pick another name", param="name") from exc
        log.info(
            "source %s (%s): %s -> collection %r, delete=%s", record.name, record.id, root, collection, delete_policy
        )
        return record

    def records(self) -> list[SourceRecord]:
        with self.db.session() as session:
            return [SourceRecord.of(row) for row in session.scalars(select(Source).order_by(Source.created_at))]

    def get(self, id_or_name: str) -> SourceRecord:
        with self.db.session() as session:
            row = (
                session.get(Source, id_or_name)
                or session.scalars(select(Source).where(Source.name == id_or_name)).first()
            )
            if row is None:
                raise NotFoundError(f"source {id_or_name} does not exist", param="source_id")
            return SourceRecord.of(row)

    def delete(self, id_or_name: str) -> SourceRecord:
        """Forget a source and its file rows (its documents stay, as ordinary documents: see `SourceSyncer.remove`)."""
        source = self.get(id_or_name)
        with self.db.session() as session:
            session.execute(delete(SourceFile).where(SourceFile.source_id == source.id))
            session.execute(delete(Source).where(Source.id == source.id))
        return source

    def files(self, source_id: str) -> dict[str, SourceFile]:
        with self.db.session() as session:
            rows = session.scalars(select(SourceFile).where(SourceFile.source_id == source_id)).all()
            session.expunge_all()
        return {row.rel_path: row for row in rows}

    def _checked_root(self, path: Path) -> Path:
        try:
            root = path.expanduser().resolve()
        except (OSError, ValueError, RuntimeError) as exc:  # '~nobody', a NUL byte, a loop of links
            raise UnprocessableError(f"{str(path)!r} is not a usable directory path: {exc}", param="path") from exc
        if not root.is_dir():
            raise UnprocessableError(f"{path} is not a directory this process can read", param="path")
        data_dir = self.settings.data_dir.expanduser().resolve()
        if root == data_dir or root.is_relative_to(data_dir) or data_dir.is_relative_to(root):
            # its own database and index would be read as documents, and every write would look like a change
            raise UnprocessableError(f"{root} holds or is inside the data directory {data_dir}", param="path")
        allowed = [Path(p).expanduser().resolve() for p in self.settings.sources.allowed_roots]
        if allowed and not any(root == a or root.is_relative_to(a) for a in allowed):
            roots = ", ".join(str(a) for a in allowed)
            raise UnprocessableError(f"{root} is outside sources.allowed_roots ({roots})", param="path")
        return root


# ---------------------------------------------------------------- syncing


class SourceSyncer:
    """Plans and runs the sync of a source into its collection (see the module contract)."""

    def __init__(self, registry: SourceRegistry, ingest: IngestService | None) -> None:
        self.registry = registry
        self.db = registry.db
        self.ingest = ingest  # None: dry runs only (the CLI plans without loading the embedder)
        self.options = registry.settings.sources
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def plan(self, id_or_name: str) -> SyncReport:
        """The dry-run diff: what `sync` would add, change, delete or keep. Changes nothing."""
        source = self.registry.get(id_or_name)
        started = time.perf_counter()
        plan = self._plan(source, dry_run=True)
        plan.report.seconds = time.perf_counter() - started
        return plan.report

    def sync(self, id_or_name: str) -> SyncReport:
        """Bring the collection in line with the folder (module contract); 409 while another sync runs."""
        return self.run_claimed(self.claim(id_or_name))

    def claim(self, id_or_name: str) -> SourceRecord:
        """Take the source's lease (its status becomes `syncing`) for a `run_claimed` that follows, maybe in another
        thread; 409 while another sync runs. Until that run starts renewing it, the lease lasts `sources.lease_s`."""
        if self.ingest is None:
            raise RuntimeError("SourceSyncer without an ingest service can only plan")
        source = self.registry.get(id_or_name)
        self._claim(source)
        return self.registry.get(source.id)

    def run_claimed(self, source: SourceRecord) -> SyncReport:
        """The sync of a source this syncer has claimed: applied, recorded on the source, the lease given back."""
        started = time.perf_counter()
        report = SyncReport(source.id, dry_run=False)
        try:
            with self._heartbeat(source):
                plan = self._plan(source, dry_run=False)
                report = plan.report
                self._apply(source, plan)
        except Exception as exc:
            report.seconds = time.perf_counter() - started
            self._finish(source, report, error=getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
            raise
        report.seconds = time.perf_counter() - started
        self._finish(source, report, error=None)
        log.info("synced source %s in %.1f s: %s", source.name, report.seconds, report.counts())
        return report

    def remove(self, id_or_name: str, delete_documents: bool = False) -> tuple[SourceRecord, int]:
        """Delete a source; with `delete_documents` also the documents it synced. Returns the source and the number
        of documents deleted. Refused (409) while a sync of it runs."""
        source = self.registry.get(id_or_name)
        deleted = 0
        if delete_documents:
            if self.ingest is None:
                raise RuntimeError("SourceSyncer without an ingest service cannot delete documents")
            self._claim(source)
            try:
                for rel_path in sorted(self.registry.files(source.id)):
                    deleted += self._delete_document(source, rel_path)
            finally:
                self._release(source.id)
        return self.registry.delete(source.id), deleted

    # ------------------------------------------------------------ the diff

    def _plan(self, source: SourceRecord, dry_run: bool) -> _Plan:
        root = Path(source.path)
        if (
            not root.is_dir()
        ):  # never read as "every file was deleted": an unmounted share must not empty the collection
            raise UnprocessableError(f"source {source.name}: {root} is not a readable directory", param="path")
        plan = _Plan(SyncReport(source.id, dry_run))
        report = plan.report
        rows = self.registry.files(source.id)
        stored = self._stored_names(source)
        seen = dict(_scan(root))
        for rel_path, stat in seen.items():
            row = rows.get(rel_path)
            if row is None:
                if source.document_name(rel_path) in stored:
                    report.fail(rel_path, _foreign(source, rel_path), 409)
                else:
                    report.added.append(rel_path)
            elif self._unchanged(source, row, stat, stored):
                if row.state == "failed":
                    report.fail(rel_path, row.error or "failed", None)
                else:
                    report.unchanged.append(rel_path)
            elif row.state in ("synced", "duplicate") and row.content_hash == _hash_file(root / rel_path):
                if source.document_name(rel_path) in stored or row.state == "duplicate":
                    report.unchanged.append(rel_path)
                    plan.touch[rel_path] = stat
                else:
                    report.added.append(rel_path)  # its document was deleted by hand: stored again
            elif row.state == "synced" and source.document_name(rel_path) not in stored:
                report.added.append(rel_path)
            else:
                report.changed.append(rel_path)
        for rel_path, row in sorted(rows.items()):
            if rel_path in seen or row.state == "missing":
                continue
            plan.gone.append(rel_path)
            (report.deleted if source.delete_policy == "mirror" else report.kept).append(rel_path)
        plan.ingest = sorted(report.added + report.changed)
        plan.sizes = {rel_path: seen[rel_path].size for rel_path in plan.ingest}
        log.debug("plan for %s (dry run %s): %s", source.name, dry_run, report.counts())
        return plan

    def _unchanged(self, source: SourceRecord, row: SourceFile, stat: _Seen, stored: set[str]) -> bool:
        """Same size and mtime as the last sync saw, and (for a stored file) its document still there."""
        if (row.size, row.mtime_ns) != (stat.size, stat.mtime_ns):
            return False
        if row.state == "synced":
            return source.document_name(row.rel_path) in stored
        return row.state in ("duplicate", "failed")

    def _stored_names(self, source: SourceRecord) -> set[str]:
        prefix = source.document_name("")
        with self.db.session() as session:
            names = session.scalars(
                select(Document.source).where(
                    Document.collection == source.collection,
                    Document.source.startswith(prefix, autoescape=True),
                    Document.status == "ready",
                )
            )
            return set(names)

    # ------------------------------------------------------------ applying it

    def _apply(self, source: SourceRecord, plan: _Plan) -> None:
        assert self.ingest is not None
        self._touch(source, plan.touch)
        self._claim_rows(source, plan.report.added)
        for batch in self._batches(plan):
            self._ingest_batch(source, batch, plan.report)
            self._renew(source)
        if source.delete_policy == "keep":
            self._set_rows(source.id, {rel_path: {"state": "missing"} for rel_path in plan.gone})
            return
        for rel_path in plan.gone:
            self._delete_document(source, rel_path)

    def _batches(self, plan: _Plan) -> Iterator[list[str]]:
        """The files to ingest, at most `batch_files` and `batch_mb` per batch (a larger file alone)."""
        limit = self.options.batch_mb * 1024 * 1024
        batch: list[str] = []
        size = 0
        for rel_path in plan.ingest:
            if batch and (len(batch) >= self.options.batch_files or size + plan.sizes[rel_path] > limit):
                yield batch
                batch, size = [], 0
            batch.append(rel_path)
            size += plan.sizes[rel_path]
        if batch:
            yield batch

    def _ingest_batch(self, source: SourceRecord, rel_paths: list[str], report: SyncReport) -> None:
        assert self.ingest is not None
        root = Path(source.path)
        items: list[tuple[str, bytes]] = []
        read: dict[str, tuple[_Seen, str]] = {}
        for rel_path in rel_paths:
            try:
                data, stat = _read(root / rel_path)
            except OSError as exc:
                report.fail(rel_path, f"cannot be read ({exc.strerror or exc})", None)
                continue
            items.append((source.document_name(rel_path), data))
            read[source.document_name(rel_path)] = (stat, content_hash(data))
        prefix = len(source.document_name(""))
        rows: dict[str, dict[str, Any]] = {}
        for result in self.ingest.ingest_files(items, source.collection):
            rel_path = result.source[prefix:]
            stat, digest = read[result.source]
            if (values := self._record(rel_path, result, stat, digest, report)) is not None:
                rows[rel_path] = values
        self._set_rows(source.id, rows)  # one transaction per batch

    def _record(
        self, rel_path: str, result: FileResult, stat: _Seen, digest: str, report: SyncReport
    ) -> dict[str, Any] | None:
        """The row's new values after an ingest: the new stat and hash when stored, why not when the file itself was
        refused; None (the row stays as it was: retried next time) for any other failure."""
        if result.status == "unchanged":  # already stored with these bytes (a killed sync got that far)
            for listed in (report.added, report.changed):
                if rel_path in listed:
                    listed.remove(rel_path)
                    report.unchanged.append(rel_path)
        seen = {"size": stat.size, "mtime_ns": stat.mtime_ns, "content_hash": digest}
        if result.ok:
            return {**seen, "state": "duplicate" if result.status == "duplicate" else "synced", "error": None}
        error = result.error or "failed"
        report.fail(rel_path, error, result.status_code)
        if result.status_code in OWN_FAULT:  # not re-parsed until the file changes; an old version stays stored
            return {**seen, "state": "failed", "error": error}
        return None

    def _delete_document(self, source: SourceRecord, rel_path: str) -> int:
        """Delete a file's document (if stored) and its row; returns the documents deleted (0 or 1)."""
        assert self.ingest is not None
        with self.db.session() as session:
            document_id = session.scalars(
                select(Document.id).where(
                    Document.collection == source.collection, Document.source == source.document_name(rel_path)
                )
            ).first()
        if document_id is not None:
            self.ingest.delete_document(document_id)
        with self.db.session() as session:
            session.execute(
                delete(SourceFile).where(SourceFile.source_id == source.id, SourceFile.rel_path == rel_path)
            )
        return int(document_id is not None)

    def _claim_rows(self, source: SourceRecord, rel_paths: list[str]) -> None:
        """A 'pending' row per new file before its first ingest: what a killed sync stored is then the source's own."""
        if not rel_paths:
            return
        with self.db.session() as session:
            known = set(session.scalars(select(SourceFile.rel_path).where(SourceFile.source_id == source.id)))
            new = [{"source_id": source.id, "rel_path": p, "state": "pending"} for p in rel_paths if p not in known]
            if new:
                session.execute(insert(SourceFile), new)

    def _touch(self, source: SourceRecord, touched: dict[str, _Seen]) -> None:
        self._set_rows(source.id, {p: {"size": s.size, "mtime_ns": s.mtime_ns} for p, s in touched.items()})

    def _set_rows(self, source_id: str, rows: dict[str, dict[str, Any]]) -> None:
        """Update file rows (rel path -> new values) in one transaction."""
        if not rows:
            return
        with self.db.session() as session:
            for rel_path, values in rows.items():
                session.execute(
                    update(SourceFile)
                    .where(SourceFile.source_id == source_id, SourceFile.rel_path == rel_path)
                    .values(**values)
                )

    # ------------------------------------------------------------ the lease (one sync at a time per source)

    def _claim(self, source: SourceRecord) -> None:
        """Compare-and-set: take the source's lease if it is free, expired, or held by a dead process on this host."""
        now = _now()
        with self.db.session() as session:
            row = session.get(Source, source.id)
            if row is None:
                raise NotFoundError(f"source {source.id} does not exist", param="source_id")
            holder, until = row.lease_owner, row.lease_until
            free = holder is None or _aware(until) <= now or not _owner_alive(holder)
            if not free:
                raise ConflictError(f"source {source.name} is being synced by {holder}; retry when it is done")
            taken = session.execute(
                update(Source)
                .where(Source.id == source.id, _same(Source.lease_owner, holder))
                .values(lease_owner=self.owner, lease_until=now + self._lease(), status="syncing")
            )
        if getattr(taken, "rowcount", 0) != 1:
            raise ConflictError(f"source {source.name} is being synced by another process; retry when it is done")

    @contextmanager
    def _heartbeat(self, source: SourceRecord) -> Iterator[None]:
        """Renew the lease every third of `sources.lease_s` while the sync runs, so a long batch (OCR, big files) never
        lets it expire under a running sync; a lost lease stops the sync at its next batch (`_renew` raises there)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.options.lease_s / 3):
                try:
                    self._renew(source)
                except ConflictError:
                    return
                except Exception:  # a busy database: the next beat retries
                    log.warning("lease renewal of source %s failed", source.name, exc_info=True)

        thread = threading.Thread(target=beat, name=f"source-lease-{source.name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)

    def _renew(self, source: SourceRecord) -> None:
        with self.db.session() as session:
            renewed = session.execute(
                update(Source)
                .where(Source.id == source.id, Source.lease_owner == self.owner)
                .values(lease_until=_now() + self._lease())
            )
        if getattr(renewed, "rowcount", 0) != 1:
            raise ConflictError(f"source {source.name}: this sync lost its claim (expired or the source was deleted)")

    def _release(self, source_id: str) -> None:
        with self.db.session() as session:
            session.execute(
                update(Source)
                .where(Source.id == source_id, Source.lease_owner == self.owner)
                .values(lease_owner=None, lease_until=None)
            )

    def _finish(self, source: SourceRecord, report: SyncReport, error: str | None) -> None:
        """Record the outcome and give the lease back (compare-and-set on the owner)."""
        status = "failed" if error else ("partial" if report.failed else "ok")
        last_error = error or (report.failed[0]["error"] if report.failed else None)
        with self.db.session() as session:
            session.execute(
                update(Source)
                .where(Source.id == source.id, Source.lease_owner == self.owner)
                .values(
                    status=status,
                    counts=report.counts(),
                    errors=report.failed[:MAX_ERRORS_KEPT],
                    last_error=last_error,
                    last_sync_at=_now(),
                    lease_owner=None,
                    lease_until=None,
                )
            )

    def _lease(self) -> timedelta:
        return timedelta(seconds=self.options.lease_s)


# ---------------------------------------------------------------- files


def _scan(root: Path) -> Iterator[tuple[str, _Seen]]:
    """(relative POSIX path, stat) of every regular file below `root`, in sorted order, skipping what the module
    contract lists. Unreadable sub-folders are skipped (logged), not fatal."""
    entries: list[tuple[str, _Seen]] = []
    for folder, dirs, files in os.walk(root, onerror=lambda exc: log.warning("skipped %s", exc)):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(folder, d))]
        for name in files:
            if _ignored(name):
                continue
            path = Path(folder) / name
            try:
                stat = path.lstat()
            except OSError:
                continue  # deleted while scanning
            if path.is_symlink() or not path.is_file():
                continue
            rel_path = path.relative_to(root).as_posix()
            entries.append((rel_path, _Seen(stat.st_size, stat.st_mtime_ns)))
    yield from sorted(entries)


def _ignored(name: str) -> bool:
    return name.startswith((".", "~$")) or name.endswith(IGNORED_SUFFIXES)


def _read(path: Path) -> tuple[bytes, _Seen]:
    """The bytes and the stat of the open file (what is recorded is what was read, even if it changes meanwhile)."""
    with path.open("rb") as handle:
        stat = os.fstat(handle.fileno())
        return handle.read(), _Seen(stat.st_size, stat.st_mtime_ns)


def _hash_file(path: Path) -> str | None:
    try:
        return content_hash(path.read_bytes())
    except OSError:
        return None


def _foreign(source: SourceRecord, rel_path: str) -> str:
    return (
        f"{source.collection!r} already holds a document named {source.document_name(rel_path)!r} that this source "
        "did not sync (uploaded by hand?); it is left alone: rename the file or delete that document"
    )


def _default_name(root: Path) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in root.name).strip("-.") or "source"
    return cleaned[:100]


def _owner_alive(owner: str) -> bool:
    """False only for a lease holder known dead: a process of this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same(column: Any, value: str | None) -> Any:
    return column.is_(None) if value is None else column == value


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime:
    """A stored timestamp as UTC (SQLite drops the zone); None reads as long ago."""
    if value is None:
        return datetime.min.replace(tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
