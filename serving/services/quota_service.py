"""Quotas per API key and per signed-in user: tokens per UTC day and chat requests per minute, counted in the database.

Contract: `Quotas(db, keys)` applies the limits of keys issued through `/v1/keys` (`tokens_per_day`,
`requests_per_minute`; None = unlimited; settings keys and anonymous callers have none) and of users signed in
through OpenID Connect (their groups' limits, `oidc.groups.*.tokens_per_day|requests_per_minute`, carried by the
principal; counted per user: `user:` + a digest of the provider's subject, so every session of a user shares them).
- `admit(principal)` runs before a chat is prepared: it raises `QuotaExceededError` (429, `Retry-After` = seconds until
  the window ends, OpenAI's error shape with code `rate_limit_exceeded`) when the key has spent its tokens of the day,
  or when this request would exceed its requests of the minute; otherwise it counts the request.
- `spend(principal, tokens)` adds the prompt + completion tokens of a finished answer to the day's count;
  `metered(principal, chat, stream)` does it when an answer stream ends with its `Answer`. A request admitted under the
  limit finishes, so a day's spending can pass the limit by at most the requests in flight.
- `status(principal)` is the `quota` object of `GET /v1/me`: per limit its `limit`, `used`, `remaining` and
  `resets_in_s`, or null when the key has no such limit.
Counts live in `quota_usage` (one row per key, kind and window), changed only by single conditional UPDATEs (or an
INSERT that a concurrent one may win, then retried), so several replicas on one database share each count exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from assistant.errors import RateLimitedError
from assistant.storage import Database
from assistant.storage.orm import QuotaUsage
from serving.principal import Principal
from serving.services.chat_service import Answer, PreparedChat
from serving.services.key_service import KeyStore

TOKENS_DAY = "tokens_day"
REQUESTS_MINUTE = "requests_minute"
WINDOW_S = {TOKENS_DAY: 86_400, REQUESTS_MINUTE: 60}


@dataclass(frozen=True)
class Limits:
    """One counted caller: the id its counts are stored under, how messages name it, and its limits."""

    id: str
    name: str
    tokens_per_day: int | None
    requests_per_minute: int | None


class QuotaExceededError(RateLimitedError):
    """A key's own quota is spent (429 with `Retry-After`); `error_type` says which limit, as OpenAI does."""

    def __init__(self, message: str, *, retry_after: int, kind: str) -> None:
        super().__init__(message, retry_after=retry_after)
        self.error_type = "tokens" if kind == TOKENS_DAY else "requests"


class Quotas:
    def __init__(self, db: Database, keys: KeyStore | None, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.keys = keys
        self.clock = clock

    def _key(self, principal: Principal) -> Limits | None:
        """Who is counted and their limits: an issued key (read fresh from the key store) or a signed-in user."""
        if principal.key_id is not None and self.keys is not None:
            key = self.keys.get(principal.key_id)
            if key is None:
                return None
            return Limits(key.id, f"the API key '{key.name}'", key.tokens_per_day, key.requests_per_minute)
        if principal.owner.startswith("oidc:"):
            counted = "user:" + hashlib.sha256(principal.owner.encode()).hexdigest()[:32]  # fits quota_usage.key_id
            return Limits(
                counted, f"the user '{principal.name}'", principal.tokens_per_day, principal.requests_per_minute
            )
        return None

    def _window(self, kind: str) -> tuple[int, int]:
        """(window number, seconds until it ends)."""
        now, size = self.clock(), WINDOW_S[kind]
        window = int(now // size)
        return window, max(1, int((window + 1) * size - now + 0.999))

    # ------------------------------------------------------------------ checks

    async def admit(self, principal: Principal) -> None:
        key = self._key(principal)
        if key is not None and (key.tokens_per_day is not None or key.requests_per_minute is not None):
            await asyncio.to_thread(self._admit, key)

    def _admit(self, key: Limits) -> None:
        if key.tokens_per_day is not None:
            window, left_s = self._window(TOKENS_DAY)
            if self._used(key.id, TOKENS_DAY, window) >= key.tokens_per_day:
                raise QuotaExceededError(
                    f"{key.name} has spent its {key.tokens_per_day} tokens for today (tokens_per_day); "
                    f"the count starts again at 00:00 UTC, in {left_s} s",
                    retry_after=left_s,
                    kind=TOKENS_DAY,
                )
        if key.requests_per_minute is not None:
            window, left_s = self._window(REQUESTS_MINUTE)
            if not self._add(key.id, REQUESTS_MINUTE, window, 1, below=key.requests_per_minute):
                raise QuotaExceededError(
                    f"{key.name} has made its {key.requests_per_minute} chat requests this minute "
                    f"(requests_per_minute); retry in {left_s} s",
                    retry_after=left_s,
                    kind=REQUESTS_MINUTE,
                )

    async def spend(self, principal: Principal, tokens: int) -> None:
        key = self._key(principal)
        if key is not None and key.tokens_per_day is not None and tokens > 0:
            window, _ = self._window(TOKENS_DAY)
            await asyncio.to_thread(self._add, key.id, TOKENS_DAY, window, tokens)

    async def metered(
        self, principal: Principal, chat: PreparedChat, stream: AsyncIterator[str | Answer]
    ) -> AsyncIterator[str | Answer]:
        """`stream`, passed through; its tokens are spent when its `Answer` comes."""
        async for item in stream:
            if isinstance(item, Answer):
                await self.spend(principal, spent_tokens(chat, item))
            yield item

    # ------------------------------------------------------------------ counting

    def _used(self, key_id: str, kind: str, window: int) -> int:
        with self.db.session() as session:
            used = session.scalar(
                select(QuotaUsage.used).where(
                    QuotaUsage.key_id == key_id, QuotaUsage.kind == kind, QuotaUsage.period == window
                )
            )
            return int(used or 0)

    def _add(self, key_id: str, kind: str, window: int, amount: int, below: int | None = None) -> bool:
        """Add `amount` to the count (only while it stays within `below`, when given); False when it would not."""
        match = (QuotaUsage.key_id == key_id, QuotaUsage.kind == kind, QuotaUsage.period == window)
        for _ in range(3):  # an INSERT lost to a concurrent one is retried as an UPDATE
            try:
                with self.db.session() as session:
                    statement = update(QuotaUsage).where(*match).values(used=QuotaUsage.used + amount)
                    if below is not None:
                        statement = statement.where(QuotaUsage.used + amount <= below)
                    if session.execute(statement).rowcount == 1:  # type: ignore[attr-defined]
                        return True
                    if session.get(QuotaUsage, (key_id, kind, window)) is not None:
                        return False  # the row exists: the condition refused the addition
                    if below is not None and amount > below:
                        return False
                    session.add(QuotaUsage(key_id=key_id, kind=kind, period=window, used=amount))
                    self._prune(session, key_id)
                return True
            except IntegrityError:
                continue
        raise RuntimeError("quota count could not be written after 3 attempts")

    def _prune(self, session: Any, key_id: str) -> None:
        """A new window began: drop this key's windows that ended before the previous one."""
        for kind, size in WINDOW_S.items():
            current = int(self.clock() // size)
            session.execute(
                delete(QuotaUsage).where(
                    QuotaUsage.key_id == key_id, QuotaUsage.kind == kind, QuotaUsage.period < current - 1
                )
            )

    # ------------------------------------------------------------------ reporting

    def status(self, principal: Principal) -> dict[str, Any]:
        key = self._key(principal)
        limits = {TOKENS_DAY: key.tokens_per_day, REQUESTS_MINUTE: key.requests_per_minute} if key else {}
        names = {TOKENS_DAY: "tokens_per_day", REQUESTS_MINUTE: "requests_per_minute"}
        body: dict[str, Any] = {}
        for kind, name in names.items():
            limit = limits.get(kind)
            if limit is None or key is None:
                body[name] = None
                continue
            window, left_s = self._window(kind)
            used = self._used(key.id, kind, window)
            body[name] = {"limit": limit, "used": used, "remaining": max(0, limit - used), "resets_in_s": left_s}
        return body


def spent_tokens(chat: PreparedChat, answer: Answer) -> int:
    """Prompt + completion tokens of an answer the engine generated (a fixed answer generates none)."""
    return 0 if chat.fixed_answer is not None else chat.prompt_tokens + answer.completion_tokens
