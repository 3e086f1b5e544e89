"""BM25 search over chunk text with the SQLite FTS5 table `chunks_fts` (migration 0002).

Contract: `Bm25Search.search(query, k, collections)` returns best-first (chunk id, score) pairs, score = -bm25() so
higher is better. With a collection filter only chunks of 'ready' documents come back; without one the status join
is skipped for speed and the caller (the `Retriever` hydration) drops chunks of documents that are not 'ready'.
The query is reduced to its word tokens (stop words removed) joined with OR, each token quoted, so no user input is
interpreted as FTS5 syntax. The FTS table is maintained by triggers on `chunks`, so it never needs a separate sync.
"""

from __future__ import annotations

import re
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


def fts_query(query: str) -> str:
    """An FTS5 MATCH expression: the query's distinct non-stop-word tokens, quoted, OR-ed."""
    tokens: list[str] = []
    for token in _TOKEN.findall(query.lower()):
        if token not in STOP_WORDS and token not in tokens:
            tokens.append(token)
    return " OR ".join(f'"{token}"' for token in tokens)


class Bm25Search:
    """BM25 over `chunks_fts`."""

    def __init__(self, db: Database) -> None:
        if db.engine.dialect.name != "sqlite":
            raise ServiceUnavailableError("BM25 retrieval needs SQLite FTS5; use mode='dense' on this database")
        self.db = db

    def search(self, query: str, k: int, collections: Sequence[str] | None = None) -> list[tuple[int, float]]:
        match = fts_query(query)
        if not match:
            return []
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
