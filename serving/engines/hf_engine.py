"""Transformers fallback implementation of `GenerationEngine`, for machines where vLLM cannot be installed.

Contract: same inputs and outputs as `VLLMEngine` and, for greedy decoding in float32, the same text (tested on the
tiny model). It serves one request at a time (a lock; no continuous batching), loads LoRA adapters into one PEFT
model by engine identity and switches per request, and stops a request between two tokens when it is aborted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from assistant.engine import AdapterRef, EngineStats, GenerationChunk, SamplingOptions
from assistant.settings import EngineSettings
from assistant.startup import resolve_device, resolve_dtype
from serving.engines.tokenizer_mixin import TokenizerMixin

log = logging.getLogger(__name__)


class TransformersEngine(TokenizerMixin):
    """`model.generate` behind the project's engine protocol."""

    def __init__(self, model_dir: Path, settings: EngineSettings, served_name: str) -> None:
        self.model_dir = model_dir
        self.settings = settings
        self.model_name = served_name
        self.max_model_len = settings.max_model_len
        self.model: Any = None
        self._lock = asyncio.Lock()
        self._adapters: dict[str, AdapterRef] = {}
        self._cancelled: set[str] = set()
        self._running = 0
        self._waiting = 0

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self._load_tokenizer(self.model_dir)
        device = self._device()
        dtype = getattr(torch, resolve_dtype(self.settings.dtype, device == "cuda"))
        model: Any = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=dtype)
        self.model = model.to(device).eval()
        log.info("transformers engine loaded %s on %s (%s)", self.model_dir, device, dtype)

    def _device(self) -> str:
        return resolve_device(self.settings.device)

    async def add_adapter(self, adapter: AdapterRef) -> None:
        if adapter.name not in self._adapters:
            async with self._lock:
                await asyncio.to_thread(self._load_adapter, adapter)

    def _load_adapter(self, adapter: AdapterRef) -> None:
        from peft import PeftModel

        if isinstance(self.model, PeftModel):
            self.model.load_adapter(adapter.path, adapter_name=adapter.name)
        else:
            self.model = PeftModel.from_pretrained(self.model, adapter.path, adapter_name=adapter.name)
        self.model.eval()
        self._adapters[adapter.name] = adapter

    async def remove_adapter(self, adapter: AdapterRef) -> None:
        if self._adapters.pop(adapter.name, None) is not None:
            async with self._lock:
                self.model.delete_adapter(adapter.name)

    async def generate(
        self, request_id: str, prompt: str, options: SamplingOptions, adapter: AdapterRef | None = None
    ) -> AsyncIterator[GenerationChunk]:
        if adapter is not None:
            await self.add_adapter(adapter)
        self._waiting += 1
        async with self._lock:
            self._waiting -= 1
            self._running += 1
            try:
                async for chunk in self._stream(request_id, prompt, options, adapter):
                    yield chunk
            finally:
                self._running -= 1
                self._cancelled.discard(request_id)

    async def _stream(
        self, request_id: str, prompt: str, options: SamplingOptions, adapter: AdapterRef | None
    ) -> AsyncIterator[GenerationChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[int | BaseException | None] = asyncio.Queue()
        prompt_ids = self.encode(prompt)
        worker = threading.Thread(
            target=self._generate_thread,
            args=(
                request_id,
                prompt_ids,
                options,
                adapter,
                lambda item: loop.call_soon_threadsafe(queue.put_nowait, item),
            ),
            daemon=True,
        )
        worker.start()
        decoder = _IncrementalText(self.tokenizer, options.stop)
        finished = False
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                delta = decoder.push(item)
                finished = decoder.stopped or item == self.tokenizer.eos_token_id
                if delta or finished:
                    yield self._chunk(delta, prompt_ids, decoder, "stop" if finished else None)
                if finished:
                    break
            if not finished:
                yield self._chunk(decoder.flush(), prompt_ids, decoder, "length")
        finally:
            self._cancelled.add(request_id)  # stops the thread if we left early (abort, stop string, disconnect)
            await asyncio.to_thread(worker.join)

    def _chunk(
        self, text: str, prompt_ids: list[int], decoder: _IncrementalText, finish: str | None
    ) -> GenerationChunk:
        return GenerationChunk(text, len(prompt_ids), len(decoder.ids), finish, decoder.ids[-1:])

    def _generate_thread(
        self, request_id: str, prompt_ids: list[int], options: SamplingOptions, adapter: AdapterRef | None, emit: Any
    ) -> None:
        try:
            self._run_generate(request_id, prompt_ids, options, adapter, emit)
            emit(None)
        except BaseException as exc:  # surfaced to the awaiting request, never swallowed
            emit(exc)

    def _run_generate(
        self, request_id: str, prompt_ids: list[int], options: SamplingOptions, adapter: AdapterRef | None, emit: Any
    ) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        cancelled = self._cancelled

        class _Abort(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:  # type: ignore[override]
                emit(int(input_ids[0, -1]))
                return request_id in cancelled

        if options.seed is not None:
            torch.manual_seed(options.seed)
        inputs = torch.tensor([prompt_ids], device=self.model.device)
        with torch.inference_mode(), self._adapter_context(adapter):
            self.model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=options.max_tokens,
                **self._sampling_kwargs(options),
                stopping_criteria=StoppingCriteriaList([_Abort()]),
                eos_token_id=self.tokenizer.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )

    @staticmethod
    def _sampling_kwargs(options: SamplingOptions) -> dict[str, Any]:
        if options.temperature == 0:
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {"do_sample": True, "temperature": options.temperature, "top_p": options.top_p, "top_k": 0}

    def _adapter_context(self, adapter: AdapterRef | None) -> Any:
        from contextlib import nullcontext

        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            return nullcontext()
        if adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(adapter.name)
        return nullcontext()

    async def abort(self, request_id: str) -> None:
        self._cancelled.add(request_id)

    def stats(self) -> EngineStats:
        return EngineStats(running=self._running, waiting=self._waiting)

    def dead_reason(self) -> str | None:
        return None  # runs in the server's own process: if it dies, so does the server

    async def shutdown(self) -> None:
        self.model = None


class _IncrementalText:
    """Detokenizes a growing list of token ids into text deltas, holding back incomplete characters and stop strings."""

    def __init__(self, tokenizer: Any, stop: tuple[str, ...]) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.ids: list[int] = []
        self.sent = ""
        self.stopped = False

    def push(self, token_id: int) -> str:
        if token_id == self.tokenizer.eos_token_id:
            return self.flush()
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        for stop in self.stop:
            if stop in text:
                self.stopped = True
                return self._emit(text[: text.index(stop)])
        if text.endswith("\ufffd"):  # a multi-byte character is not complete yet
            return ""
        hold = max((len(s) - 1 for s in self.stop), default=0)
        return self._emit(text[: len(text) - hold] if hold else text)

    def flush(self) -> str:
        return self._emit(self.tokenizer.decode(self.ids, skip_special_tokens=True))

    def _emit(self, text: str) -> str:
        if not text.startswith(self.sent) or len(text) <= len(self.sent):
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta
