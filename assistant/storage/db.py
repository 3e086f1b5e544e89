"""Database access: one `Database` per process, built from a SQLAlchemy URL.

Contract: `Database(url).migrate()` brings the schema to the newest Alembic revision (idempotent, safe to call at every
start); `db.session()` is a context manager that commits on success and rolls back on error. SQLite files get WAL
journaling, foreign keys and a busy timeout so the server, the CLI and a worker process can share one file.
PostgreSQL (`postgresql+psycopg://user@host/db`, the `postgres` extra) is the second supported engine: sessions run
in UTC (naive timestamps in filters mean UTC on both engines) and pooled connections are checked before use, so
several server processes and workers on other machines can share one database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _engine_options(url: str) -> dict[str, Any]:
    if not url.startswith("postgresql"):
        return {}
    # UTC sessions: filters compare timestamptz columns with naive UTC datetimes (see storage.queries).
    return {"pool_pre_ping": True, "connect_args": {"options": "-c timezone=UTC"}}


class Database:
    """Engine + session factory for one database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True, **_engine_options(url))
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, future=True)

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision."""
        from alembic import command

        command.upgrade(alembic_config(self.url), "head")

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> Any:
    """An Alembic config pointing at the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config
