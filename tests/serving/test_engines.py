"""The engines on the tiny model: per-request LoRA through real vLLM, and the transformers fallback's parity."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from assistant.engine import AdapterRef, GenerationEngine, SamplingOptions
from assistant.settings import EngineSettings
from tests.fixtures.live_server import LiveServer

GREEDY = SamplingOptions(max_tokens=24, temperature=0.0)
QUESTIONS = ["What is the capital of France?", "How do I reset the router?"]


async def _generate(engine: GenerationEngine, question: str, adapter: AdapterRef | None, rid: str) -> str:
    prompt = engine.render_chat([{"role": "user", "content": question}])
    return "".join([chunk.text async for chunk in engine.generate(rid, prompt, GREEDY, adapter)])


def _adapter(path: Path) -> AdapterRef:
    return AdapterRef(name="test-adapter@v1", int_id=99, path=str(path))


@pytest.fixture(scope="module")
def vllm_outputs(live_server: LiveServer, tiny_adapter_dir: Path) -> dict[str, list[str]]:
    engine = live_server.state.engine
    adapter = _adapter(tiny_adapter_dir)

    async def collect(use_adapter: bool, tag: str) -> list[str]:
        return [
            await _generate(engine, q, adapter if use_adapter else None, f"{tag}-{i}") for i, q in enumerate(QUESTIONS)
        ]

    return {
        "base": live_server.run(collect(False, "base")),
        "adapter": live_server.run(collect(True, "lora")),
        "base_again": live_server.run(collect(False, "base2")),
    }


def test_vllm_engine_is_used(live_server: LiveServer) -> None:
    from serving.engines.vllm_engine import VLLMEngine

    assert isinstance(live_server.state.engine, VLLMEngine)


def test_model_threads_run_on_every_core(live_server: LiveServer) -> None:
    """engine.cpu_threads_bind 'all' (the default): vLLM's engine process may use every core the server may use
    (vLLM's 'auto' binds it to all but one; on 2 cores, one)."""
    psutil = pytest.importorskip("psutil")
    from serving.engines.vllm_engine import cpu_threads_bind

    engines = [p for p in psutil.Process().children(recursive=True) if "EngineCore" in p.name()]
    assert engines, "no vLLM engine process found"
    allowed = sorted(os.sched_getaffinity(0))
    assert all(sorted(p.cpu_affinity()) == allowed for p in engines)
    assert cpu_threads_bind("all") == ",".join(map(str, allowed))
    assert cpu_threads_bind("0-1") == "0-1" and cpu_threads_bind("auto") == "auto"
    if len(allowed) >= 2:  # one core list per tensor-parallel worker
        halves = cpu_threads_bind("all", workers=2).split("|")
        assert (
            len(halves) == 2
            and sorted(int(c) for h in halves for c in h.split(",")) == allowed[: len(allowed) // 2 * 2]
        )


def test_lora_adapter_per_request_changes_output(vllm_outputs: dict[str, list[str]]) -> None:
    assert all(vllm_outputs["base"]), "the base model produced empty output"
    assert vllm_outputs["adapter"] != vllm_outputs["base"]


def test_base_output_unchanged_without_adapter(vllm_outputs: dict[str, list[str]]) -> None:
    assert vllm_outputs["base_again"] == vllm_outputs["base"]


def test_transformers_fallback_matches_vllm_greedy(
    vllm_outputs: dict[str, list[str]], tiny_model_dir: Path, tiny_adapter_dir: Path
) -> None:
    from serving.engines.hf_engine import TransformersEngine

    async def run() -> dict[str, list[str]]:
        engine = TransformersEngine(tiny_model_dir, EngineSettings(max_model_len=512, dtype="float32"), "tiny")
        await engine.start()
        adapter = _adapter(tiny_adapter_dir)
        base = [await _generate(engine, q, None, f"hf-{i}") for i, q in enumerate(QUESTIONS)]
        tuned = [await _generate(engine, q, adapter, f"hf-lora-{i}") for i, q in enumerate(QUESTIONS)]
        return {"base": base, "adapter": tuned}

    hf = asyncio.run(run())
    assert hf["base"] == vllm_outputs["base"]
    assert hf["adapter"] == vllm_outputs["adapter"]


def test_base_and_adapter_batched_together_answer_as_alone(
    live_server: LiveServer, tiny_adapter_dir: Path, vllm_outputs: dict[str, list[str]]
) -> None:
    """Base and adapter requests in one engine step (the LoRA ops' mixed-slot path) answer what each answers alone."""
    engine = live_server.state.engine
    adapter = _adapter(tiny_adapter_dir)

    async def together() -> list[str]:
        jobs = [_generate(engine, q, None, f"mix-base-{i}") for i, q in enumerate(QUESTIONS)]
        jobs += [_generate(engine, q, adapter, f"mix-lora-{i}") for i, q in enumerate(QUESTIONS)]
        return list(await asyncio.gather(*jobs))

    answers = live_server.run(together())
    assert answers == vllm_outputs["base"] + vllm_outputs["adapter"]


def test_abandoned_stream_frees_engine_slot(live_server: LiveServer) -> None:
    engine = live_server.state.engine

    async def start_and_leave() -> tuple[int, int]:
        prompt = engine.render_chat([{"role": "user", "content": "Tell me everything."}])
        stream = engine.generate("abandon-1", prompt, SamplingOptions(max_tokens=400, temperature=0.0))
        await stream.__anext__()
        during = engine.stats().running
        await stream.aclose()  # what a client disconnect does to the response generator
        for _ in range(100):
            if engine.stats().running == 0:
                break
            await asyncio.sleep(0.05)
        return during, engine.stats().running

    during, after = live_server.run(start_and_leave())
    assert during == 1
    assert after == 0


def test_stop_string_ends_generation(live_server: LiveServer) -> None:
    engine = live_server.state.engine

    async def run() -> tuple[str, str, str]:
        full = await _generate(engine, QUESTIONS[0], None, "stop-full")
        stop = full.strip()[2:4]
        prompt = engine.render_chat([{"role": "user", "content": QUESTIONS[0]}])
        options = SamplingOptions(max_tokens=24, temperature=0.0, stop=(stop,))
        cut = "".join([c.text async for c in engine.generate("stop-cut", prompt, options)])
        return full, cut, stop

    full, cut, stop = live_server.run(run())
    assert stop not in cut
    assert full.startswith(cut) and len(cut) < len(full)
