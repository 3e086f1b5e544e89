"""Keeping one server replica in step with the others that share its database (the scale-out path).

Contract: `run_replica_sync(state)` is a lifespan task. Once the app is ready it reconciles the replica's vector
index with the stored chunk vectors, then every `server.replica_sync_s` seconds (0 = off) it
- applies the index change log (chunk additions and deletions made through any replica, a CLI ingest or a worker)
  to the in-memory index (`assistant.index.replication.IndexFollower`: vectors come from the database, nothing is
  re-embedded), and
- loads every adapter version the registry marks active that this engine has not loaded yet (by its path, which must
  be reachable: `adapters_path` on a shared file system), so an activation made through another replica is served
  here within about one interval plus the load time. A version that fails to load is retried at the next interval.
What it has applied is on `state.extras["replica"]` (`ReplicaSync.status()`, shown by `/health`). A failing pass is
logged and retried; it never stops the server.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from assistant.embedding import embedder_space
from assistant.index.replication import IndexFollower, space_key
from serving.catalog import engine_identity
from serving.state import AppState

log = logging.getLogger(__name__)


class ReplicaSync:
    """One replica's follower of the shared index log and adapter registry."""

    def __init__(self, state: AppState) -> None:
        assert state.retrieval is not None
        index = state.retrieval.retriever.index
        space = space_key(embedder_space(state.settings, index.dim))
        self.state = state
        self.follower = IndexFollower(state.db, index, state.index_lock, space)
        self.adapters: set[str] = set()

    def status(self) -> dict[str, Any]:
        return {**self.follower.status.to_dict(), "adapters": sorted(self.adapters)}

    async def start(self) -> None:
        await asyncio.to_thread(self.follower.reconcile)

    async def sync_once(self) -> None:
        await asyncio.to_thread(self.follower.catch_up)
        await self.load_active_adapters()

    async def load_active_adapters(self) -> None:
        engine = self.state.engine
        if engine is None:
            return
        rows = await asyncio.to_thread(self.state.catalog.adapters)
        for row in rows:
            identity = engine_identity(row)
            if row.status != "active" or row.kind != "lm" or identity in self.adapters:
                continue
            ref = self.state.catalog.resolve(identity)
            if ref is None:
                continue
            try:
                await engine.add_adapter(ref)
            except Exception as exc:  # a path not reachable from this machine: retried next time, logged each time
                log.warning("active adapter %s could not be loaded from %s: %s", identity, row.path, exc)
                continue
            self.adapters.add(identity)
            log.info("loaded active adapter %s", identity)


async def run_replica_sync(state: AppState, poll_s: float = 0.2) -> None:
    """The lifespan task (module contract)."""
    interval = state.settings.server.replica_sync_s
    if interval <= 0:
        return
    while not state.ready:
        if state.load_error:
            return
        await asyncio.sleep(poll_s)
    sync = ReplicaSync(state)
    state.extras["replica"] = sync
    started = False
    while True:
        try:
            if not started:
                await sync.start()
                started = True
            await sync.sync_once()
        except Exception:  # a database hiccup must not stop the replica: the next pass retries
            log.exception("replica sync pass failed")
        await asyncio.sleep(interval)
