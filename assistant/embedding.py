"""Text embedders: the `Embedder` protocol and its sentence-transformers implementation.

Contract: `embed(texts)` returns a float32 array of shape (len(texts), dim) whose rows are L2-normalised, so an inner
product is a cosine similarity. `max_tokens` is the most content tokens (special tokens excluded) one text may have
without being truncated by the model; `count_tokens` counts with the model's own tokenizer. `make_embedder(settings)` is
the one place that chooses an implementation; the model is loaded from a local path only (never a hub download).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from assistant.models import resolve_embedder
from assistant.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_MIN_TEXTS = 2_000


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into normalised float32 vectors."""

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


def model_directory(path: Path) -> Path:
    """The sentence-transformers folder inside `path` (registry packages keep it in a `model/` subfolder)."""
    if not (path / "modules.json").is_file() and (path / "model" / "modules.json").is_file():
        return path / "model"
    return path


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEmbedder:
    """A sentence-transformers model, batched, normalised, on CUDA when available."""

    def __init__(self, model_path: Path | str, batch_size: int = 64, device: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.batch_size = batch_size
        self.device = device or default_device()
        self.model: Any = SentenceTransformer(str(model_path), device=self.device)
        self.tokenizer: Any = self.model.tokenizer
        self._dim = int(self.model.get_embedding_dimension() or 0)
        log.info("embedder %s loaded on %s (dim %d)", model_path, self.device, self._dim)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        special = self.tokenizer.num_special_tokens_to_add(pair=False)
        return int(self.model.max_seq_length) - int(special)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])

    def count_tokens_many(self, texts: list[str]) -> list[int]:
        """`count_tokens` of each text, in one batched tokenizer call."""
        if not texts:
            return []
        encoded = self.tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def token_starts(self, text: str) -> list[int]:
        """Character offsets where the tokens of `text` start (one fast-tokenizer call; used by the chunker)."""
        encoded = self.tokenizer(
            text, add_special_tokens=False, truncation=False, verbose=False, return_offsets_mapping=True
        )
        return [int(start) for start, _end in encoded["offset_mapping"]]

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=len(texts) >= PROGRESS_MIN_TEXTS,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def make_embedder(settings: Settings) -> Embedder:
    """The embedder the settings configure (the one factory; tests and services call this)."""
    path = model_directory(resolve_embedder(settings))
    return SentenceTransformerEmbedder(path, batch_size=settings.ingest.embed_batch_size)
