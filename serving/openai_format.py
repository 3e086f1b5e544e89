"""The OpenAI wire format of chat completions, made at the edge from the chat service's domain values.

Contract: `completion_body(chat, answer)` is a `chat.completion` object; `sse_events(chat, pieces)` turns the
service's `answer_stream` (text pieces, then the `Answer`) into server-sent events: a first chunk with the assistant
role, one chunk per text piece, a final chunk with the finish reason, `usage` and the grounding fields, a usage-only
chunk when the request asked for it (`stream_options.include_usage`), then `data: [DONE]`. Both carry the platform's
grounding fields: `citations` (document, page/section, chunk id, score), `sources` (the chunks the model saw) and
`retrieval` (the mode used).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from serving.services.chat_service import Answer, PreparedChat


def completion_body(chat: PreparedChat, answer: Answer) -> dict[str, Any]:
    """The `chat.completion` JSON of a finished answer."""
    message = {"role": "assistant", "content": answer.text}
    return {
        "id": chat.id,
        "object": "chat.completion",
        "created": chat.created,
        "model": chat.model,
        "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason, "logprobs": None}],
        "usage": usage(chat.prompt_tokens, answer.completion_tokens),
        **grounding(chat),
    }


async def sse_events(chat: PreparedChat, pieces: AsyncIterator[str | Answer]) -> AsyncIterator[str]:
    """Server-sent `chat.completion.chunk` events of a streamed answer (see the module contract)."""
    yield _sse(_chunk(chat, {"role": "assistant", "content": ""}))
    async for piece in pieces:
        if isinstance(piece, str):
            yield _sse(_chunk(chat, {"content": piece}))
            continue
        final = _chunk(chat, {}, finish_reason=piece.finish_reason)
        final["usage"] = usage(chat.prompt_tokens, piece.completion_tokens)
        final.update(grounding(chat))
        yield _sse(final)
        if chat.include_usage:
            yield _sse({**_chunk(chat, None), "choices": [], "usage": final["usage"]})
    yield "data: [DONE]\n\n"


def grounding(chat: PreparedChat) -> dict[str, Any]:
    return {"citations": chat.citations(), "sources": chat.sources(), "retrieval": chat.retrieval}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _chunk(chat: PreparedChat, delta: dict[str, Any] | None, finish_reason: str | None = None) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    return {"id": chat.id, "object": "chat.completion.chunk", "created": chat.created, "model": chat.model,
            "choices": choices}  # fmt: skip


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
