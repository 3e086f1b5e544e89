"""Durable state: SQLAlchemy models, database engine/session helpers and Alembic migrations."""

from assistant.storage.db import Database
from assistant.storage.models import (
    Adapter,
    Base,
    ChatRecord,
    Chunk,
    Document,
    Feedback,
    Job,
    PreferencePair,
)

__all__ = ["Adapter", "Base", "ChatRecord", "Chunk", "Database", "Document", "Feedback", "Job", "PreferencePair"]
