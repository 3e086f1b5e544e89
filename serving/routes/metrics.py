"""`GET /metrics`: Prometheus text (requests, latency, time to first token, tokens/s, retrieval, engine queue)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from serving.access import Access, allow
from serving.deps import StateDep

router = APIRouter(tags=["metrics"], dependencies=[allow(Access.ADMIN)])


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    stats = state.engine.stats() if state.engine is not None else None
    return state.metrics.render(stats.running if stats else 0, stats.waiting if stats else 0)
