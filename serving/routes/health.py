"""Liveness and readiness: `/health/live` answers while the process runs; `/health` is 200 once the engine is loaded."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.access import Access, allow
from serving.replica_sync import ReplicaSync
from serving.services.jobs import WorkerSupervisor
from serving.state import StateDep

router = APIRouter(tags=["health"], dependencies=[allow(Access.PUBLIC)])


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health")
async def health(state: StateDep) -> JSONResponse:
    body: dict[str, object] = {
        "status": "ready" if state.ready else ("failed" if state.load_error else "loading"),
        "model": state.catalog.base_name,
        "uptime_s": round(time.time() - state.started_at, 1),
    }
    if state.load_error:
        body["error"] = state.load_error
    worker = state.extras.get("worker")
    if isinstance(worker, WorkerSupervisor):
        body["worker"] = worker.status()  # running, pid, restarts, last_exit_code
    replica = state.extras.get("replica")
    if isinstance(replica, ReplicaSync):
        body["replica"] = replica.status()  # index log position, vectors, adapters loaded by the sync
    if state.ready and state.engine is not None:
        stats = state.engine.stats()
        body["engine"] = {"running": stats.running, "waiting": stats.waiting}
    return JSONResponse(body, status_code=200 if state.ready else 503)
