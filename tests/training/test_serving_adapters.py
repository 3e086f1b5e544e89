"""Every adapter the training module produces (SFT, DPO, PSFT) loads into the vLLM engine and changes its output."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.settings import EngineSettings, Settings
from tests.training.conftest import FAST_OPTIONS, preference_records, sft_records, write_json
from training.runs import TrainingRequest, run_training

PROMPT_MESSAGES = [{"role": "user", "content": "How long is the warranty?"}]


@pytest.fixture(scope="module")
def trained_adapters(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One registered adapter per method, trained hard enough (few steps, high LR) to move the greedy output."""
    root = tmp_path_factory.mktemp("served")
    settings = Settings(data_dir=root / "data", models={"lm": str(tiny_model_dir)})  # type: ignore[arg-type]
    sft = write_json(root / "sft.json", sft_records())
    pairs = write_json(root / "pairs.json", preference_records())
    options = {**FAST_OPTIONS, "max_steps": 3, "learning_rate": 5e-3}
    out = {}
    for method, data in (("sft", sft), ("dpo", pairs), ("psft", sft)):
        outcome = run_training(settings, TrainingRequest(method, [data], name=f"{method}-kb", options=options))
        assert outcome.adapter is not None
        out[method] = outcome.adapter.path
    return out


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Iterator[tuple[Any, asyncio.AbstractEventLoop]]:
    from serving.engines.vllm_engine import VLLMEngine

    loop = asyncio.new_event_loop()
    settings = EngineSettings(max_model_len=512, max_num_seqs=4, dtype="float32")  # type: ignore[call-arg]
    vllm = VLLMEngine(tiny_model_dir, settings, "tiny")
    loop.run_until_complete(vllm.start())
    yield vllm, loop
    loop.run_until_complete(vllm.shutdown())
    loop.close()


async def complete(vllm: Any, request_id: str, adapter: Any = None) -> str:
    from assistant.engine import SamplingOptions
    from assistant.prompts import build_rag_messages

    prompt = vllm.render_chat(build_rag_messages(PROMPT_MESSAGES, None))
    text = ""
    async for chunk in vllm.generate(request_id, prompt, SamplingOptions(max_tokens=12, temperature=0.0), adapter):
        text += chunk.text
    return text


def test_trained_adapters_load_and_serve_in_vllm(
    engine: tuple[Any, asyncio.AbstractEventLoop], trained_adapters: dict[str, Path]
) -> None:
    from assistant.engine import AdapterRef

    vllm, loop = engine
    base = loop.run_until_complete(complete(vllm, "base"))
    outputs = {}
    for int_id, (method, path) in enumerate(sorted(trained_adapters.items()), start=1):
        ref = AdapterRef(f"{method}-kb", int_id, str(path))
        loop.run_until_complete(vllm.add_adapter(ref))
        outputs[method] = loop.run_until_complete(complete(vllm, f"req-{method}", ref))
    assert all(isinstance(text, str) for text in outputs.values())
    assert any(text != base for text in outputs.values()), (base, outputs)
