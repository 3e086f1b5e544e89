"""Keyword (lexical) search behind one protocol, with one implementation per database engine.

Contract: a `KeywordSearch` has `search(query, k, collections) -> [(chunk id, score), ...]`, best first, higher score
is better; scores are comparable within one result list only (the retriever's fusion normalises or ranks them).
With a collection filter only chunks of 'ready' documents come back; without one, the caller (the `Retriever`
hydration) drops chunks of documents that are not 'ready'. The implementation is picked by the wiring place
(`assistant.parts.make_keyword_search`, from the database's SQLAlchemy dialect): SQLite -> FTS5 BM25
(`bm25.Bm25Search`, migration 0002), PostgreSQL -> built-in full-text search ranked by `ts_rank_cd`
(`pg_fulltext.PostgresFullTextSearch`, migration 0007). This module holds the protocol and what both share, so the
implementations import it and it imports neither.

Both implementations share the query reduction (`query_tokens`: distinct word tokens minus stop words, OR-ed, so
no user input is ever interpreted as query syntax) and the speed rule (`CommonTermPruning`): a search engine scores
every row that matches any term, so one very common term makes a query scan a large share of the collection. Terms
found in more than `COMMON_SHARE` of the chunks are dropped when at least `KEEP_MIN` rarer terms remain (their IDF,
hence their weight, is near zero anyway). A term's document frequency is probed with a bounded lookup (`LIMIT`), so
the probe itself never scans more than that share.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import text

from assistant.storage.db import Database

_TOKEN = re.compile(r"\w+", re.UNICODE)
_STOP = """a an and are as at be but by did do does for from had has have he her his how i if in into is it its of on or
she that the their them then there these they this to was were what when where which who whom why will with you your"""
STOP_WORDS = frozenset(_STOP.split())

COMMON_SHARE = 0.05  # a term in more than 5% of the chunks adds (almost) nothing to the rank but costs a long scan
KEEP_MIN = 2  # ...and is dropped only when at least this many rarer terms remain
SMALL_COLLECTION = 5_000  # below this many chunks every term is kept (scans are cheap)
COUNT_TTL_S = 10.0


class KeywordSearch(Protocol):
    """Lexical search over chunk text (see the module contract)."""

    def search(self, query: str, k: int, collections: Sequence[str] | None = None) -> list[tuple[int, float]]: ...


MAX_QUERY_TERMS = 64
"""Keyword terms searched per query: the first 64 distinct ones. A question has a handful; a pasted page of thousands
of distinct words would otherwise be searched (and probed for pruning) term by term while other searches wait."""


def query_tokens(query: str) -> list[str]:
    """The query's distinct non-stop-word tokens, lower-cased, in order; at most `MAX_QUERY_TERMS` of them."""
    tokens: dict[str, None] = {}
    for token in _TOKEN.finditer(query.lower()):
        word = token.group(0)
        if word not in STOP_WORDS:
            tokens[word] = None
            if len(tokens) == MAX_QUERY_TERMS:
                break
    return list(tokens)


class CommonTermPruning:
    """The shared speed rule; subclasses give the bounded probe that counts a term's matching chunks."""

    db: Database
    _count: tuple[float, int] = (0.0, 0)

    def probe_sql(self) -> str:
        """SQL counting at most `:cap` chunks that match the single term `:term`."""
        raise NotImplementedError

    def probe_term(self, token: str) -> str:
        """The `:term` parameter for one token."""
        return token

    def chunk_count(self) -> int:
        """Rows in `chunks` (cached for a few seconds)."""
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
        probe = text(self.probe_sql())
        with self.db.session() as session:
            common = {
                t for t in tokens if session.execute(probe, {"term": self.probe_term(t), "cap": cap}).scalar() == cap
            }
        rare = [t for t in tokens if t not in common]
        return rare if len(rare) >= KEEP_MIN else tokens


def collection_filter(collections: Sequence[str]) -> tuple[str, dict[str, object]]:
    """An `IN (...)` list of bound parameters for the collection names, and its parameters."""
    names = [f":c{i}" for i in range(len(collections))]
    return f"({', '.join(names)})", {f"c{i}": name for i, name in enumerate(collections)}
