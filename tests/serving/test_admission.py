"""Admission control: bounded running and queued generations, FIFO hand-over, 429 beyond, leases released once."""

from __future__ import annotations

import asyncio

import pytest

from assistant.errors import RateLimitedError
from serving.admission import Admission
from serving.prometheus_metrics import Metrics
from tests.fixtures.live_server import LiveServer


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


def test_server_answers_429_beyond_the_queue_and_frees_slots(live_server: LiveServer) -> None:
    """Through the real app and vLLM engine: one slot, no queue. While the slot is taken, a request is a 429 in
    OpenAI's shape with Retry-After; once it is free, answers flow again, and a streamed answer gives its slot back
    whether it ends or its client leaves mid-stream."""
    import time

    import httpx

    state = live_server.state
    saved = state.admission
    state.admission = Admission(max_running=1, max_queued=0, metrics=state.metrics)
    body = {"model": "tiny", "messages": [{"role": "user", "content": "count"}], "use_retrieval": False}
    try:
        with httpx.Client(base_url=live_server.base_url, timeout=120) as client:
            held = live_server.run(state.admission.acquire())  # a generation in flight takes the one slot
            refused = client.post("/v1/chat/completions", json={**body, "max_tokens": 4})
            assert refused.status_code == 429
            assert int(refused.headers["Retry-After"]) >= 1
            error = refused.json()["error"]
            assert error["code"] == "rate_limit_exceeded" and "max_queued_requests" in error["message"]
            live_server.run(_release(held))
            again = client.post("/v1/chat/completions", json={**body, "max_tokens": 4})
            assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"]
            for _ in range(3):  # streams that end or are abandoned never keep their slot
                with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as streaming:
                    assert streaming.status_code == 200
                    next(streaming.iter_lines())
                deadline = time.monotonic() + 30
                while state.admission.running and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert state.admission.running == 0
            scraped = client.get("/metrics").text
            assert "assistant_rejected_requests_total 1.0" in scraped and "assistant_queue_seconds_count" in scraped
    finally:
        state.admission = saved


async def _release(lease: object) -> None:
    lease.release()  # type: ignore[attr-defined]
