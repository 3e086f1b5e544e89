"""Keyword search on PostgreSQL: built-in full-text search, one `KeywordSearch` implementation.

Contract: `PostgresFullTextSearch.search(query, k, collections)` returns best-first (chunk id, score) pairs, higher is
better (see `assistant.retrieval.keyword` for the shared contract, query reduction and speed rule). It matches the
stored generated column `chunks.text_tsv = to_tsvector('english', text)` (migration 0007, GIN-indexed) against the
query's tokens OR-ed through `websearch_to_tsquery('english', 'a or b or c')`, which never raises on any input, and
ranks with `ts_rank_cd` (cover density, `NORMALIZATION` 1: divided by 1 + log(document length)). `ts_rank_cd` has no
notion of term rarity: on an OR-ed query a word found in every chunk weighs as much as a rare one. So the default
ranking (`RANKING = "idf"`) scores sum over terms of idf(term) * ts_rank_cd(text_tsv, term), with BM25's
idf = ln(1 + (N - df + 0.5) / (df + 0.5)) and each term's df counted in one pass over the matching rows (terms no
chunk has are dropped); `"plain"` is `ts_rank_cd` of the whole OR-ed query. The column is computed by PostgreSQL on
every insert or update of `chunks.text`, so it never needs a separate sync.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

from assistant.errors import ServiceUnavailableError
from assistant.retrieval.keyword import CommonTermPruning, collection_filter, query_tokens
from assistant.storage.db import Database

CONFIG = "english"  # the text search configuration of migration 0007's generated column; both must agree
RANKING = "idf"  # "idf": sum over terms of idf(term) * ts_rank_cd(term); "plain": ts_rank_cd of the OR-ed query
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
        self.normalization = NORMALIZATION
        self.ranking = RANKING
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
        tokens = self.selective_tokens(tokens)
        params: dict[str, object] = {"query": tsquery_text(tokens), "k": k}
        join, where = "", f"c.text_tsv @@ websearch_to_tsquery('{CONFIG}', :query)"
        if collections:
            in_list, names = collection_filter(collections)
            params.update(names)
            join = "JOIN documents d ON d.id = c.document_id "
            where += f" AND d.status = 'ready' AND c.collection IN {in_list}"
        with self.db.session() as session:
            if self.ranking == "idf":
                weights = self._idf_weights(session, tokens)
                if not weights:
                    return []
                params["query"] = tsquery_text(list(weights))
                params.update({f"t{i}": token for i, token in enumerate(weights)})
                params.update({f"w{i}": weight for i, weight in enumerate(weights.values())})
                rank = " + ".join(
                    f"CAST(:w{i} AS float8) * ts_rank_cd(c.text_tsv, plainto_tsquery('{CONFIG}', :t{i}), {self._norm})"
                    for i in range(len(weights))
                )
            else:
                rank = f"ts_rank_cd(c.text_tsv, websearch_to_tsquery('{CONFIG}', :query), {self._norm})"
            sql = f"SELECT c.id, {rank} AS rank FROM chunks c {join}WHERE {where} ORDER BY rank DESC, c.id LIMIT :k"
            rows = session.execute(text(sql), params).all()
        return [(int(row[0]), float(row[1])) for row in rows]

    @property
    def _norm(self) -> int:
        return int(self.normalization)

    def _idf_weights(self, session: Session, tokens: list[str]) -> dict[str, float]:
        """BM25's idf per token, from its document frequency over all chunks; tokens no chunk has are left out."""
        counts = ", ".join(
            f"count(*) FILTER (WHERE text_tsv @@ plainto_tsquery('{CONFIG}', :t{i}))" for i in range(len(tokens))
        )
        sql = f"SELECT {counts} FROM chunks WHERE text_tsv @@ websearch_to_tsquery('{CONFIG}', :query)"
        params = {"query": tsquery_text(tokens), **{f"t{i}": token for i, token in enumerate(tokens)}}
        frequencies = session.execute(text(sql), params).one()
        total = max(self.chunk_count(), max(frequencies))
        return {
            token: math.log(1 + (total - df + 0.5) / (df + 0.5))
            for token, df in zip(tokens, frequencies, strict=True)
            if df
        }
