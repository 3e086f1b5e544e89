"""Data selection beyond dedup: relevance to the company's indexed documents, and diversity over embeddings.

Contract: `refine_selection(selection, run_config, parts)` runs after dedup/quality/length selection on the
training split (the validation split is left as it is, so before/after evaluations stay comparable) and does nothing
unless one of the run options is set:
- relevance (`relevance_threshold` and/or `relevance_top_fraction`): every example is embedded with the platform's
  embedder (`assistant.parts.Parts`) and scored by its best cosine similarity to a chunk of the FAISS
  index of ingested documents; examples below the threshold, or outside the top fraction, are dropped as
  `irrelevant`. An empty index is an error (nothing to be relevant to), raised before any training.
- diversity (`diversity_target`): when more examples remain than the target, `kcenter` keeps the greedy k-center
  set (start from the example nearest the centroid, then repeatedly the one farthest from everything kept) and
  `clusters` runs k-means (k = round(sqrt(target)), seeded) and takes examples round-robin from the clusters, each
  cluster in order of closeness to its centre. The others are dropped as `diversity`.
Dropped examples are counted in the `SelectionReport` under those reasons; `report.details` records the scores,
thresholds and cluster sizes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from assistant.errors import UnprocessableError
from assistant.parts import Parts

log = logging.getLogger(__name__)


def embedding_text(example: Any) -> str:
    """What an example is about: its non-system turns and its (first) answer."""
    turns = getattr(example, "messages", None) or example.prompt
    parts = [m["content"] for m in turns if m["role"] != "system"]
    extra = getattr(example, "completion", None) or getattr(example, "chosen", None)
    return "\n".join([*parts, extra] if extra else parts)


def document_similarity(parts: Parts, vectors: np.ndarray) -> np.ndarray:
    """Best cosine similarity of each vector to an indexed chunk."""
    settings, index = parts.settings, parts.index
    if len(index) == 0:
        raise UnprocessableError(
            f"relevance selection needs indexed documents, and the index in {settings.index_dir} is empty: "
            "ingest documents first or drop --set relevance_threshold/relevance_top_fraction",
            param="relevance_threshold",
        )
    return np.array([max((hit.score for hit in index.search(v, 1)), default=-1.0) for v in vectors])


def relevance_keep(scores: np.ndarray, threshold: float | None, top_fraction: float | None) -> np.ndarray:
    keep = np.ones(len(scores), dtype=bool)
    if threshold is not None:
        keep &= scores >= threshold
    if top_fraction is not None:
        count = max(1, math.ceil(len(scores) * top_fraction))
        order = np.argsort(-scores, kind="stable")
        top = np.zeros(len(scores), dtype=bool)
        top[order[:count]] = True
        keep &= top
    return keep


def kcenter(vectors: np.ndarray, target: int) -> list[int]:
    """Greedy k-center (farthest-point) indices, first the point nearest the centroid."""
    centroid = vectors.mean(axis=0)
    chosen = [int(np.argmin(((vectors - centroid) ** 2).sum(axis=1)))]
    distance = ((vectors - vectors[chosen[0]]) ** 2).sum(axis=1)
    while len(chosen) < min(target, len(vectors)):
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        distance = np.minimum(distance, ((vectors - vectors[nxt]) ** 2).sum(axis=1))
    return sorted(chosen)


def cluster_balanced(vectors: np.ndarray, target: int, seed: int) -> tuple[list[int], list[int]]:
    """Round-robin over k-means clusters; returns kept indices and the cluster sizes."""
    import faiss

    k = max(2, min(len(vectors), round(math.sqrt(target))))
    kmeans = faiss.Kmeans(vectors.shape[1], k, niter=20, seed=seed, verbose=False)
    kmeans.train(np.ascontiguousarray(vectors, dtype=np.float32))
    distances, labels = kmeans.index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    members = [sorted(np.flatnonzero(labels[:, 0] == c), key=lambda i: distances[i, 0]) for c in range(k)]
    kept: list[int] = []
    depth = 0
    while len(kept) < target:
        layer = [int(m[depth]) for m in members if depth < len(m)]
        if not layer:
            break
        kept += layer[: target - len(kept)]
        depth += 1
    return sorted(kept), [len(m) for m in members]


def refine_selection(selection: Any, run_config: Any, parts: Parts) -> Any:
    """Apply relevance and diversity selection to `selection.train` (in place) and report it."""
    threshold = getattr(run_config, "relevance_threshold", None)
    top_fraction = getattr(run_config, "relevance_top_fraction", None)
    target = getattr(run_config, "diversity_target", None)
    relevance = threshold is not None or top_fraction is not None
    if not (relevance or (target is not None and len(selection.train) > target)) or not selection.train:
        return selection
    vectors = parts.embedder.embed([embedding_text(e) for e in selection.train])
    indices = list(range(len(selection.train)))
    if relevance:
        scores = document_similarity(parts, vectors)
        keep = relevance_keep(scores, threshold, top_fraction)
        selection.report.details["relevance"] = _relevance_details(scores, keep, threshold, top_fraction)
        _drop(selection, [i for i in indices if not keep[i]], "irrelevant")
        indices = [i for i in indices if keep[i]]
    if target is not None and len(indices) > target:
        method = getattr(run_config, "diversity_method", "kcenter")
        sub = vectors[indices]
        if method == "clusters":
            picked, sizes = cluster_balanced(sub, target, getattr(run_config, "seed", 42))
            details: dict[str, Any] = {"method": method, "target": target, "cluster_sizes": sizes}
        else:
            picked = kcenter(sub, target)
            details = {"method": method, "target": target}
        kept = {indices[i] for i in picked}
        details.update(kept=len(kept), dropped=len(indices) - len(kept))
        selection.report.details["diversity"] = details
        _drop(selection, [i for i in indices if i not in kept], "diversity")
        indices = sorted(kept)
    selection.train = [selection.train[i] for i in indices]
    selection.report.train = len(selection.train)
    selection.report.kept = selection.report.train + selection.report.validation
    return selection


def _drop(selection: Any, positions: Sequence[int], reason: str) -> None:
    for i in positions:
        selection.report.drop(reason, selection.train[i].origin)


def _relevance_details(scores: np.ndarray, keep: np.ndarray, threshold: float | None,
                       top_fraction: float | None) -> dict[str, Any]:  # fmt: skip
    kept = scores[keep]
    return {
        "threshold": threshold,
        "top_fraction": top_fraction,
        "kept": int(keep.sum()),
        "dropped": int((~keep).sum()),
        "score_mean": float(scores.mean()),
        "score_min": float(scores.min()),
        "score_max": float(scores.max()),
        "kept_min_score": float(kept.min()) if len(kept) else None,
    }
