"""The `Retriever`: dense + keyword candidates, fusion, optional rerank and per-document diversity.

Contract: `search(query, k=None, collections=None, mode="hybrid")` embeds the query once, takes `retrieval.dense_k`
dense and `retrieval.bm25_k` keyword candidates (`assistant.parts.make_keyword_search`: FTS5 BM25 on SQLite, full-text
search on PostgreSQL; restricted to `collections` when given), fuses them with `retrieval.fusion` ('weighted' or 'rrf'),
reranks the best `retrieval.rerank_k` with the cross-encoder when one is configured, keeps at most
`retrieval.max_per_document` hits per document, and returns the best `k` (`retrieval.top_k` by default). Dense hits
below `retrieval.min_score` are dropped. Only the rows of the hits returned (or of the rerank/diversity pool) are
read from the database. The retriever only reads: it is safe beside an ingest in the same process (chunks of
documents not 'ready' are skipped).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
from sqlalchemy import select

from assistant.embedding import Embedder
from assistant.errors import InvalidRequestError
from assistant.index.vector_index import VectorIndex
from assistant.retrieval.fusion import order, reciprocal_rank_fusion, weighted_fusion
from assistant.retrieval.hits import Hit
from assistant.retrieval.keyword import KeywordSearch
from assistant.retrieval.rerank import CrossEncoderReranker
from assistant.settings import Settings
from assistant.storage.db import Database
from assistant.storage.orm import Chunk, Document

log = logging.getLogger(__name__)

SearchMode = Literal["hybrid", "dense", "bm25"]
MODES: tuple[str, ...] = ("hybrid", "dense", "bm25")


class Retriever:
    """Hybrid retrieval over one database + vector index."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        index: VectorIndex,
        embedder: Embedder,
        reranker: CrossEncoderReranker | None = None,
        *,
        keyword: KeywordSearch,
    ) -> None:
        self.options = settings.retrieval
        self.db = db
        self.index = index
        self.embedder = embedder
        self.reranker = reranker
        self.keyword = keyword  # FTS5 BM25 on SQLite, full-text search on PostgreSQL (assistant.parts picks it)
        # Keyword search (database) and the query embedding (torch) both release the GIL: hybrid runs them side by side.
        self._sparse_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bm25")

    def search(
        self, query: str, k: int | None = None, collections: Sequence[str] | None = None, mode: str = "hybrid"
    ) -> list[Hit]:
        """The best `k` hits for `query` (see the module contract)."""
        if mode not in MODES:
            raise InvalidRequestError(f"mode must be one of {', '.join(MODES)}, not {mode!r}", param="mode")
        if not query.strip():
            raise InvalidRequestError("the query is empty", param="query")
        k = k or self.options.top_k
        sparse_future = (
            self._sparse_pool.submit(self.keyword.search, query, self.options.bm25_k, collections)
            if mode != "dense"
            else None
        )
        dense = self.dense_candidates(query, collections) if mode != "bm25" else []
        sparse = sparse_future.result() if sparse_future is not None else []
        ranked = self._fuse(dense, sparse, mode)
        scores = (dict(dense), dict(sparse), mode == "hybrid")
        window = self._window(k, len(ranked))
        hits = self._hydrate(ranked[:window], *scores)
        if len(hits) < window < len(ranked):  # some candidates were not 'ready': look at all of them
            hits = self._hydrate(ranked, *scores)
        if self.reranker is not None:
            hits = self._rerank(query, hits)
        return self._diversify(hits)[:k]

    def dense_candidates(self, query: str, collections: Sequence[str] | None = None) -> list[tuple[int, float]]:
        """Best-first (chunk id, cosine) pairs from the vector index."""
        vector = self.embedder.embed([query])[0]
        allowed = self._collection_ids(collections) if collections else None
        results = self.index.search(vector, self.options.dense_k, allowed=allowed)
        return [(r.id, r.score) for r in results if r.score >= self.options.min_score]

    def _window(self, k: int, available: int) -> int:
        """How many fused candidates need their rows: k, the rerank pool, or all of them for diversity."""
        if self.options.max_per_document is not None:
            return available
        return max(k, self.options.rerank_k) if self.reranker is not None else k

    def _collection_ids(self, collections: Sequence[str]) -> np.ndarray:
        with self.db.session() as session:
            ids = session.scalars(select(Chunk.id).where(Chunk.collection.in_(list(collections)))).all()
        return np.asarray(ids, dtype=np.int64)

    def _fuse(
        self, dense: list[tuple[int, float]], sparse: list[tuple[int, float]], mode: str
    ) -> list[tuple[int, float]]:
        if mode == "dense":
            return dense
        if mode == "bm25":
            return sparse
        if self.options.fusion == "weighted":
            return order(weighted_fusion(dense, sparse, self.options.dense_weight))
        return order(reciprocal_rank_fusion([dense, sparse], self.options.rrf_k))

    def _hydrate(
        self, ranked: list[tuple[int, float]], dense: dict[int, float], sparse: dict[int, float], fused: bool
    ) -> list[Hit]:
        rows = self._rows([chunk_id for chunk_id, _ in ranked])
        hits = []
        for chunk_id, score in ranked:
            if chunk_id not in rows:
                continue
            hit = _hit(rows[chunk_id], score, dense.get(chunk_id), sparse.get(chunk_id))
            hit.fused_score = score if fused else None
            hits.append(hit)
        return hits

    def _rows(self, ids: list[int]) -> dict[int, Any]:
        """Citation columns of the given chunks of 'ready' documents, by chunk id."""
        if not ids:
            return {}
        statement = (
            select(*HIT_COLUMNS)
            .join(Document, Document.id == Chunk.document_id)
            .where(Chunk.id.in_(ids), Document.status == "ready")
        )
        with self.db.session() as session:
            return {row.chunk_id: row for row in session.execute(statement).all()}

    def _rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        assert self.reranker is not None
        head, tail = hits[: self.options.rerank_k], hits[self.options.rerank_k :]
        for hit, score in zip(head, self.reranker.score(query, [h.text for h in head]), strict=True):
            hit.rerank_score = hit.score = score
        return sorted(head, key=lambda h: -h.score) + tail

    def _diversify(self, hits: list[Hit]) -> list[Hit]:
        limit = self.options.max_per_document
        if limit is None:
            return hits
        taken: dict[str, int] = {}
        kept = []
        for hit in hits:
            if taken.get(hit.document_id, 0) < limit:
                taken[hit.document_id] = taken.get(hit.document_id, 0) + 1
                kept.append(hit)
        return kept


HIT_COLUMNS = (
    Chunk.id.label("chunk_id"),
    Chunk.text,
    Chunk.document_id,
    Document.title,
    Document.source,
    Chunk.collection,
    Chunk.page,
    Chunk.section,
    Chunk.char_start,
    Chunk.char_end,
)


def _hit(row: Any, score: float, dense: float | None, sparse: float | None) -> Hit:
    return Hit(
        chunk_id=row.chunk_id,
        text=row.text,
        document_id=row.document_id,
        title=row.title,
        source=row.source,
        collection=row.collection,
        page=row.page,
        section=row.section,
        char_start=row.char_start,
        char_end=row.char_end,
        score=score,
        dense_score=dense,
        bm25_score=sparse,
    )
