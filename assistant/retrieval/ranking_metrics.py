"""Ranking metrics for retrieval evaluation (one gold item per query, as in SQuAD).

Contract: each ranking is a best-first list of item keys (e.g. the gold-passage key of each hit, duplicates allowed:
only the first occurrence counts). Recall@k = share of queries whose gold is in the top k; MRR@10 = mean of 1/rank
within the top 10; nDCG@10 with one relevant item = mean of 1/log2(rank + 1) within the top 10.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RankingScores:
    """Aggregate retrieval metrics over `queries` queries."""

    queries: int
    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    mrr_at_10: float
    ndcg_at_10: float


def dedupe(ranking: Sequence[Hashable]) -> list[Hashable]:
    """First occurrences only, in order."""
    seen: set[Hashable] = set()
    return [key for key in ranking if not (key in seen or seen.add(key))]  # type: ignore[func-returns-value]


def gold_rank(ranking: Sequence[Hashable], gold: Hashable) -> int | None:
    """1-based rank of `gold` in the de-duplicated ranking, or None."""
    unique = dedupe(ranking)
    return unique.index(gold) + 1 if gold in unique else None


def score_rankings(rankings: Sequence[Sequence[Hashable]], golds: Sequence[Hashable]) -> RankingScores:
    """Recall@1/5/10, MRR@10 and nDCG@10 of `rankings` against one gold key each."""
    ranks = [gold_rank(ranking, gold) for ranking, gold in zip(rankings, golds, strict=True)]
    count = max(len(ranks), 1)

    def recall(k: int) -> float:
        return sum(1 for r in ranks if r is not None and r <= k) / count

    top10 = [r for r in ranks if r is not None and r <= 10]
    return RankingScores(
        queries=len(ranks),
        recall_at_1=recall(1),
        recall_at_5=recall(5),
        recall_at_10=recall(10),
        mrr_at_10=sum(1 / r for r in top10) / count,
        ndcg_at_10=sum(1 / math.log2(r + 1) for r in top10) / count,
    )
