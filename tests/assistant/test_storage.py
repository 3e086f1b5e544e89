"""Storage: migrations create every table on SQLite (WAL), are idempotent, and sessions roll back on error."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from assistant.storage import ChatRecord, Database, Document


def test_migrate_creates_tables_with_wal(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    db.migrate()
    db.migrate()  # idempotent
    tables = set(sa.inspect(db.engine).get_table_names())
    expected = {"documents", "chunks", "chat_records", "feedback", "preference_pairs", "jobs", "adapters"}
    assert expected <= tables
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_session_rolls_back_on_error(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    db.migrate()
    with db.session() as session:
        session.add(Document(collection="c", source="a.txt", content_hash="h1"))
    with pytest.raises(RuntimeError), db.session() as session:
        session.add(Document(collection="c", source="b.txt", content_hash="h2"))
        session.flush()
        raise RuntimeError("boom")
    with db.session() as session:
        assert [d.source for d in session.scalars(sa.select(Document))] == ["a.txt"]


def test_chat_record_round_trip(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.migrate()
    with db.session() as session:
        session.add(ChatRecord(id="chatcmpl-1", model="m", messages=[{"role": "user", "content": "hi"}], prompt="p"))
    with db.session() as session:
        record = session.get(ChatRecord, "chatcmpl-1")
        assert record is not None and record.messages[0]["content"] == "hi"
