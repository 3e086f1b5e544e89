"""`POST /v1/chat/completions`: OpenAI chat completions, JSON or SSE stream."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from serving.access import Access, allow
from serving.auth import PrincipalDep
from serving.schemas import ChatCompletionRequest
from serving.state import ChatDep

router = APIRouter(tags=["chat"], dependencies=[allow(Access.MEMBER)])


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    request: ChatCompletionRequest, chat: ChatDep, principal: PrincipalDep
) -> dict[str, Any] | StreamingResponse:
    prepared = await chat.prepare(request, principal)
    if not request.stream:
        return await chat.complete(prepared)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(chat.stream(prepared), media_type="text/event-stream", headers=headers)
