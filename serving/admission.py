"""Admission control for generation: a bound on concurrent generations and on requests queued for a slot.

Contract: `Admission.acquire()` returns a `Lease` at once when fewer than `max_running` generations run, waits in a
FIFO queue when the queue holds fewer than `max_queued` requests, and otherwise raises `RateLimitedError` (429 with
`Retry-After`) without waiting: latency stays bounded instead of growing with the load. The time spent queued is
observed in the `assistant_queue_seconds` histogram. A lease is released exactly once (`release()` is idempotent);
`Lease.guard(stream)` releases it when a streamed response ends, fails or is abandoned by its client.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

from assistant.errors import RateLimitedError
from serving.prometheus_metrics import Metrics


class Lease:
    """One admitted generation; give it back with `release()` (or let `guard` do it for a stream)."""

    def __init__(self, admission: Admission, queued_s: float) -> None:
        self._admission = admission
        self.queued_s = queued_s
        self._started = time.perf_counter()
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._admission._finished(time.perf_counter() - self._started)

    async def guard(self, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        try:
            async for item in stream:
                yield item
        finally:
            self.release()


class Admission:
    """Bounded concurrency and a bounded FIFO queue in front of the engine."""

    def __init__(self, max_running: int, max_queued: int, metrics: Metrics | None = None) -> None:
        self.max_running = max_running
        self.max_queued = max_queued
        self.metrics = metrics
        self.running = 0
        self._queue: list[asyncio.Future[None]] = []
        self._recent_s: list[float] = []  # durations of recent generations, for Retry-After

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def acquire(self) -> Lease:
        started = time.perf_counter()
        if self.running < self.max_running and not self._queue:
            self.running += 1
            return self._lease(started)
        if len(self._queue) >= self.max_queued:
            if self.metrics is not None:
                self.metrics.rejected.inc()
            raise RateLimitedError(
                f"the server is at capacity ({self.running} answers running, {len(self._queue)} queued; "
                "server.max_concurrent_generations / server.max_queued_requests): retry after the Retry-After delay",
                retry_after=self.retry_after(),
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(waiter)
        try:
            await waiter  # _release hands its slot over (running stays counted)
        except asyncio.CancelledError:
            if waiter in self._queue:
                self._queue.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over just as the client went away: pass it on
            raise
        return self._lease(started)

    def _lease(self, started: float) -> Lease:
        queued = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.queue_time.observe(queued)
        return Lease(self, queued)

    def _finished(self, duration_s: float) -> None:
        self._recent_s = [*self._recent_s[-31:], duration_s]
        self._release()

    def _release(self) -> None:
        while self._queue:
            waiter = self._queue.pop(0)
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the oldest waiter
                return
        self.running -= 1

    def retry_after(self) -> int:
        """Seconds until a queue's worth of work has likely drained: queue length x mean duration / slots."""
        mean = sum(self._recent_s) / len(self._recent_s) if self._recent_s else 1.0
        return max(1, math.ceil(mean * (len(self._queue) + 1) / max(1, self.max_running)))
