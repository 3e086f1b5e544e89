"""GPU code paths (run with --run-gpu on a CUDA machine; CI has no GPU, so these are skipped there).

They check what only a GPU exercises: the default dtype resolves to bfloat16, the embedder runs on CUDA, the FAISS
flat index searches through its GPU copy with the same results as on CPU, and vLLM serves the tiny model with a LoRA
adapter on the GPU.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def test_dtype_auto_is_bfloat16_on_gpu() -> None:
    from assistant.startup import resolve_dtype

    assert resolve_dtype("auto", on_gpu=True) == "bfloat16"


def test_embedder_runs_on_cuda() -> None:
    from assistant.embedding import make_embedder
    from assistant.settings import Settings
    from assistant.startup import default_device

    assert default_device() == "cuda"
    vectors = make_embedder(Settings()).embed(["hello", "world"])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)


def test_faiss_search_goes_through_the_gpu_copy(tmp_path: Path) -> None:
    import faiss

    from assistant.index import open_index

    if faiss.get_num_gpus() == 0:
        pytest.skip("this FAISS build sees no GPU (install the gpu extra: faiss-gpu-cu12)")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((1000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = open_index(tmp_path, 32, approximate_after=10**6)
    index.add(vectors, np.arange(1, 1001, dtype=np.int64))
    hits = index.search(vectors[7], 5)
    assert hits[0].id == 8 and index._gpu_ready()  # the search above went through the GPU copy


def test_vllm_serves_lora_on_gpu(tiny_model_dir: Path, tiny_adapter_dir: Path) -> None:
    from assistant.engine import AdapterRef, SamplingOptions
    from assistant.settings import EngineSettings
    from serving.engines.vllm_engine import VLLMEngine

    async def run() -> tuple[str, str]:
        engine = VLLMEngine(tiny_model_dir, EngineSettings(max_model_len=512, gpu_memory_utilization=0.2), "tiny")
        await engine.start()
        prompt = engine.render_chat([{"role": "user", "content": "hi"}])
        options = SamplingOptions(max_tokens=8, temperature=0.0)
        base = "".join([c.text async for c in engine.generate("g1", prompt, options)])
        adapter = AdapterRef("gpu@v1", 1, str(tiny_adapter_dir))
        tuned = "".join([c.text async for c in engine.generate("g2", prompt, options, adapter)])
        await engine.shutdown()
        return base, tuned

    base, tuned = asyncio.run(run())
    assert base and tuned != base
