"""`ingest.pipeline.pipelined`: embedding of a group overlaps the storing of the previous one; order is kept."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np

from ingest.pipeline import pipelined


def test_next_group_is_embedded_while_the_previous_one_is_stored() -> None:
    embedding_started = {n: threading.Event() for n in range(4)}
    overlapped: list[bool] = []

    def embed(group: int) -> np.ndarray:
        embedding_started[group].set()
        return np.full((1, 2), group, dtype=np.float32)

    def store(group: int, vectors: Future[np.ndarray]) -> list[tuple[int, float]]:
        if group + 1 in embedding_started:  # the next group's embedding runs before this store returns
            overlapped.append(embedding_started[group + 1].wait(timeout=10))
        return [(group, float(vectors.result()[0, 0]))]

    assert list(pipelined(range(4), embed, store)) == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)]
    assert overlapped == [True, True, True]


def test_an_embedding_error_reaches_store_as_the_future_exception() -> None:
    def embed(group: int) -> np.ndarray:
        if group == 1:
            raise ValueError("bad batch")
        return np.zeros((1, 2), dtype=np.float32)

    def store(group: int, vectors: Future[np.ndarray]) -> list[str]:
        return [f"{group}:{type(vectors.exception()).__name__ if vectors.exception() else 'ok'}"]

    assert list(pipelined([0, 1, 2], embed, store)) == ["0:ok", "1:ValueError", "2:ok"]
    assert list(pipelined([], embed, store)) == []
