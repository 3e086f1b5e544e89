"""The caller and its stored chats: `GET /v1/me`, `GET /v1/chats`, `GET /v1/chats/{id}` (any valid key)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query

from serving.access import Access, allow
from serving.auth import key_store
from serving.deps import ChatHistoryDep, PrincipalDep, StateDep
from serving.rest_format import chat_body, chat_page_body, me_body
from serving.services.quota_service import Quotas

router = APIRouter(tags=["chats"], dependencies=[allow(Access.MEMBER)])


@router.get("/v1/me")
async def whoami(principal: PrincipalDep, state: StateDep) -> dict[str, Any]:
    """The calling key: name, role, readable collections (null = all), whether a key was checked, and its `quota`."""
    quota = await asyncio.to_thread(Quotas(state.db, key_store(state)).status, principal)
    return me_body(principal, quota)


@router.get("/v1/chats")
async def list_chats(
    chats: ChatHistoryDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    everyone: Annotated[
        bool, Query(alias="all", description="Admin only: every key's chats, not just the caller's.")
    ] = False,
) -> dict[str, Any]:
    return chat_page_body(chats.list(principal, limit, offset, everyone=everyone))


@router.get("/v1/chats/{chat_id}")
async def get_chat(chat_id: str, chats: ChatHistoryDep, principal: PrincipalDep) -> dict[str, Any]:
    return chat_body(chats.get(principal, chat_id))
