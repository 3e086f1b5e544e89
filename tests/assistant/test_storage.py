"""Storage: migrations create every table on both engines (SQLite with WAL and FTS5, PostgreSQL with the tsvector
column and its GIN index), are idempotent, and sessions roll back on error. Each test runs once per engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from assistant.storage import ChatRecord, Database, Document, Job


def test_migrate_creates_tables(db_url: str) -> None:
    db = Database(db_url)
    db.migrate()
    db.migrate()  # idempotent
    inspector = sa.inspect(db.engine)
    expected = {"documents", "chunks", "chat_records", "feedback", "preference_pairs", "jobs", "adapters"}
    assert expected <= set(inspector.get_table_names())
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE name = 'chunks_fts'").scalar() == 1
        else:
            assert "text_tsv" in {column["name"] for column in inspector.get_columns("chunks")}
            index = conn.exec_driver_sql("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_chunks_text_tsv'")
            assert "USING gin (text_tsv)" in index.scalar_one()
    db.dispose()


def test_session_rolls_back_on_error(db_url: str) -> None:
    db = Database(db_url)
    db.migrate()
    with db.session() as session:
        session.add(Document(collection="c", source="a.txt", content_hash="h1"))
    with pytest.raises(RuntimeError), db.session() as session:
        session.add(Document(collection="c", source="b.txt", content_hash="h2"))
        session.flush()
        raise RuntimeError("boom")
    with db.session() as session:
        assert [d.source for d in session.scalars(sa.select(Document))] == ["a.txt"]
    db.dispose()


def test_chat_record_and_json_round_trip(db_url: str) -> None:
    db = Database(db_url)
    db.migrate()
    messages = [{"role": "user", "content": "hi ü"}]
    with db.session() as session:
        session.add(ChatRecord(id="chatcmpl-1", model="m", messages=messages, prompt="p", sampling={"t": 0.5}))
        session.add(Job(id="job-1", kind="sft", params={"hyperparameters": {"lr": 1e-4}, "gate": True}))
    with db.session() as session:
        record = session.get(ChatRecord, "chatcmpl-1")
        job = session.get(Job, "job-1")
        assert record is not None and record.messages == messages and record.sampling == {"t": 0.5}
        assert job is not None and job.params["hyperparameters"]["lr"] == 1e-4 and job.params["gate"] is True
        assert job.state == "queued" and job.progress == 0.0  # Python-side defaults on both engines
        # A timestamp filter with a naive UTC datetime (as storage.queries builds them) means UTC on both engines.
        created = job.created_at.replace(tzinfo=UTC) if job.created_at.tzinfo is None else job.created_at
        assert abs((created - datetime.now(UTC)).total_seconds()) < 60
        now = datetime.now(UTC).replace(tzinfo=None)
        count = sa.select(sa.func.count(Job.id))
        assert session.scalar(count.where(Job.created_at >= now - timedelta(minutes=30))) == 1
        assert session.scalar(count.where(Job.created_at >= now + timedelta(minutes=30))) == 0
    db.dispose()


def test_migrations_downgrade_and_upgrade_again(db_url: str) -> None:
    """Every migration's downgrade runs on this engine (the dialect-specific ones included), and upgrade re-creates."""
    from alembic import command

    from assistant.storage.db import alembic_config

    db = Database(db_url)
    db.migrate()
    command.downgrade(alembic_config(db_url), "base")
    assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
    db.migrate()
    assert "chunks" in set(sa.inspect(db.engine).get_table_names())
    db.dispose()
