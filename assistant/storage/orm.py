"""SQLAlchemy ORM models: the platform's durable state.

Contract: every table the platform owns is declared here; the schema in a database is created and upgraded only by
the Alembic migrations in `assistant/storage/migrations` (`assistant.storage.db.migrate`). Timestamps are UTC.
JSON columns hold free-form metadata (sampling parameters, lineage, metrics) whose shape is owned by the writer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Document(Base):
    """One uploaded document (a file) in a collection. `source` + `collection` identify it across re-uploads."""

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("collection", "source", name="uq_document_source"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("doc"))
    collection: Mapped[str] = mapped_column(String(200), index=True, default="default")
    source: Mapped[str] = mapped_column(String(1000), doc="File name or path the document came from.")
    title: Mapped[str] = mapped_column(String(1000), default="")
    mime_type: Mapped[str] = mapped_column(String(200), default="")
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), default="pending", doc="pending | processing | ready | failed")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parse_report: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, nullable=True, doc="How it was parsed: pages, method per page (text/ocr/failed), tables, warnings."
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    chunks: Mapped[list[Chunk]] = relationship(back_populates="document", cascade="all, delete-orphan")


class Chunk(Base):
    """One retrievable passage. Its integer `id` is the FAISS vector id."""

    __tablename__ = "chunks"
    __table_args__ = (Index("ix_chunk_doc_ord", "document_id", "ordinal"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    collection: Mapped[str] = mapped_column(String(200), index=True, default="default")
    ordinal: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    page: Mapped[int | None] = mapped_column(Integer, nullable=True)
    section: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    char_start: Mapped[int] = mapped_column(Integer, default=0)
    char_end: Mapped[int] = mapped_column(Integer, default=0)
    token_count: Mapped[int] = mapped_column(Integer, default=0)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    document: Mapped[Document] = relationship(back_populates="chunks")


class ChunkEmbedding(Base):
    """A chunk's vector (float32 bytes) in the embedder space `space` (JSON of `assistant.embedding.embedder_space`).

    Stored so that every server replica can fill its own vector index from the database without re-embedding
    (`assistant.index.replication`); deleted with its chunk.
    """

    __tablename__ = "chunk_embeddings"

    chunk_id: Mapped[int] = mapped_column(ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True)
    space: Mapped[str] = mapped_column(String(400))
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class IndexChange(Base):
    """One entry of the vector index change log: chunk `chunk_id` was added or removed. `seq` only grows, in commit
    order (writers serialise on a lock, see `assistant.index.replication`), so a replica that applied every entry up
    to `seq` has caught up to that point."""

    __tablename__ = "index_changes"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chunk_id: Mapped[int] = mapped_column(Integer, index=True)
    op: Mapped[str] = mapped_column(String(8), doc="add | remove")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ChatRecord(Base):
    """One chat completion the server produced, with everything that produced it (feedback refers to its id)."""

    __tablename__ = "chat_records"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    adapter: Mapped[str | None] = mapped_column(String(200), nullable=True)
    messages: Mapped[list[Any]] = mapped_column(JSON)
    prompt: Mapped[str] = mapped_column(Text, doc="The exact rendered prompt given to the engine.")
    retrieved_chunk_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    sampling: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    answer: Mapped[str] = mapped_column(Text, default="")
    finish_reason: Mapped[str | None] = mapped_column(String(20), nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    owner: Mapped[str | None] = mapped_column(
        String(80), nullable=True, index=True, doc="Fingerprint of the API key that created it (never the key)."
    )
    citations: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True, doc="The citations the response carried.")
    trace_id: Mapped[str | None] = mapped_column(
        String(32), nullable=True, doc="OpenTelemetry trace id of the request that produced it (hex)."
    )


class Feedback(Base):
    """A rating (+1/-1) and optional correction on a chat record."""

    __tablename__ = "feedback"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("fb"))
    chat_id: Mapped[str] = mapped_column(ForeignKey("chat_records.id", ondelete="CASCADE"), index=True)
    rating: Mapped[int] = mapped_column(Integer)
    correction: Mapped[str | None] = mapped_column(Text, nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PreferencePair(Base):
    """A preference pair; `prompt` is the exact rendered prompt (retrieved context included) where known."""

    __tablename__ = "preference_pairs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("pp"))
    prompt: Mapped[str] = mapped_column(Text)
    chosen: Mapped[str] = mapped_column(Text)
    rejected: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    provenance: Mapped[str] = mapped_column(String(20), default="imported", doc="imported | feedback")
    source: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    collections: Mapped[list[Any] | None] = mapped_column(
        JSON, nullable=True, doc="Collections the pair's retrieved sources came from ([] = none)."
    )


class Job(Base):
    """A training (or other long) job run by a worker process."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("job"))
    kind: Mapped[str] = mapped_column(String(20), doc="sft | dpo | psft")
    state: Mapped[str] = mapped_column(
        String(20),
        default="queued",
        doc="assistant.job_states.JobState",
    )
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    phase: Mapped[str | None] = mapped_column(String(20), nullable=True, doc="training.progress.PHASES; None: queued")
    phase_progress: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, nullable=True, doc="done/total/eta_s of the phase, the budget left and the phases seen so far."
    )
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Adapter(Base):
    """One version of a LoRA adapter in the registry, with its lineage. `name` + `version` are unique."""

    __tablename__ = "adapters"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_adapter_version"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ad"))
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(2000))
    base_model: Mapped[str] = mapped_column(String(1000))
    method: Mapped[str] = mapped_column(String(20), default="")
    kind: Mapped[str] = mapped_column(String(20), default="lm", server_default="lm", doc="lm | reward")
    parent_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="candidate", doc="assistant.adapter_refs.AdapterStatus")
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ApiKeyRecord(Base):
    """An API key issued through `POST /v1/keys`: only the sha256 digest of its secret is stored (issue 27)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    name: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str] = mapped_column(String(64), unique=True, doc="sha256 hex digest of the secret.")
    prefix: Mapped[str] = mapped_column(String(16), doc="The secret's first characters, to recognise it in lists.")
    role: Mapped[str] = mapped_column(String(20), doc="admin | member")
    collections: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True, doc="None: every collection.")
    created_by: Mapped[str] = mapped_column(String(200), doc="Name of the key that issued it (its owner).")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    tokens_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)


class QuotaUsage(Base):
    """What one key spent in one period: `kind` 'tokens_day' (period = Unix day) or 'requests_minute' (Unix
    minute). Counted with atomic updates, so every replica on the database shares the count."""

    __tablename__ = "quota_usage"

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    period: Mapped[int] = mapped_column(Integer, primary_key=True)
    used: Mapped[int] = mapped_column(Integer, default=0)


class AuditEvent(Base):
    """One row of the append-only audit log: who did what, when, to what, with which outcome."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True, doc="Key name, or '(no key)' / '(invalid key)'.")
    actor_id: Mapped[str | None] = mapped_column(String(80), nullable=True, doc="The key's owner fingerprint.")
    role: Mapped[str | None] = mapped_column(String(20), nullable=True)
    action: Mapped[str] = mapped_column(String(100), index=True)
    target: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    outcome: Mapped[str] = mapped_column(String(20), doc="ok | refused | error")
    status: Mapped[int] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(80), nullable=True)


class Source(Base):
    """A directory kept in sync with a collection (`ingest.directory_sources`). `lease_owner`/`lease_until` are the
    claim a sync holds (compare-and-set), so one sync runs at a time per source across processes sharing the
    database."""

    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("src"))
    name: Mapped[str] = mapped_column(String(200), unique=True)
    path: Mapped[str] = mapped_column(String(2000))
    collection: Mapped[str] = mapped_column(String(200), index=True)
    delete_policy: Mapped[str] = mapped_column(String(10), default="mirror", doc="mirror | keep")
    interval_s: Mapped[float | None] = mapped_column(Float, nullable=True, doc="Scheduled sync period; None = off.")
    status: Mapped[str] = mapped_column(String(20), default="new", doc="new | syncing | ok | partial | failed")
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    errors: Mapped[list[Any]] = mapped_column(JSON, default=list, doc="The last sync's per-file errors.")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_sync_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class SourceFile(Base):
    """A file of a source, by its path relative to the source root: what the last sync saw (size, mtime, SHA-256 of
    the bytes) and its state. A document belongs to a source only through such a row."""

    __tablename__ = "source_files"

    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True)
    rel_path: Mapped[str] = mapped_column(String(1000), primary_key=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(
        String(20), default="pending", doc="pending | synced | duplicate | failed | missing"
    )
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
