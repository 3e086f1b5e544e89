"""The sentence-transformers embedder from the registry package: shape, normalisation and token counting."""

from __future__ import annotations

import numpy as np

from assistant.embedding import Embedder
from tests.fixtures.retrieval_env import shared_embedder


def test_minilm_embeds_normalised_float32() -> None:
    embedder = shared_embedder()
    assert isinstance(embedder, Embedder)
    vectors = embedder.embed(["backups run nightly", "paid leave per year", ""])
    assert vectors.dtype == np.float32 and vectors.shape == (3, embedder.dim) == (3, 384)
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_token_budget_excludes_special_tokens() -> None:
    embedder = shared_embedder()
    assert embedder.max_tokens == 254  # max_seq_length 256 minus [CLS] and [SEP]
    assert embedder.count_tokens("hello world") == 2
