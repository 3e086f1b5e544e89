"""FaissIndex: exact and HNSW structures, removal, filtered search, atomic save and reload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.errors import ConfigError
from assistant.index import FaissIndex, VectorIndex, open_index

DIM = 16


def _vectors(count: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_flat_search_remove_filter_and_reload(tmp_path: Path) -> None:
    index = open_index(tmp_path, DIM, approximate_after=100)
    assert isinstance(index, VectorIndex)
    vectors = _vectors(20)
    index.add(vectors, np.arange(100, 120))
    assert index.kind == "flat" and index.search(vectors[3], 1)[0].id == 103
    assert index.search(vectors[3], 1)[0].score == pytest.approx(1.0, abs=1e-5)
    assert {hit.id for hit in index.search(vectors[3], 5, allowed=np.array([110, 111]))} == {110, 111}
    assert index.remove(np.array([103, 999])) == 1
    assert 103 not in {hit.id for hit in index.search(vectors[3], 20)}
    index.save()
    assert [p.name for p in tmp_path.iterdir()] == ["chunks.faiss.npz"]  # no temp file left behind
    reopened = open_index(tmp_path, DIM, approximate_after=100)
    assert len(reopened) == 19 and reopened.next_id == 120
    assert set(reopened.vectors(np.array([100, 103])).keys()) == {100}


def test_hnsw_tombstones_and_rebuild(tmp_path: Path) -> None:
    vectors = _vectors(50, seed=1)
    index = FaissIndex.build(tmp_path / "chunks.faiss.npz", DIM, vectors, np.arange(1, 51), approximate_after=10)
    assert index.kind == "hnsw"
    index.remove(np.array([5]))
    assert len(index) == 49 and 5 not in index.ids()
    assert 5 not in {hit.id for hit in index.search(vectors[4], 10)}
    assert {hit.id for hit in index.search(vectors[4], 10, allowed=np.array([5, 6, 7]))} <= {6, 7}
    index.save()
    reopened = FaissIndex(tmp_path / "chunks.faiss.npz", DIM, approximate_after=10)
    assert reopened.kind == "hnsw" and len(reopened) == 49
    keep = reopened.ids()
    reopened.approximate_after = 1000
    reopened.rebuild(np.stack([reopened.vectors(keep)[int(i)] for i in keep]), keep)
    assert reopened.kind == "flat" and len(reopened) == 49 and reopened.next_id == 51


def test_dimension_mismatch_is_a_config_error(tmp_path: Path) -> None:
    index = open_index(tmp_path, DIM, 100)
    index.add(_vectors(2), np.array([1, 2]))
    index.save()
    with pytest.raises(ConfigError, match="rebuild"):
        open_index(tmp_path, DIM * 2, 100)
