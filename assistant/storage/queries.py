"""Query filters shared by the layers that read the same rows (the server's stores and the training worker).

Contract: `preference_filters(provenance, since)` returns the WHERE clauses selecting preference pairs of one
provenance ('feedback' | 'imported'; None = all) created at or after a Unix time (None = any time). Timestamps are
stored as naive UTC by SQLite, so `since` is converted to naive UTC here, once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from assistant.storage.orm import PreferencePair


def utc_naive(unix_time: int) -> datetime:
    return datetime.fromtimestamp(unix_time, UTC).replace(tzinfo=None)


def preference_filters(provenance: str | None, since: int | None) -> list[Any]:
    filters: list[Any] = []
    if provenance:
        filters.append(PreferencePair.provenance == provenance)
    if since is not None:
        filters.append(PreferencePair.created_at >= utc_naive(since))
    return filters
