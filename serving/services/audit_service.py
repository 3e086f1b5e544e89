"""The audit log: an append-only record of who did what, when, to what, and with which outcome.

Contract: `AuditLog(db).record(event)` appends one `AuditEvent` row; `query(filters, limit)` returns events newest
first, filtered by actor (key name), action (exact, or a family: 'keys' matches 'keys.create'), outcome and a time
range. Nothing here updates or deletes a row, and no route does. Which requests are recorded, and how their actor,
action, target and outcome are found, is decided in one place: the recorder in `serving.routes.audit`.
Outcomes: 'ok' (2xx/3xx), 'refused' (401, 403: no key, a wrong key, or a role or scope that may not), 'error'
(any other failure, with its status and message in `detail`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select

from assistant.storage import Database
from assistant.storage.orm import AuditEvent


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    return "refused" if status in (401, 403) else "error"


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    status: int
    actor_id: str | None = None
    role: str | None = None
    target: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    at: datetime | None = None
    id: int | None = None

    @property
    def outcome(self) -> str:
        return outcome_of(self.status)

    @classmethod
    def of(cls, row: AuditEvent) -> AuditEntry:
        at = row.at.replace(tzinfo=row.at.tzinfo or UTC)
        return cls(
            row.actor, row.action, row.status, row.actor_id, row.role, row.target, dict(row.detail or {}),
            row.request_id, at, row.id,
        )  # fmt: skip


@dataclass(frozen=True)
class AuditFilters:
    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, entry: AuditEntry) -> None:
        row = AuditEvent(
            at=entry.at or datetime.now(UTC),
            actor=entry.actor[:200],
            actor_id=entry.actor_id,
            role=entry.role,
            action=entry.action[:100],
            target=entry.target[:1000] if entry.target else None,
            outcome=entry.outcome,
            status=entry.status,
            detail=entry.detail,
            request_id=entry.request_id,
        )
        with self.db.session() as session:
            session.add(row)

    def query(self, filters: AuditFilters, limit: int = 100) -> list[AuditEntry]:
        statement = select(AuditEvent)
        if filters.actor is not None:
            statement = statement.where(AuditEvent.actor == filters.actor)
        if filters.action is not None:
            family = filters.action.rstrip(".") + "."
            statement = statement.where(
                or_(AuditEvent.action == filters.action, AuditEvent.action.startswith(family, autoescape=True))
            )
        if filters.outcome is not None:
            statement = statement.where(AuditEvent.outcome == filters.outcome)
        if filters.since is not None:
            statement = statement.where(AuditEvent.at >= _utc_naive(filters.since))
        if filters.until is not None:
            statement = statement.where(AuditEvent.at <= _utc_naive(filters.until))
        with self.db.session() as session:
            rows = session.scalars(statement.order_by(AuditEvent.id.desc()).limit(limit)).all()
            return [AuditEntry.of(row) for row in rows]


def _utc_naive(value: datetime) -> datetime:
    """Filters compare with naive UTC on both engines (`assistant.storage.db`)."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
