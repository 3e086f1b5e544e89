"""Stored chats for their owner: `GET /v1/chats` and `GET /v1/chats/{id}`.

Contract: `ChatHistory.list(principal, limit, offset, everyone)` returns the caller's own chats, newest first (an
admin passing `everyone=True` sees every key's chats); `get(principal, id)` returns one, 404 when it does not exist
or belongs to another key (the same answer, so ids of other keys' chats are not confirmed). Citations of collections
the caller may no longer read are left out. Chats come back as `StoredChat` records (`list`: a `ChatPage` with the
total count); `title` is the first user message cut to 80 characters. The JSON is made in `serving.rest_format`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from assistant.errors import NotFoundError, PermissionDeniedError
from assistant.storage import ChatRecord, Database
from serving.principal import Principal

TITLE_CHARS = 80


def chat_title(messages: list[Any]) -> str:
    first = next((str(m.get("content", "")) for m in messages if isinstance(m, dict) and m.get("role") == "user"), "")
    first = " ".join(first.split())
    return first if len(first) <= TITLE_CHARS else first[: TITLE_CHARS - 1] + "…"


@dataclass(frozen=True)
class StoredChat:
    """One stored chat as its owner sees it (citations the caller may not read left out)."""

    id: str
    created_at: datetime
    model: str
    title: str
    messages: list[Any]
    answer: str
    citations: list[dict[str, Any]]
    trace_id: str | None  # the chat's trace (serving.tracing): a thumbs-down leads to its spans


@dataclass(frozen=True)
class ChatPage:
    total: int  # the caller's chats (every key's, for an admin listing all), not just this page's
    chats: list[StoredChat]


def stored_chat(record: ChatRecord, principal: Principal) -> StoredChat:
    citations = [c for c in record.citations or [] if principal.can_read(c.get("collection"))]
    return StoredChat(
        record.id,
        record.created_at,
        record.model,
        chat_title(record.messages),
        record.messages,
        record.answer,
        citations,
        record.trace_id,
    )


class ChatHistory:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, principal: Principal, limit: int, offset: int, everyone: bool = False) -> ChatPage:
        if everyone and not principal.is_admin:
            raise PermissionDeniedError("only an admin key may list every key's chats (all=true)", param="all")
        query = select(ChatRecord)
        if not everyone:
            query = query.where(ChatRecord.owner == principal.owner)
        with self.db.session() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(
                query.order_by(ChatRecord.created_at.desc(), ChatRecord.id).limit(limit).offset(offset)
            ).all()
            return ChatPage(int(total), [stored_chat(row, principal) for row in rows])

    def get(self, principal: Principal, chat_id: str) -> StoredChat:
        with self.db.session() as session:
            record = session.get(ChatRecord, chat_id)
            if record is None or (record.owner != principal.owner and not principal.is_admin):
                raise NotFoundError(f"no stored chat {chat_id} for this API key", param="chat_id")
            return stored_chat(record, principal)
