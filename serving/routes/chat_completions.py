"""`POST /v1/chat/completions`: OpenAI chat completions, JSON or SSE stream (`serving.openai_format`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from serving import tracing
from serving.access import Access, allow
from serving.admission import Lease
from serving.auth import key_store
from serving.deps import ChatDep, PrincipalDep, StateDep
from serving.openai_format import completion_body, sse_events
from serving.schemas import ChatCompletionRequest
from serving.services.quota_service import Quotas, spent_tokens

router = APIRouter(tags=["chat"], dependencies=[allow(Access.MEMBER)])


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    request: ChatCompletionRequest, chat: ChatDep, principal: PrincipalDep, state: StateDep, response: Response
) -> dict[str, Any] | StreamingResponse:
    """One `chat` span around the answer (serving.tracing); its trace id goes back as `X-Trace-Id`."""
    with tracing.tracer().start_as_current_span("chat") as span:
        named = {"chat.model": request.model, "chat.stream": request.stream, "chat.key": principal.name}
        tracing.attributes(span, **named)
        result = await _chat_completions(request, chat, principal, state)
    target = result.headers if isinstance(result, StreamingResponse) else response.headers
    target["X-Trace-Id"] = tracing.trace_id_hex(span)
    return result


async def _chat_completions(
    request: ChatCompletionRequest, chat: ChatDep, principal: PrincipalDep, state: StateDep
) -> dict[str, Any] | StreamingResponse:
    quotas = Quotas(state.db, key_store(state))
    await quotas.admit(principal)  # the key's own tokens/day and requests/minute: 429 before any work
    prepared = await chat.prepare(request, principal)
    # A fixed answer generates nothing; everything else needs a generation slot (or a 429 when the queue is full).
    admission = state.admission if prepared.fixed_answer is None else None
    with tracing.tracer().start_as_current_span("queue"):
        lease = await admission.acquire() if admission is not None else None
    if not request.stream:
        try:
            answer = await chat.answer(prepared)
            await quotas.spend(principal, spent_tokens(prepared, answer))
            return completion_body(prepared, answer)
        finally:
            if lease is not None:
                lease.release()
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    events = sse_events(prepared, quotas.metered(principal, prepared, chat.answer_stream(prepared)))
    if lease is None:
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    return _LeasedStream(lease, lease.guard(events), media_type="text/event-stream", headers=headers)


class _LeasedStream(StreamingResponse):
    """A stream that gives its generation slot back however it ends, even when the client left before its first
    byte (the body generator then never starts, so its own `finally` cannot run)."""

    def __init__(self, lease: Lease, content: AsyncIterator[str], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.lease = lease

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.lease.release()
