"""Admission control: bounded running and queued generations, FIFO hand-over, 429 beyond, leases released once."""

from __future__ import annotations

import asyncio

import pytest

from assistant.errors import RateLimitedError
from serving.admission import Admission
from serving.metrics import Metrics


def test_bounds_fifo_and_rejection() -> None:
    async def scenario() -> None:
        metrics = Metrics()
        admission = Admission(max_running=2, max_queued=2, metrics=metrics)
        first, second = await admission.acquire(), await admission.acquire()
        order: list[int] = []

        async def waiter(tag: int) -> None:
            lease = await admission.acquire()
            order.append(tag)
            await asyncio.sleep(0)
            lease.release()

        tasks = [asyncio.create_task(waiter(i)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        assert (admission.running, admission.queued) == (2, 2)
        with pytest.raises(RateLimitedError) as refused:
            await admission.acquire()
        assert refused.value.status_code == 429 and refused.value.retry_after >= 1
        first.release()
        first.release()  # idempotent: releasing twice frees one slot only
        second.release()
        await asyncio.gather(*tasks)
        assert order == [1, 2] and (admission.running, admission.queued) == (0, 0)
        text = metrics.registry.get_sample_value("assistant_rejected_requests_total")
        assert text == 1.0
        assert metrics.registry.get_sample_value("assistant_queue_seconds_count") == 4.0

    asyncio.run(scenario())


def test_cancelled_waiter_leaves_the_queue_and_stream_guard_releases() -> None:
    async def scenario() -> None:
        admission = Admission(max_running=1, max_queued=1)
        lease = await admission.acquire()
        blocked = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0.01)
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        assert admission.queued == 0

        async def stream() -> object:
            yield "a"
            raise RuntimeError("engine failed")

        with pytest.raises(RuntimeError):
            async for _ in lease.guard(stream()):  # type: ignore[arg-type]
                pass
        assert admission.running == 0
        again = await asyncio.wait_for(admission.acquire(), 1)
        again.release()

    asyncio.run(scenario())
