"""Retrieval for the API: the core `Retriever` run off the event loop, scoped to the collections a key may read.

Contract: `RetrievalService.scope(requested, principal, known)` checks that each named collection is readable by the
key (403, checked first so a member learns nothing about collections outside its scope) and exists (404; among
`known` when the caller already read `collections()`, so a chat reads them once); with none named it is every
collection the key may read. `search(query, k, collections, mode)` runs the search in a worker
thread holding the index lock shared (`IndexLock.read`: searches run side by side; an index write step, during which
the FAISS index is not safe to search, excludes them), and records the retrieval latency metric; a member key's hits
come without corpus-wide keyword scores.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from sqlalchemy import select

from assistant.errors import NotFoundError
from assistant.index.locking import IndexLock
from assistant.retrieval import Hit, Retriever
from assistant.storage import Database, Document
from serving.principal import Principal
from serving.prometheus_metrics import Metrics


class RetrievalService:
    def __init__(self, retriever: Retriever, db: Database, lock: IndexLock, metrics: Metrics) -> None:
        self.retriever = retriever
        self.db = db
        self.lock = lock
        self.metrics = metrics

    def collections(self) -> set[str]:
        with self.db.session() as session:
            return set(session.scalars(select(Document.collection).distinct()).all())

    def scope(
        self, requested: Sequence[str] | None, principal: Principal, known: set[str] | None = None
    ) -> list[str] | None:
        """The collections a request searches: checked to be readable by the key, then to exist (among `known`, the
        stored collections when the caller has read them already)."""
        allowed = principal.check_collections(list(requested) if requested is not None else None)
        if requested is not None:
            unknown = sorted(set(requested) - (self.collections() if known is None else known))
            if unknown:
                raise NotFoundError(f"unknown collection(s): {', '.join(unknown)}", param="collections")
        return allowed

    async def search(
        self,
        query: str,
        k: int | None,
        collections: list[str] | None,
        mode: str = "hybrid",
        principal: Principal | None = None,
    ) -> list[Hit]:
        """The hits; a member `principal` gets them without the scores that depend on every collection's keyword
        statistics (`Hit.without_corpus_scores`), so another team's uploads never move its scores."""
        started = time.perf_counter()
        hits = await asyncio.to_thread(self._search, query, k, collections, mode)
        self.metrics.retrieval.observe(time.perf_counter() - started)
        if principal is not None and not principal.is_admin:
            hits = [hit.without_corpus_scores() for hit in hits]
        return hits

    def _search(self, query: str, k: int | None, collections: list[str] | None, mode: str) -> list[Hit]:
        with self.lock.read():  # searches run side by side; only an index write step excludes them
            return self.retriever.search(query, k=k, collections=collections, mode=mode)
