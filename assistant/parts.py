"""The one place that wires the platform's parts from the settings, and the one start-up function.

Contract:
- `startup(settings)` is called once by every entrypoint (the CLI, the job worker, `python -m training.run`, the
  benchmarks' servers): logging, offline mode for the Hugging Face libraries, vLLM's CPU KV-cache size. It is
  idempotent.
- `Parts(settings)` builds each part the first time it is asked for and keeps it: `db` (migrated), `embedder`,
  `index`, `keyword_search`, `reranker`, `retriever`. Nothing is loaded that is not used: `assistant search --mode
  bm25` never loads the embedder's weights twice, the gate never opens an index it does not search. Parts given to
  the constructor (a test's shared embedder, a server's database) are used instead of being built. The ingest service
  and the adapter registry live in their own packages and are built there from a `Parts`
  (`ingest.service.IngestService.from_parts`, `training.registry.AdapterRegistry.from_parts`).
"""

from __future__ import annotations

import logging
import os
import sys
from functools import cached_property
from typing import TYPE_CHECKING, Any

from assistant.settings import Settings

if TYPE_CHECKING:
    from assistant.embedding import Embedder
    from assistant.index import VectorIndex
    from assistant.retrieval import Retriever
    from assistant.storage import Database

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def startup(settings: Settings) -> None:
    """Process-wide set-up every entrypoint shares: logging, offline mode, vLLM's CPU cache size."""
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT, stream=sys.stderr)
    if settings.offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.engine.kv_cache_gib))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Parts:
    """Lazily built, shared parts of one data directory."""

    def __init__(
        self,
        settings: Settings,
        *,
        db: Database | None = None,
        embedder: Embedder | None = None,
        migrate: bool = True,
    ) -> None:
        self.settings = settings
        self._migrate = migrate
        if db is not None:
            self.__dict__["db"] = db
        if embedder is not None:
            self.__dict__["embedder"] = embedder

    @cached_property
    def db(self) -> Database:
        from assistant.storage import Database

        db = Database(self.settings.resolved_database_url)
        if self._migrate:
            db.migrate()
        return db

    @cached_property
    def embedder(self) -> Embedder:
        from assistant.embedding import make_embedder

        return make_embedder(self.settings)

    @cached_property
    def index(self) -> VectorIndex:
        from assistant.index import open_index

        return open_index(self.settings.index_dir, self.embedder.dim, self.settings.ingest.approximate_after)

    @cached_property
    def reranker(self) -> Any:
        from assistant.retrieval.rerank import make_reranker

        return make_reranker(self.settings)

    @cached_property
    def retriever(self) -> Retriever:
        from assistant.retrieval import Retriever

        return Retriever(self.settings, self.db, self.index, self.embedder, self.reranker)
