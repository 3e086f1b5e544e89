"""The one place that wires the platform's parts from the settings, lazily.

Contract: `Parts(settings)` builds each part on first use and keeps it: `db` (the `Database`, migrated to the newest
revision on first use unless `migrate=False`), `embedder` (`make_embedder`; the space check is skipped with
`check_embedder_space=False`, for a rebuild that re-embeds), `index` (the vector index under `index_dir`, of the
embedder's dimension), `keyword` (`make_keyword_search(db)`, this module's factory for the
`assistant.retrieval.keyword.KeywordSearch` protocol: FTS5 BM25 on SQLite, full-text search on PostgreSQL, any other
database refused naming these two), `reranker` (None unless one is configured) and `retriever` (all of the above). An
`embedder` passed in (a benchmark's timing wrapper, a test's shared model) is used instead of building one. Parts of the
layers above the core are attached with `attach(name, build)`: `build(parts)` runs once and its value is kept under
`name` (the ingest service: `ingest.ingest_service.IngestService.of(parts)`; the adapter registry:
`training.registry.AdapterRegistry.of(parts)`), so the server, every CLI command, the worker, the gate and the
evaluations all get their parts from one object of this class and nothing else builds them. Building is
thread-safe (one lock; the server builds from worker threads). `close()` closes attached parts that have a
`close()` (the ingest service's writer lock) and disposes the database engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from assistant.errors import ServiceUnavailableError
from assistant.settings import Settings

if TYPE_CHECKING:
    from assistant.embedding import Embedder
    from assistant.index.vector_index import VectorIndex
    from assistant.retrieval.keyword import KeywordSearch
    from assistant.retrieval.rerank import CrossEncoderReranker
    from assistant.retrieval.retriever import Retriever
    from assistant.storage.db import Database

T = TypeVar("T")

KEYWORD_DIALECTS = ("sqlite", "postgresql")


def make_keyword_search(db: Database) -> KeywordSearch:
    """The keyword search for this database's engine (`assistant.retrieval.keyword`: the protocol it implements)."""
    dialect = db.engine.dialect.name
    if dialect == "sqlite":
        from assistant.retrieval.bm25 import Bm25Search

        return Bm25Search(db)
    if dialect == "postgresql":
        from assistant.retrieval.pg_fulltext import PostgresFullTextSearch

        return PostgresFullTextSearch(db)
    raise ServiceUnavailableError(
        f"keyword search supports the {' and '.join(KEYWORD_DIALECTS)} databases, not {dialect!r}; "
        "use mode='dense' or one of the supported databases"
    )


class Parts:
    """Lazily built database, embedder, index, keyword search, retriever and attached parts (see the contract)."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        migrate: bool = True,
        check_embedder_space: bool = True,
    ) -> None:
        self.settings = settings
        self._migrate = migrate
        self._check_space = check_embedder_space
        self._built: dict[str, Any] = {} if embedder is None else {"embedder": embedder}
        self._lock = threading.RLock()

    def _once(self, name: str, build: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            return cast(T, self._built[name])

    def built(self, name: str) -> bool:
        """Whether the part `name` was built already (nothing is built by asking)."""
        return name in self._built

    @property
    def db(self) -> Database:
        return self._once("db", self._open_db)

    def _open_db(self) -> Database:
        from assistant.storage.db import Database

        db = Database(self.settings.resolved_database_url)
        if self._migrate:
            db.migrate()
        return db

    @property
    def embedder(self) -> Embedder:
        from assistant.embedding import make_embedder

        return self._once("embedder", lambda: make_embedder(self.settings, check_space=self._check_space))

    @property
    def index(self) -> VectorIndex:
        from assistant.index import open_index

        settings = self.settings
        return self._once(
            "index", lambda: open_index(settings.index_dir, self.embedder.dim, settings.ingest.approximate_after)
        )

    @property
    def keyword(self) -> KeywordSearch:
        return self._once("keyword", lambda: make_keyword_search(self.db))

    @property
    def reranker(self) -> CrossEncoderReranker | None:
        from assistant.retrieval.rerank import make_reranker

        return self._once("reranker", lambda: make_reranker(self.settings))

    @property
    def retriever(self) -> Retriever:
        from assistant.retrieval.retriever import Retriever

        return self._once(
            "retriever",
            lambda: Retriever(self.settings, self.db, self.index, self.embedder, self.reranker, keyword=self.keyword),
        )

    def attach(self, name: str, build: Callable[[Parts], T]) -> T:
        """The part `name` of a layer above the core, built once by `build(self)`."""
        return self._once(f"attached:{name}", lambda: build(self))

    def close(self) -> None:
        """Close attached parts that can be closed, then dispose the database engine."""
        with self._lock:
            for name, part in list(self._built.items()):
                if name.startswith("attached:") and callable(getattr(part, "close", None)):
                    part.close()
            db = self._built.get("db")
            if db is not None:
                db.dispose()
            self._built = {k: v for k, v in self._built.items() if k == "embedder"}
