"""Rank fusion of dense and BM25 candidate lists.

Contract: both functions take candidate lists ordered best-first as (chunk id, score) pairs and return fused scores
by chunk id (higher is better). RRF uses only ranks: sum of 1 / (rrf_k + rank). Weighted fusion min-max normalises
each list's scores to [0, 1] and combines `dense_weight * dense + (1 - dense_weight) * bm25` (a chunk missing from a
list gets 0 there).
"""

from __future__ import annotations

from collections.abc import Sequence

Ranked = Sequence[tuple[int, float]]


def reciprocal_rank_fusion(rankings: Sequence[Ranked], rrf_k: int = 60) -> dict[int, float]:
    """Reciprocal rank fusion of any number of best-first lists (ranks start at 1)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (chunk_id, _score) in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (rrf_k + rank)
    return fused


def min_max(ranking: Ranked) -> dict[int, float]:
    """Scores scaled to [0, 1] (all 1.0 when every score is equal)."""
    if not ranking:
        return {}
    scores = [score for _id, score in ranking]
    low, high = min(scores), max(scores)
    span = high - low
    return {chunk_id: (score - low) / span if span > 0 else 1.0 for chunk_id, score in ranking}


def weighted_fusion(dense: Ranked, bm25: Ranked, dense_weight: float = 0.5) -> dict[int, float]:
    """Normalised weighted score combination."""
    dense_norm, bm25_norm = min_max(dense), min_max(bm25)
    fused: dict[int, float] = {}
    for chunk_id in dense_norm.keys() | bm25_norm.keys():
        fused[chunk_id] = dense_weight * dense_norm.get(chunk_id, 0.0) + (1 - dense_weight) * bm25_norm.get(
            chunk_id, 0.0
        )
    return fused


def order(fused: dict[int, float]) -> list[tuple[int, float]]:
    """Fused scores best-first (ties broken by chunk id for determinism)."""
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))
