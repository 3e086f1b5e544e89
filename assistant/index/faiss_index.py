"""FAISS implementation of `VectorIndex`: exact or HNSW inner-product search with chunk-row ids, saved atomically.

Contract:
- Structure: `IndexIDMap2(IndexFlatIP)` while the index holds at most `approximate_after` vectors, else
  `IndexIDMap2(IndexHNSWFlat, inner product)`. The structure is chosen when an index is built (`FaissIndex.build`,
  used by rebuilds); adding vectors never switches it.
- Deletion: exact indexes remove vectors; HNSW cannot, so removed ids become tombstones that searches skip and the
  next rebuild drops. Tombstones are saved in the same file as the index.
- Persistence: one file `<index_dir>/chunks.faiss.npz` (the serialized index, tombstones, `next_id`), written to a
  temporary file in the same directory, fsynced and `os.replace`d into place: a crash leaves the old or the new state.
- Threads: every public method holds the index's lock, so searches may run beside an ingest in one process.
- GPU: when `faiss.get_num_gpus() > 0`, unfiltered searches of an exact index run on a GPU copy of the vectors,
  refreshed after mutations; everything else (and every CPU-only machine) uses the CPU index.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import faiss
import numpy as np

from assistant.durable import fsync_dir
from assistant.errors import ConfigError
from assistant.index.vector_index import SearchResult

log = logging.getLogger(__name__)
faiss_any: Any = faiss  # the SWIG module's stubs lack some classes (SearchParametersHNSW)

INDEX_FILE = "chunks.faiss.npz"
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
T = TypeVar("T")


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(self: FaissIndex, *args: object, **kwargs: object) -> T:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


def _as_ids(ids: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))


def _new_structure(dim: int, approximate: bool) -> Any:
    inner: Any
    if approximate:
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        inner = faiss.IndexFlatIP(dim)
    return faiss.IndexIDMap2(inner)


class FaissIndex:
    """A FAISS index of chunk vectors kept in memory and saved atomically to `path`."""

    def __init__(self, path: Path, dim: int, approximate_after: int = 50_000) -> None:
        self.path = path
        self.dim = dim
        self.approximate_after = approximate_after
        self.next_id = 1
        self._lock = threading.RLock()
        self._deleted: set[int] = set()
        self._gpu: Any = None
        self._index: Any = _new_structure(dim, approximate=False)
        if path.exists():
            self._load()

    @classmethod
    def build(
        cls, path: Path, dim: int, vectors: np.ndarray, ids: np.ndarray, approximate_after: int = 50_000
    ) -> FaissIndex:
        """A fresh index over `vectors`, exact or HNSW by their count (not saved until `save()`)."""
        index = cls(path.with_name(f"{path.name}.unused"), dim, approximate_after)
        index.path = path
        index.rebuild(vectors, ids)
        return index

    @_locked
    def rebuild(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Replace the contents: exact or HNSW by count, no tombstones; `next_id` is kept (ids are never reused)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(ids):
            self.dim = int(vectors.shape[1])
        self._index = _new_structure(self.dim, approximate=len(ids) > self.approximate_after)
        self._deleted, self._gpu = set(), None
        self.add(vectors, ids)

    @property
    def kind(self) -> str:
        return "hnsw" if isinstance(self._inner, faiss.IndexHNSW) else "flat"

    @property
    def _inner(self) -> Any:
        return faiss.downcast_index(self._index.index)

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._deleted)

    def _all_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    @_locked
    def ids(self) -> np.ndarray:
        """Ids of the live vectors (tombstones excluded)."""
        all_ids = self._all_ids()
        if not self._deleted:
            return all_ids
        return all_ids[~np.isin(all_ids, np.fromiter(self._deleted, dtype=np.int64))]

    @_locked
    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add vectors under `ids` (new ids only: an id at or above `next_id`, or one never stored)."""
        ids = _as_ids(ids)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        if len(ids) == 0:
            return
        if vectors.shape[1] != self.dim:
            raise ConfigError(f"vectors have dimension {vectors.shape[1]} but the index has {self.dim}: rebuild it")
        self._index.add_with_ids(vectors, ids)
        self.next_id = max(self.next_id, int(ids.max()) + 1)
        self._gpu = None

    @_locked
    def remove(self, ids: np.ndarray) -> int:
        """Remove (exact) or tombstone (HNSW) the given ids; returns how many live vectors went away."""
        ids = _as_ids(ids)
        present = ids[np.isin(ids, self.ids())]
        if len(present) == 0:
            return 0
        if self.kind == "hnsw":
            self._deleted.update(int(i) for i in present)
        else:
            self._index.remove_ids(faiss.IDSelectorBatch(present))
        self._gpu = None
        return len(present)

    @_locked
    def vectors(self, ids: np.ndarray) -> dict[int, np.ndarray]:
        """The stored vectors of those `ids` that are live, by id."""
        wanted = set(_as_ids(ids).tolist()) - self._deleted
        all_ids = self._all_ids()
        if not len(all_ids) or not wanted:
            return {}
        stored = self._inner.reconstruct_n(0, len(all_ids))
        return {int(i): stored[row] for row, i in enumerate(all_ids) if int(i) in wanted}

    @_locked
    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[SearchResult]:
        """Best-first hits for one query vector, restricted to `allowed` ids when given."""
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        k = min(k, len(self))
        if k <= 0:
            return []
        if allowed is None and not self._deleted and self._gpu_ready():
            return self._gpu_search(query, k)
        scores, ids = self._index.search(query, k, params=self._params(allowed))
        return [SearchResult(int(i), float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]

    def _params(self, allowed: np.ndarray | None) -> Any:
        selector: Any = None
        if allowed is not None:
            keep = _as_ids(allowed)
            if self._deleted:
                keep = keep[~np.isin(keep, np.fromiter(self._deleted, dtype=np.int64))]
            selector = faiss.IDSelectorBatch(keep)
        elif self._deleted:
            selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(self._deleted, dtype=np.int64)))
        if selector is None:
            return None
        params: Any = faiss_any.SearchParametersHNSW() if self.kind == "hnsw" else faiss_any.SearchParameters()
        if self.kind == "hnsw":
            params.efSearch = HNSW_EF_SEARCH
        params.sel = selector
        params._selector_ref = selector  # keep the SWIG object alive while FAISS holds a raw pointer
        return params

    def _gpu_ready(self) -> bool:
        if self.kind != "flat" or faiss.get_num_gpus() == 0 or not hasattr(faiss, "StandardGpuResources"):
            return False
        if self._gpu is None:
            try:
                self._gpu = (faiss.StandardGpuResources(), None)
                self._gpu = (self._gpu[0], faiss.index_cpu_to_gpu(self._gpu[0], 0, self._inner))
            except RuntimeError as exc:  # an unsupported build: stay on CPU
                log.warning("FAISS GPU copy failed, searching on CPU: %s", exc)
                self._gpu = False
        return bool(self._gpu)

    def _gpu_search(self, query: np.ndarray, k: int) -> list[SearchResult]:
        scores, rows = self._gpu[1].search(query, k)
        id_map = self._all_ids()
        return [SearchResult(int(id_map[r]), float(s)) for s, r in zip(scores[0], rows[0], strict=True) if r >= 0]

    @_locked
    def save(self) -> None:
        """Persist atomically: temp file in the same directory, fsync, `os.replace`, fsync the directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        deleted = np.array(sorted(self._deleted), dtype=np.int64)
        with open(tmp, "wb") as handle:
            np.savez(handle, index=faiss.serialize_index(self._index), deleted=deleted, next_id=np.int64(self.next_id))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
        log.debug("saved %d vectors (%s) to %s", len(self), self.kind, self.path)

    def _load(self) -> None:
        with np.load(self.path) as stored:
            self._index = faiss.deserialize_index(stored["index"])
            self._deleted = set(stored["deleted"].tolist())
            self.next_id = int(stored["next_id"])
        if self._index.d != self.dim:
            raise ConfigError(
                f"index {self.path} has dimension {self._index.d} but the embedder has {self.dim}: "
                "run `assistant index rebuild` after changing the embedder"
            )


def open_index(index_dir: Path, dim: int, approximate_after: int) -> FaissIndex:
    """The index stored under `index_dir` (an empty exact index when none is there yet)."""
    return FaissIndex(index_dir / INDEX_FILE, dim, approximate_after)
