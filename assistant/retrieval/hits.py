"""The retrieval result type.

Contract: a `Hit` is one chunk with its citation data and scores. `score` is the value the hits are ordered by (the
rerank score when a reranker ran, else the fused score in hybrid mode, else the single mode's score); the component
scores are None where that retriever did not return the chunk. `without_corpus_scores()` is the hit as a member
key sees it: the keyword and fused scores depend on statistics of every collection (document frequencies, lengths),
so another team's uploads would move them; they are dropped and `score` becomes the dense (cosine) score, which
depends on the chunk and the query alone. The order of the hits is unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass
class Hit:
    """One retrieved chunk with its citation data and scores."""

    chunk_id: int
    text: str
    document_id: str
    title: str
    source: str
    collection: str
    page: int | None
    section: str | None
    char_start: int
    char_end: int
    score: float = 0.0
    dense_score: float | None = None
    bm25_score: float | None = None
    fused_score: float | None = None
    rerank_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def without_corpus_scores(self) -> Hit:
        return replace(self, score=self.dense_score or 0.0, bm25_score=None, fused_score=None)
