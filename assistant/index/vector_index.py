"""The vector index protocol the ingest service and the retriever program against.

Contract: vectors are float32, L2-normalised, searched by inner product (= cosine). Every vector carries an int64 id
equal to its chunk row id; ids are never reused while the index lives (`next_id` only grows). Mutations change the
in-memory index only; `save()` persists the whole index atomically, so the file on disk is always one complete
state. `search` may be restricted to `allowed` ids (a collection filter) and returns best-first results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SearchResult:
    """One dense hit: chunk id and cosine similarity."""

    id: int
    score: float


@runtime_checkable
class VectorIndex(Protocol):
    """A mutable id -> vector index with atomic persistence."""

    dim: int
    next_id: int

    @property
    def kind(self) -> str: ...

    def __len__(self) -> int: ...

    def ids(self) -> np.ndarray: ...

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> int: ...

    def vectors(self, ids: np.ndarray) -> dict[int, np.ndarray]: ...

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[SearchResult]: ...

    def rebuild(self, vectors: np.ndarray, ids: np.ndarray) -> None: ...

    def save(self) -> None: ...
