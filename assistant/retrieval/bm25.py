"""BM25 search over chunk text with the SQLite FTS5 table `chunks_fts` (migration 0002).

Contract: `Bm25Search.search(query, k, collections)` returns best-first (chunk id, score) pairs, score = -bm25() so
higher is better. With a collection filter only chunks of 'ready' documents come back; without one the status join
is skipped for speed and the caller (the `Retriever` hydration) drops chunks of documents that are not 'ready'.
The query is reduced to its word tokens (stop words removed) joined with OR, each token quoted, so no user input is
interpreted as FTS5 syntax. The FTS table is maintained by triggers on `chunks`, so it never needs a separate sync.

Speed rule: FTS5 scores every chunk that matches any term, so one very common term makes a query scan a large share
of the collection. Terms found in more than `COMMON_SHARE` of the chunks are dropped when at least `KEEP_MIN`
rarer terms remain (their IDF, hence their weight in BM25, is near zero anyway). A term's document frequency is
probed with a bounded lookup (`LIMIT`), so the probe itself never scans more than that share.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from sqlalchemy import text

from assistant.errors import ServiceUnavailableError
from assistant.storage.db import Database

_TOKEN = re.compile(r"\w+", re.UNICODE)
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "she",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


COMMON_SHARE = 0.05  # a term in more than 5% of the chunks adds (almost) nothing to BM25 but costs a long scan
KEEP_MIN = 2  # ...and is dropped only when at least this many rarer terms remain
SMALL_COLLECTION = 5_000  # below this many chunks every term is kept (scans are cheap)
COUNT_TTL_S = 10.0


def query_tokens(query: str) -> list[str]:
    """The query's distinct non-stop-word tokens, in order."""
    tokens: list[str] = []
    for token in _TOKEN.findall(query.lower()):
        if token not in STOP_WORDS and token not in tokens:
            tokens.append(token)
    return tokens


def fts_query(query: str | list[str]) -> str:
    """An FTS5 MATCH expression: the query's distinct non-stop-word tokens (or the given tokens), quoted, OR-ed."""
    tokens = query_tokens(query) if isinstance(query, str) else query
    return " OR ".join(f'"{token}"' for token in tokens)


class Bm25Search:
    """BM25 over `chunks_fts`."""

    def __init__(self, db: Database) -> None:
        if db.engine.dialect.name != "sqlite":
            raise ServiceUnavailableError("BM25 retrieval needs SQLite FTS5; use mode='dense' on this database")
        self.db = db
        self._count: tuple[float, int] = (0.0, 0)

    def chunk_count(self) -> int:
        """Rows in the FTS index (cached for a few seconds)."""
        at, count = self._count
        if time.monotonic() - at > COUNT_TTL_S:
            with self.db.session() as session:
                count = int(session.execute(text("SELECT count(*) FROM chunks")).scalar() or 0)
            self._count = (time.monotonic(), count)
        return count

    def selective_tokens(self, tokens: list[str]) -> list[str]:
        """Drop very common terms when enough rarer ones remain (see the module's speed rule)."""
        total = self.chunk_count()
        if total < SMALL_COLLECTION or len(tokens) <= KEEP_MIN:
            return tokens
        cap = int(total * COMMON_SHARE) + 1
        probe = text("SELECT count(*) FROM (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH :term LIMIT :cap)")
        with self.db.session() as session:
            common = {t for t in tokens if session.execute(probe, {"term": f'"{t}"', "cap": cap}).scalar() == cap}
        rare = [t for t in tokens if t not in common]
        return rare if len(rare) >= KEEP_MIN else tokens

    def search(self, query: str, k: int, collections: Sequence[str] | None = None) -> list[tuple[int, float]]:
        tokens = query_tokens(query)
        if not tokens:
            return []
        match = fts_query(self.selective_tokens(tokens))
        params: dict[str, object] = {"match": match, "k": k}
        if collections:
            names = [f":c{i}" for i in range(len(collections))]
            params.update({f"c{i}": name for i, name in enumerate(collections)})
            sql = (
                "SELECT chunks_fts.rowid, bm25(chunks_fts) AS rank FROM chunks_fts "
                "JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.document_id "
                f"WHERE chunks_fts MATCH :match AND d.status = 'ready' AND c.collection IN ({', '.join(names)}) "
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
