"""Keyword search on PostgreSQL: built-in full-text search, one `KeywordSearch` implementation.

Contract: `PostgresFullTextSearch.search(query, k, collections)` returns best-first (chunk id, score) pairs, higher is
better (see `assistant.retrieval.keyword` for the shared contract, query reduction and speed rule). It matches the
stored generated column `chunks.text_tsv = to_tsvector('english', text)` (migration 0007, GIN-indexed) against the
query's tokens OR-ed through `websearch_to_tsquery('english', 'a or b or c')`, which never raises on any input. The
column is computed by PostgreSQL on every insert or update of `chunks.text`, so it never needs a separate sync.

Ranking (`RANKING`): PostgreSQL's `ts_rank_cd` has no notion of term rarity, so on an OR-ed query a word found in
every chunk weighs as much as a rare one (measured on the SQuAD half: recall@5 0.75 against FTS5's 0.94). The
default, "bm25", is Okapi BM25 computed in SQL like FTS5's `bm25()`: per term, idf = ln(1 + (N - df + 0.5) /
(df + 0.5)) with df counted in one pass over the matching rows, the term frequency read with `ts_rank_cd` (all
weights 1, no normalization: exactly the count), k1 = 1.2, b = 0.75, document length in characters against the mean.
"idf" is sum of idf(term) * ts_rank_cd(term, `NORMALIZATION`); "plain" is `ts_rank_cd` of the whole OR-ed query.
`bench/bench_keyword.py` measures all three against FTS5.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

from assistant.errors import ServiceUnavailableError
from assistant.retrieval.keyword import COUNT_TTL_S, CommonTermPruning, collection_filter, query_tokens
from assistant.storage.db import Database

CONFIG = "english"  # the text search configuration of migration 0007's generated column; both must agree
RANKING = "bm25"  # "bm25" | "idf" | "plain": see the module contract
K1, B = 1.2, 0.75  # BM25's term-frequency saturation and length normalization (FTS5's bm25() defaults)
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
        self._mean = (0.0, 1.0)

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
            if self.ranking in ("bm25", "idf"):
                weights = self._idf_weights(session, tokens)
                if not weights:
                    return []
                params["query"] = tsquery_text(list(weights))
                params.update({f"t{i}": token for i, token in enumerate(weights)})
                params.update({f"w{i}": weight for i, weight in enumerate(weights.values())})
                params["avgdl"] = self._mean_length()
                rank = " + ".join(self._term_score(i) for i in range(len(weights)))
            else:
                rank = f"ts_rank_cd(c.text_tsv, websearch_to_tsquery('{CONFIG}', :query), {self._norm})"
            sql = f"SELECT c.id, {rank} AS rank FROM chunks c {join}WHERE {where} ORDER BY rank DESC, c.id LIMIT :k"
            rows = session.execute(text(sql), params).all()
        return [(int(row[0]), float(row[1])) for row in rows]

    @property
    def _norm(self) -> int:
        return int(self.normalization)

    def _term_score(self, i: int) -> str:
        """SQL for token i's share of the rank (`:w{i}` = its idf)."""
        term = f"plainto_tsquery('{CONFIG}', :t{i})"
        if self.ranking == "idf":
            return f"CAST(:w{i} AS float8) * ts_rank_cd(c.text_tsv, {term}, {self._norm})"
        # With every weight 1 and no normalization, ts_rank_cd of a one-term query is the term's frequency.
        tf = f"ts_rank_cd('{{1,1,1,1}}', c.text_tsv, {term}, 0)"
        norm = f"{K1} * (1 - {B} + {B} * length(c.text) / CAST(:avgdl AS float8))"
        return f"CAST(:w{i} AS float8) * {tf} * {K1 + 1} / ({tf} + {norm})"

    def _mean_length(self) -> float:
        """Mean chunk length in characters (BM25's average document length; cached like the chunk count)."""
        at, mean = self._mean
        if time.monotonic() - at > COUNT_TTL_S:
            with self.db.session() as session:
                mean = float(session.execute(text("SELECT avg(length(text)) FROM chunks")).scalar() or 1.0)
            self._mean = (time.monotonic(), mean)
        return max(mean, 1.0)

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
