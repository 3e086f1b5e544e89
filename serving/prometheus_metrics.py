"""Prometheus metrics of one app: requests and latency per route, time to first token, tokens/s, retrieval latency,
engine queue.

Contract: each app owns a `Metrics` with its own registry (several apps in one process do not collide); the
middleware labels requests by route template (`/v1/documents/{document_id}`, not the raw path), so label cardinality
stays bounded; `/metrics` renders the registry in the Prometheus text format, reading the engine's running/waiting
counts at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Match

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "assistant_http_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "assistant_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "assistant_time_to_first_token_seconds",
            "Time to first token",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("assistant_generated_tokens", "Completion tokens generated", ["model"], registry=r)
        self.tokens_per_s = Histogram(
            "assistant_decode_tokens_per_second",
            "Per-request decode speed",
            ["model"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.retrieval = Histogram(
            "assistant_retrieval_seconds", "Retrieval latency", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_time = Histogram(
            "assistant_queue_seconds",
            "Time a chat request waited for a generation slot (server.max_concurrent_generations)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "assistant_rejected_requests", "Requests refused with 429 because the queue was full", registry=r
        )
        self.running = Gauge("assistant_engine_running_requests", "Requests the engine is running", registry=r)
        self.waiting = Gauge("assistant_engine_waiting_requests", "Requests queued in the engine", registry=r)

    def observe_generation(self, model: str, ttft: float, completion_tokens: int, duration: float) -> None:
        self.ttft.labels(model).observe(ttft)
        self.tokens.labels(model).inc(completion_tokens)
        if completion_tokens > 1 and duration > ttft:
            self.tokens_per_s.labels(model).observe((completion_tokens - 1) / (duration - ttft))

    def render(self, running: int, waiting: int) -> Response:
        self.running.set(running)
        self.waiting.set(waiting)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _route_template(app: FastAPI, request: Request) -> str:
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match == Match.FULL:
            return str(getattr(route, "path", request.url.path))
    return "unmatched"


def install_metrics(app: FastAPI, metrics: Metrics) -> None:
    @app.middleware("http")
    async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = _route_template(app, request)
            metrics.requests.labels(request.method, route, str(status)).inc()
            metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)
