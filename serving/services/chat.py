"""Chat completions: validate, render the prompt, generate through the engine, store the record, format OpenAI output.

Contract: `ChatService.prepare(request)` does every check that can fail before generation (unknown model, oversized
message, prompt or max_tokens beyond the context) and raises project errors (4xx); `complete()` returns an OpenAI
`chat.completion` dict and `stream()` yields SSE `data:` lines of `chat.completion.chunk`s ending with `[DONE]`.
Every finished response is stored as a `ChatRecord` under its response id, with the exact rendered prompt, the
sampling parameters and the adapter, so that feedback can refer to it later. A stream whose consumer goes away
aborts its engine request (the engine frees the slot).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from assistant.engine import AdapterRef, GenerationChunk, GenerationEngine, SamplingOptions
from assistant.errors import InvalidRequestError
from assistant.prompts import build_rag_messages
from assistant.settings import Settings
from assistant.storage import ChatRecord, Database
from serving.catalog import ModelCatalog
from serving.metrics import Metrics
from serving.schemas import ChatCompletionRequest

log = logging.getLogger(__name__)


@dataclass
class PreparedChat:
    """Everything needed to run one chat request, decided before any token is generated."""

    id: str
    model: str
    adapter: AdapterRef | None
    messages: list[dict[str, str]]
    prompt: str
    prompt_tokens: int
    options: SamplingOptions
    created: int = field(default_factory=lambda: int(time.time()))
    include_usage: bool = False


class ChatService:
    """Runs chat completions against the engine."""

    def __init__(
        self,
        settings: Settings,
        engine: GenerationEngine,
        catalog: ModelCatalog,
        db: Database,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.catalog = catalog
        self.db = db
        self.metrics = metrics

    async def _generate(self, chat: PreparedChat) -> AsyncIterator[GenerationChunk]:
        """The engine's stream for this chat, timed for the metrics (time to first token, tokens/s)."""
        started = time.perf_counter()
        ttft: float | None = None
        last: GenerationChunk | None = None
        async for chunk in self.engine.generate(chat.id, chat.prompt, chat.options, chat.adapter):
            if ttft is None:
                ttft = time.perf_counter() - started
            last = chunk
            yield chunk
        if self.metrics is not None and last is not None and ttft is not None:
            self.metrics.observe_generation(chat.model, ttft, last.completion_tokens, time.perf_counter() - started)

    def prepare(self, request: ChatCompletionRequest) -> PreparedChat:
        adapter = self.catalog.resolve(request.model)
        history = [message.as_dict() for message in request.messages]
        self._check_message_sizes(history)
        messages = build_rag_messages(history, sources=None)
        prompt = self.engine.render_chat(messages)
        prompt_tokens = self.engine.count_tokens(prompt)
        max_tokens = self._max_tokens(request, prompt_tokens)
        options = SamplingOptions(
            max_tokens=max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=tuple(request.stop or ()),
            seed=request.seed,
        )
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        return PreparedChat(
            f"chatcmpl-{uuid.uuid4().hex}", request.model, adapter, history, prompt, prompt_tokens, options,
            include_usage=include_usage,
        )

    def _check_message_sizes(self, history: list[dict[str, str]]) -> None:
        limit = self.settings.server.max_message_chars
        for i, message in enumerate(history):
            if len(message["content"]) > limit:
                raise InvalidRequestError(
                    f"messages.{i}.content is {len(message['content'])} characters; the limit is {limit} "
                    "(server.max_message_chars)",
                    param=f"messages.{i}.content",
                )

    def _max_tokens(self, request: ChatCompletionRequest, prompt_tokens: int) -> int:
        context = self.engine.max_model_len
        room = context - prompt_tokens
        if room < 1:
            raise InvalidRequestError(
                f"the prompt is {prompt_tokens} tokens but the model's context is {context} tokens: "
                "shorten the messages",
                param="messages",
                code="context_length_exceeded",
            )
        asked = request.max_tokens or request.max_completion_tokens
        if asked is None:
            return min(self.settings.server.default_max_tokens, room)
        if asked > room:
            raise InvalidRequestError(
                f"max_tokens={asked} plus the prompt's {prompt_tokens} tokens exceeds the model's context of "
                f"{context} tokens: ask for at most {room}",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return asked

    async def complete(self, chat: PreparedChat) -> dict[str, Any]:
        text, last = "", None
        async for chunk in self._generate(chat):
            text += chunk.text
            last = chunk
        finish = last.finish_reason if last else "stop"
        completion_tokens = last.completion_tokens if last else 0
        await self._store(chat, text, finish, completion_tokens)
        message = {"role": "assistant", "content": text}
        return {
            "id": chat.id,
            "object": "chat.completion",
            "created": chat.created,
            "model": chat.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": _usage(chat.prompt_tokens, completion_tokens),
        }

    async def stream(self, chat: PreparedChat) -> AsyncIterator[str]:
        yield _sse(self._chunk(chat, {"role": "assistant", "content": ""}))
        text, last = "", None
        async for piece in self._generate(chat):
            text += piece.text
            last = piece
            if piece.text:
                yield _sse(self._chunk(chat, {"content": piece.text}))
        final = self._final_chunk(chat, last)
        yield _sse(final)
        if chat.include_usage:
            yield _sse({**self._chunk(chat, None), "choices": [], "usage": final["usage"]})
        await self._store(chat, text, final["choices"][0]["finish_reason"], final["usage"]["completion_tokens"])
        yield "data: [DONE]\n\n"

    def _final_chunk(self, chat: PreparedChat, last: GenerationChunk | None) -> dict[str, Any]:
        chunk = self._chunk(chat, {}, finish_reason=last.finish_reason if last else "stop")
        chunk["usage"] = _usage(chat.prompt_tokens, last.completion_tokens if last else 0)
        return chunk

    @staticmethod
    def _chunk(chat: PreparedChat, delta: dict[str, Any] | None, finish_reason: str | None = None) -> dict[str, Any]:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        return {
            "id": chat.id,
            "object": "chat.completion.chunk",
            "created": chat.created,
            "model": chat.model,
            "choices": choices,
        }

    async def _store(self, chat: PreparedChat, answer: str, finish: str | None, completion_tokens: int) -> None:
        record = ChatRecord(
            id=chat.id,
            model=chat.model,
            adapter=chat.adapter.name if chat.adapter else None,
            messages=chat.messages,
            prompt=chat.prompt,
            retrieved_chunk_ids=[],
            sampling=chat.options.as_dict(),
            answer=answer,
            finish_reason=finish,
            prompt_tokens=chat.prompt_tokens,
            completion_tokens=completion_tokens,
        )
        await asyncio.to_thread(self._insert, record)

    def _insert(self, record: ChatRecord) -> None:
        with self.db.session() as session:
            session.add(record)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
