"""Directory sources for the API, and the small scheduler that keeps them in sync while the server runs.

Contract: `SourcesService(settings, db, ingest)` wraps `ingest.directory_sources` (the sync logic lives there): `create`
(with the dry-run diff of the first sync as `preview`), `records`, `get`, `sync(id, dry_run)` (waits for the sync's
report), `start_sync(id)` (claims the source, 409 when a sync of it runs anywhere, and returns it as `syncing` while
the sync runs on in the background; its outcome lands on the source: status, counts, errors, last error),
`remove(id, delete_documents)`; syncs run in a worker thread through the server's own ingest service (`ingest()`
returns it, or None while the document store is still opening: 503), so a sync shares the upload path's write lock
and crash-safe replace. `run()` is the lifespan task: every `sources.scheduler_tick_s` it syncs each source that is
due, one at a time: its `interval_s` has passed since its last sync, or its folder changed (watchdog events,
`sources.watch`, the last one at least `sources.debounce_s` ago). A source is synced automatically only after its
first sync, which is run on demand (after its dry-run diff has been seen). A sync already running elsewhere (409) is
skipped, not an error; a failing one is recorded on the source and logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from assistant.errors import AssistantError, ConflictError, ServiceUnavailableError
from assistant.settings import Settings
from assistant.storage import Database
from ingest.directory_sources import SourceRecord, SourceRegistry, SourceSyncer, SyncReport
from ingest.ingest_service import IngestService

log = logging.getLogger(__name__)


class SourcesService:
    """Sources over the server's database and ingest service (see the module contract)."""

    def __init__(self, settings: Settings, db: Database, ingest: Callable[[], IngestService | None]) -> None:
        self.options = settings.sources
        self.registry = SourceRegistry(settings, db)
        self._ingest = ingest
        self._syncer: SourceSyncer | None = None
        self.watcher = FolderWatcher(self.options.debounce_s) if self.options.watch else None
        self._background: set[asyncio.Task[None]] = set()  # started syncs (a reference keeps each task alive)

    # ------------------------------------------------------------ the API

    async def create(
        self, path: str, collection: str, name: str | None, delete_policy: str, interval_s: float | None
    ) -> tuple[SourceRecord, SyncReport]:
        """Register a directory and return it with the dry-run diff of its first sync (nothing is ingested)."""
        record = await asyncio.to_thread(
            self.registry.create, path, collection, name=name, delete_policy=delete_policy, interval_s=interval_s
        )
        preview = await asyncio.to_thread(SourceSyncer(self.registry, None).plan, record.id)
        return record, preview

    def records(self) -> list[SourceRecord]:
        return self.registry.records()

    def get(self, id_or_name: str) -> SourceRecord:
        return self.registry.get(id_or_name)

    async def sync(self, id_or_name: str, dry_run: bool = False) -> SyncReport:
        if dry_run:
            return await asyncio.to_thread(SourceSyncer(self.registry, None).plan, id_or_name)
        return await asyncio.to_thread(self.syncer().sync, id_or_name)

    async def start_sync(self, id_or_name: str) -> SourceRecord:
        """Claim the source (409 while a sync of it runs, here or on another replica) and run its sync in the
        background; returns the source as claimed (`syncing`)."""
        syncer = self.syncer()
        claimed = await asyncio.to_thread(syncer.claim, id_or_name)
        task = asyncio.create_task(self._run_claimed(syncer, claimed), name=f"source-sync-{claimed.name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return claimed

    async def _run_claimed(self, syncer: SourceSyncer, source: SourceRecord) -> None:
        try:
            await asyncio.to_thread(syncer.run_claimed, source)
        except AssistantError as exc:  # recorded on the source by the syncer (status failed, last_error)
            log.warning("sync of source %s failed: %s", source.name, exc.message)
        except Exception:
            log.exception("sync of source %s failed", source.name)

    async def remove(self, id_or_name: str, delete_documents: bool) -> tuple[SourceRecord, int]:
        syncer = self.syncer() if delete_documents else SourceSyncer(self.registry, None)
        record, deleted = await asyncio.to_thread(syncer.remove, id_or_name, delete_documents)
        if self.watcher is not None:
            self.watcher.forget(record.id)
        return record, deleted

    def syncer(self) -> SourceSyncer:
        """The syncer over the server's ingest service (one owner id per server process)."""
        if self._syncer is None:
            ingest = self._ingest()
            if ingest is None:
                raise ServiceUnavailableError("the document store is not ready yet; retry shortly")
            self._syncer = SourceSyncer(self.registry, ingest)
        return self._syncer

    # ------------------------------------------------------------ the scheduler

    async def run(self) -> None:
        """The lifespan task: sync due sources every `scheduler_tick_s` seconds until cancelled."""
        if self.options.scheduler_tick_s <= 0:
            return
        try:
            while True:
                await asyncio.sleep(self.options.scheduler_tick_s)
                try:
                    await self.tick()
                except Exception:  # a busy database or a broken watch must not stop the scheduler
                    log.exception("source scheduler pass failed")
        finally:
            if self.watcher is not None:
                self.watcher.stop()

    async def tick(self) -> list[str]:
        """One pass: follow the synced sources' folders, sync the due ones; returns the ids synced."""
        if self._ingest() is None:
            return []
        sources = [s for s in await asyncio.to_thread(self.registry.records) if s.last_sync_at is not None]
        if self.watcher is not None:
            self.watcher.follow(sources)
        synced: list[str] = []
        for source in sources:
            event = self.watcher.settled(source.id) if self.watcher is not None else None
            if event is None and not _interval_due(source):
                continue
            try:
                await asyncio.to_thread(self.syncer().sync, source.id)
                synced.append(source.id)
            except ConflictError:
                log.info("source %s: a sync is already running; skipped this time", source.name)
            except AssistantError as exc:  # recorded on the source by the syncer
                log.warning("scheduled sync of source %s failed: %s", source.name, exc.message)
            if event is not None and self.watcher is not None:
                self.watcher.clear(source.id, event)
        return synced


def _interval_due(source: SourceRecord) -> bool:
    if source.interval_s is None or source.last_sync_at is None:
        return False
    return datetime.now(UTC) >= source.last_sync_at + timedelta(seconds=source.interval_s)


class FolderWatcher:
    """File-system events per source folder (watchdog), kept as the time of the last event per source.

    `follow(sources)` starts and stops watches to match the sources; `settled(id)` is the last event's time once no
    event came for `debounce_s` seconds (None otherwise); `clear(id, seen)` forgets events up to `seen` (one that came
    during the sync stays, so it is synced again). Without watchdog, or where a folder cannot be watched (inotify
    limits), it logs once and the schedule still applies.
    """

    CHANGES = frozenset({"created", "modified", "deleted", "moved"})  # not opened/closed: the sync's own reads

    def __init__(self, debounce_s: float) -> None:
        self.debounce_s = debounce_s
        self.events: dict[str, float] = {}
        self._observer: Any = None
        self._watches: dict[str, tuple[str, Any]] = {}  # source id -> (path, watch handle)
        self._lock = threading.Lock()
        self._unavailable = False

    def follow(self, sources: list[SourceRecord]) -> None:
        observer = self._start()
        if observer is None:
            return
        wanted = {s.id: s.path for s in sources}
        for source_id in [sid for sid, (path, _w) in self._watches.items() if wanted.get(sid) != path]:
            self.forget(source_id)
        for source_id, path in wanted.items():
            if source_id not in self._watches:
                self._watch(observer, source_id, path)

    def _watch(self, observer: Any, source_id: str, path: str) -> None:
        try:
            watch = observer.schedule(_Handler(self, source_id), path, recursive=True)
        except OSError as exc:
            log.warning("cannot watch %s (%s); it is synced on its schedule and on demand only", path, exc)
            self._watches[source_id] = (path, None)
            return
        self._watches[source_id] = (path, watch)
        self.record(source_id, "created")  # catch up: what changed before the watch began is synced once

    def record(self, source_id: str, event_type: str) -> None:
        if event_type in self.CHANGES:
            with self._lock:
                self.events[source_id] = time.monotonic()

    def settled(self, source_id: str) -> float | None:
        with self._lock:
            last = self.events.get(source_id)
        return last if last is not None and time.monotonic() - last >= self.debounce_s else None

    def clear(self, source_id: str, seen: float) -> None:
        with self._lock:
            if self.events.get(source_id) == seen:
                del self.events[source_id]

    def forget(self, source_id: str) -> None:
        _path, watch = self._watches.pop(source_id, ("", None))
        if watch is not None and self._observer is not None:
            self._observer.unschedule(watch)
        with self._lock:
            self.events.pop(source_id, None)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        self._watches.clear()

    def _start(self) -> Any:
        if self._observer is None and not self._unavailable:
            try:
                from watchdog.observers import Observer
            except ImportError:
                log.warning("watchdog is not installed (pip install watchdog): sources sync on schedule and on demand")
                self._unavailable = True
                return None
            self._observer = Observer()
            self._observer.daemon = True
            self._observer.start()
        return self._observer


class _Handler:
    """A watchdog event handler that only notes which source changed (the sync itself runs in the scheduler)."""

    def __init__(self, watcher: FolderWatcher, source_id: str) -> None:
        self.watcher = watcher
        self.source_id = source_id

    def dispatch(self, event: Any) -> None:
        self.watcher.record(self.source_id, str(event.event_type))
