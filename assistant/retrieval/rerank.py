"""Optional cross-encoder reranking (sentence-transformers `CrossEncoder`).

Contract: `make_reranker(settings)` returns None when `settings.models.reranker` is unset, else a `CrossEncoderReranker`
loaded from a local directory (or the local Hugging Face cache; never downloaded). `score(query, texts)` returns one
relevance score per text, higher is better.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from assistant.errors import ModelNotAvailableError
from assistant.settings import Settings

log = logging.getLogger(__name__)


class CrossEncoderReranker:
    """Scores (query, passage) pairs with a cross-encoder."""

    def __init__(self, model: str | Path, device: str | None = None, batch_size: int = 32) -> None:
        from sentence_transformers import CrossEncoder

        from assistant.startup import default_device

        self.batch_size = batch_size
        try:
            self.model: Any = CrossEncoder(str(model), device=device or default_device())
        except OSError as exc:
            raise ModelNotAvailableError(
                f"reranker '{model}' is neither a local directory nor in the local Hugging Face cache"
            ) from exc
        log.info("reranker %s loaded", model)

    def score(self, query: str, texts: list[str]) -> list[float]:
        if not texts:
            return []
        scores = self.model.predict([(query, passage) for passage in texts], batch_size=self.batch_size)
        return [float(value) for value in scores]


def make_reranker(settings: Settings) -> CrossEncoderReranker | None:
    """The configured reranker, or None."""
    if not settings.models.reranker:
        return None
    return CrossEncoderReranker(Path(settings.models.reranker).expanduser())
