"""Keyword search on PostgreSQL: built-in full-text search, one `KeywordSearch` implementation.

Contract: `PostgresFullTextSearch.search(query, k, collections)` returns best-first (chunk id, score) pairs, higher is
better (see `assistant.retrieval.keyword` for the shared contract, query reduction and speed rule). It matches the
stored generated column `chunks.text_tsv = to_tsvector('english', text)` (migration 0007, GIN-indexed) against the
query's tokens OR-ed through `websearch_to_tsquery('english', 'a or b or c')`, which never raises on any input, and
ranks by `ts_rank_cd` (cover density) with `NORMALIZATION` (1: divide by 1 + log(document length)). The column is
computed by PostgreSQL on every insert or update of `chunks.text`, so it never needs a separate sync.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text

from assistant.errors import ServiceUnavailableError
from assistant.retrieval.keyword import CommonTermPruning, collection_filter, query_tokens
from assistant.storage.db import Database

CONFIG = "english"  # the text search configuration of migration 0007's generated column; both must agree
NORMALIZATION = 1  # ts_rank_cd normalization bits: 1 = divide by 1 + log(document length), like BM25's length norm


def tsquery_text(tokens: list[str]) -> str:
    """`websearch_to_tsquery` input that OR-s the tokens (they are word tokens: no other syntax can appear)."""
    return " or ".join(tokens)


class PostgresFullTextSearch(CommonTermPruning):
    """`ts_rank_cd` over the GIN-indexed `chunks.text_tsv`."""

    def __init__(self, db: Database) -> None:
        if db.engine.dialect.name != "postgresql":
            raise ServiceUnavailableError("PostgreSQL full-text search needs a PostgreSQL database")
        self.db = db
        self._count = (0.0, 0)

    def probe_sql(self) -> str:
        return (
            "SELECT count(*) FROM (SELECT 1 FROM chunks "
            f"WHERE text_tsv @@ websearch_to_tsquery('{CONFIG}', :term) LIMIT :cap) AS hits"
        )

    def search(self, query: str, k: int, collections: Sequence[str] | None = None) -> list[tuple[int, float]]:
        tokens = query_tokens(query)
        if not tokens:
            return []
        params: dict[str, object] = {"query": tsquery_text(self.selective_tokens(tokens)), "k": k}
        where = "c.text_tsv @@ q.query"
        join = ""
        if collections:
            in_list, names = collection_filter(collections)
            params.update(names)
            join = "JOIN documents d ON d.id = c.document_id "
            where += f" AND d.status = 'ready' AND c.collection IN {in_list}"
        sql = (
            f"SELECT c.id, ts_rank_cd(c.text_tsv, q.query, {NORMALIZATION}) AS rank "
            f"FROM websearch_to_tsquery('{CONFIG}', :query) AS q(query) CROSS JOIN chunks c {join}"
            f"WHERE {where} ORDER BY rank DESC, c.id LIMIT :k"
        )
        with self.db.session() as session:
            rows = session.execute(text(sql), params).all()
        return [(int(row[0]), float(row[1])) for row in rows]
