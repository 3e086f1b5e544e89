"""Liveness and readiness: `/health/live` answers while the process runs; `/health` is 200 while the engine serves.

Contract: `/health` is public and says only `status` (`ready`, `loading`, `failed`; 503 unless ready, including when
the engine has died and is being restarted) and `ready`. The details (model, uptime, the load error, the worker's pid
and restarts, replica positions, engine queue and restarts) go only to a caller presenting an admin key (or to
everyone when no keys are configured: the loopback-only open mode): they name files, processes and adapters.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from assistant.errors import AuthenticationError
from serving.access import Access, allow
from serving.deps import StateDep, require_api_key
from serving.replica_sync import ReplicaSync
from serving.services.job_service import WorkerSupervisor
from serving.state import AppState

router = APIRouter(tags=["health"], dependencies=[allow(Access.PUBLIC)])


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health")
async def health(request: Request, state: StateDep) -> JSONResponse:
    dead = state.engine_dead_reason()
    ready = state.ready and dead is None
    status = "ready" if ready else ("failed" if state.load_error or dead else "loading")
    body: dict[str, Any] = {"status": status, "ready": ready}
    if _is_admin(request, state):
        body.update(_details(state, dead))
    return JSONResponse(body, status_code=200 if ready else 503)


def _is_admin(request: Request, state: AppState) -> bool:
    try:
        return require_api_key(request, state).is_admin
    except AuthenticationError:
        return False


def _details(state: AppState, dead: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {
        "model": state.catalog.base_name,
        "uptime_s": round(time.time() - state.started_at, 1),
        "engine_restarts": state.extras.get("engine_restarts", 0),
    }
    if error := dead or state.load_error:
        details["error"] = error
    worker = state.extras.get("worker")
    if isinstance(worker, WorkerSupervisor):
        details["worker"] = worker.status()  # running, pid, restarts, last_exit_code
    replica = state.extras.get("replica")
    if isinstance(replica, ReplicaSync):
        details["replica"] = replica.status()  # index log position, vectors, adapters loaded by the sync
    if state.ready and state.engine is not None and dead is None:
        stats = state.engine.stats()
        details["engine"] = {"running": stats.running, "waiting": stats.waiting}
    return details
