"""Durable state: SQLAlchemy models, database engine/session helpers and Alembic migrations."""

from assistant.storage.db import Database
from assistant.storage.orm import (
    Adapter,
    Base,
    ChatRecord,
    Chunk,
    ChunkEmbedding,
    Document,
    Feedback,
    IndexChange,
    Job,
    PreferencePair,
)

__all__ = [
    "Adapter",
    "Base",
    "ChatRecord",
    "Chunk",
    "ChunkEmbedding",
    "Database",
    "Document",
    "Feedback",
    "IndexChange",
    "Job",
    "PreferencePair",
]
