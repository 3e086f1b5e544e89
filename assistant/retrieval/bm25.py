"""BM25 keyword search on SQLite: the FTS5 table `chunks_fts` (migration 0002), one `KeywordSearch` implementation.

Contract: `Bm25Search.search(query, k, collections)` returns best-first (chunk id, score) pairs, score = -bm25() so
higher is better (see `assistant.retrieval.keyword` for the shared contract, query reduction and speed rule). The
query's tokens are quoted and joined with OR, so no user input is interpreted as FTS5 syntax. With a collection
filter only chunks of 'ready' documents come back; without one the status join is skipped for speed. The FTS table
is maintained by triggers on `chunks`, so it never needs a separate sync.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text

from assistant.errors import ServiceUnavailableError
from assistant.retrieval.keyword import CommonTermPruning, collection_filter, query_tokens
from assistant.storage.db import Database


def fts_query(query: str | list[str]) -> str:
    """An FTS5 MATCH expression: the query's distinct non-stop-word tokens (or the given tokens), quoted, OR-ed."""
    tokens = query_tokens(query) if isinstance(query, str) else query
    return " OR ".join(f'"{token}"' for token in tokens)


class Bm25Search(CommonTermPruning):
    """BM25 over `chunks_fts`."""

    def __init__(self, db: Database) -> None:
        if db.engine.dialect.name != "sqlite":
            raise ServiceUnavailableError(
                "FTS5 BM25 needs SQLite; use assistant.parts.make_keyword_search() for this database"
            )
        self.db = db
        self._count = (0.0, 0)

    def probe_sql(self) -> str:
        return "SELECT count(*) FROM (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH :term LIMIT :cap)"

    def probe_term(self, token: str) -> str:
        return f'"{token}"'

    def search(self, query: str, k: int, collections: Sequence[str] | None = None) -> list[tuple[int, float]]:
        tokens = query_tokens(query)
        if not tokens:
            return []
        params: dict[str, object] = {"match": fts_query(self.selective_tokens(tokens)), "k": k}
        if collections:
            in_list, names = collection_filter(collections)
            params.update(names)
            sql = (
                "SELECT chunks_fts.rowid, bm25(chunks_fts) AS rank FROM chunks_fts "
                "JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.document_id "
                f"WHERE chunks_fts MATCH :match AND d.status = 'ready' AND c.collection IN {in_list} "
                "ORDER BY rank LIMIT :k"
            )
        else:  # no join: FTS5 ranks on its own index; callers drop chunks of documents that are not 'ready'
            sql = (
                "SELECT rowid, bm25(chunks_fts) AS rank FROM chunks_fts "
                "WHERE chunks_fts MATCH :match ORDER BY rank LIMIT :k"
            )
        with self.db.session() as session:
            rows = session.execute(text(sql), params).all()
        return [(int(row[0]), -float(row[1])) for row in rows]
