"""The ingest service: files in, chunk rows + vectors out, kept consistent across crashes (a facade).

Contract (the CLI and the REST layer call these, nothing else):
- `IngestService.of(parts)` is the service over the parts of `assistant.parts.Parts` (database, vector index,
  embedder), built once per `Parts`; it runs `recover()` first. `open(settings, embedder=None)` = `of(Parts(...))`.
- `ingest_paths(paths, collection, on_progress=None) -> IngestReport`: files, folders (recursive, hidden files
  skipped) and globs. `on_progress(IngestProgress)` is called, one call at a time, as each file gets its final
  result (failed and unchanged files as soon as they are read; stored ones when their group is written) and, from
  the embedding thread, after each `EMBED_SLICE` chunks embedded, with the counts so far: files done of the total
  found, chunks stored, chunks embedded.
- `ingest_file(name, data, collection) -> FileResult`: one uploaded file; `ingest_files` several, pipelined.
  Errors are per file (`FileResult.failure` with the `assistant.errors` type and HTTP status); a failing file never
  changes stored data.
- Incremental: a document is identified by (collection, source). Same bytes again = 'unchanged' (no-op); changed
  bytes = 'replaced' (its chunk rows and vectors are swapped, the document id stays); the same bytes under another
  source in the collection = 'duplicate' (skipped). Exact duplicate chunks (SHA-256) and near duplicates (MinHash
  LSH, `ingest.near_duplicate_threshold`) of chunks already in the collection are dropped and reported.
- `delete_document(doc_id)` removes the row, its chunk rows and their vectors; `rebuild_index()` rebuilds the index
  from the rows (flat or HNSW by size, tombstones dropped, missing vectors re-embedded); `check_index()` reports
  whether index and rows agree; `recover()` repairs what an interrupted run left.

The work is done by two parts: `ingest.preparing.FilePreparer` (parse, clean, chunk, deduplicate: no writes) and
`ingest.store.DocumentStore` (the crash-safe write order, recovery, rebuild and check: its docstring has the rule);
`ingest.pipeline` overlaps the embedding of one group of prepared files with the preparing of the next.

Locks: a writing service holds the data directory's writer lock (`ingest.writer_lock`: one writing process per
data dir; a second one gets a 409 naming the holder); `read_only=True` (index check) takes none. Public methods are
serialised by the service's own lock; the `write_lock` (the server's index lock, which
searches take) is held only inside each write step of the store, never while parsing or embedding.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from assistant.dedup import SelectionReport
from assistant.embedding import Embedder
from assistant.errors import NotFoundError
from assistant.index import VectorIndex
from assistant.parts import Parts
from assistant.settings import Settings
from assistant.storage.db import Database
from ingest.document_types import PreparedFile
from ingest.loaders import LoaderOptions
from ingest.pipeline import pipelined
from ingest.preparing import BatchState, FilePreparer, expand_paths
from ingest.results import ConsistencyReport, FileResult, IngestReport
from ingest.store import DocumentStore
from ingest.writer_lock import WriterLock

log = logging.getLogger(__name__)

T = TypeVar("T")


EMBED_SLICE = 256  # texts per embed call when progress is reported (a report after each; 16 batches of 16)


@dataclass(frozen=True)
class IngestProgress:
    """Where an `ingest_paths` call stands: after one more file got its final result (`result`, failed or not), or
    (`result` None) after another slice of chunks was embedded."""

    files_done: int
    files_total: int
    chunks: int  # chunks stored so far in this call
    result: FileResult | None
    chunks_embedded: int = 0  # chunks embedded so far in this call (stored ones and those of the group in flight)


class _Tally:
    """Counts the final results and embedded chunks of one call and tells `on_progress` about each, one report at
    a time (the embedding thread reports too)."""

    def __init__(self, total: int, on_progress: Callable[[IngestProgress], None]) -> None:
        self.total, self.on_progress = total, on_progress
        self.done = self.chunks = self.embedded = 0
        self._lock = threading.Lock()

    def __call__(self, result: FileResult) -> FileResult:
        with self._lock:
            self.done += 1
            self.chunks += result.chunks
            self._report(result)
        return result

    def add_embedded(self, count: int) -> None:
        with self._lock:
            self.embedded += count
            self._report(None)

    def _report(self, result: FileResult | None) -> None:
        self.on_progress(IngestProgress(self.done, self.total, self.chunks, result, self.embedded))


def _serialised(method: Callable[..., T]) -> Callable[..., T]:
    """Run a public mutating method under the service's lock (one writer at a time, e.g. concurrent uploads)."""

    @functools.wraps(method)
    def wrapper(self: IngestService, *args: object, **kwargs: object) -> T:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class IngestService:
    """Ingests documents into one database + vector index (see the module contract): prepares with a
    `FilePreparer`, writes with a `DocumentStore`, one call at a time."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        index: VectorIndex,
        embedder: Embedder,
        *,
        recover: bool = True,
        write_lock: AbstractContextManager[Any] | None = None,
        read_only: bool = False,
    ) -> None:
        self.settings = settings
        # One writing process per data dir (an OS file lock); a read-only service (index check) neither takes it
        # nor repairs anything.
        self.writer = None if read_only else WriterLock.acquire(settings.data_dir)
        self.options = settings.ingest
        self.db = db
        self.index = index
        self.embedder = embedder
        self.preparer = FilePreparer(settings, db, embedder)
        self.store = DocumentStore(
            settings, db, index, embedder, write_lock=write_lock, on_failed=self.preparer.forget_failed
        )
        self._lock = threading.RLock()
        if recover and not read_only:
            self.recover()

    def close(self) -> None:
        """Give back the data directory's writer lock (the process exiting does it too)."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None

    @classmethod
    def of(cls, parts: Parts, *, read_only: bool = False) -> IngestService:
        """The ingest service over `parts` (database, index, embedder), built once per `Parts`; it recovers from an
        interrupted run unless `read_only` (an index check beside a running writer)."""
        return parts.attach("ingest-read-only" if read_only else "ingest", lambda p: cls._build(p, read_only))

    @classmethod
    def _build(cls, parts: Parts, read_only: bool) -> IngestService:
        if read_only:
            return cls(parts.settings, parts.db, parts.index, parts.embedder, read_only=True)
        early = WriterLock.acquire(parts.settings.data_dir)  # fail fast, before loading a model, when another writes
        try:
            return cls(parts.settings, parts.db, parts.index, parts.embedder)
        finally:
            early.release()

    @classmethod
    def open(cls, settings: Settings, embedder: Embedder | None = None) -> IngestService:
        """`of(Parts(settings, embedder=embedder))`: a service over its own parts (scripts and tests)."""
        return cls.of(Parts(settings, embedder=embedder))

    # ------------------------------------------------------------ the parts' settings, shared with callers

    @property
    def write_lock(self) -> AbstractContextManager[Any]:
        """Held only while rows/vectors are written or the index saved, never while parsing or embedding: the server
        passes the lock its searches take (`use_write_lock`), so retrieval waits for a write step, not an upload."""
        return self.store.write_lock

    def use_write_lock(self, lock: AbstractContextManager[Any]) -> None:
        """Share the lock the caller's readers take (see `write_lock`)."""
        self.store.write_lock = lock

    @property
    def checkpoint(self) -> Callable[[str], None]:
        """Called with the name of each write step as it completes (`ingest.store`; the crash tests stop there)."""
        return self.store.checkpoint

    @checkpoint.setter
    def checkpoint(self, hook: Callable[[str], None]) -> None:
        self.store.checkpoint = hook

    @property
    def loader_options(self) -> LoaderOptions:
        """The limits the loaders apply (from `ingest.*` settings)."""
        return self.preparer.loader_options

    @loader_options.setter
    def loader_options(self, options: LoaderOptions) -> None:
        self.preparer.loader_options = options

    @property
    def space(self) -> str:
        """The embedding space key the vectors are stored under in the database."""
        return self.store.space

    # ------------------------------------------------------------ public API

    @_serialised
    def ingest_paths(
        self,
        paths: Sequence[str | Path],
        collection: str = "default",
        on_progress: Callable[[IngestProgress], None] | None = None,
    ) -> IngestReport:
        """Ingest files, folders (recursively) and glob patterns; one `FileResult` per file, each also handed to
        `on_progress` as it is final (see `IngestProgress`).

        Files are prepared (parsed, cleaned, chunked, deduplicated) in groups of about
        `embed_batch_size * preparing.GROUP_BATCHES` chunks; a group is embedded in a background thread while the
        next one is prepared, and written (in the crash-safe order) once its vectors are ready (`ingest.pipeline`).
        """
        started = time.perf_counter()
        report, state = IngestReport(), BatchState()
        files, missing = expand_paths(paths)
        tally = _Tally(len(files) + len(missing), on_progress or (lambda _event: None))
        for name in missing:
            report.files.append(tally(FileResult.failure(name, collection, NotFoundError(f"{name}: no such file"))))

        def prepare(path: Path) -> PreparedFile | FileResult:
            prepared = self.preparer.prepare_path(path, collection=collection, state=state, selection=report.selection)
            return tally(prepared) if isinstance(prepared, FileResult) else prepared  # final now: failed, unchanged

        groups = self.preparer.groups(files, prepare, report)
        embed = self._embed if on_progress is None else functools.partial(self._embed_in_slices, tally)
        report.files.extend(tally(result) for result in pipelined(groups, embed, self.store.store_batch))
        report.seconds = time.perf_counter() - started
        log.info(
            "ingested %d files into %r in %.1f s: %s", len(report.files), collection, report.seconds, report.counts()
        )
        return report

    @_serialised
    def ingest_files(self, files: Sequence[tuple[str, bytes]], collection: str = "default") -> list[FileResult]:
        """Ingest several uploaded files (source name, bytes) like `ingest_paths`: pipelined, one index save per
        group rather than per file. One `FileResult` per file, in the order given."""
        names = [name for name, _data in files]
        if len(set(names)) < len(names):  # a later same-named file replaces an earlier one: one at a time, in order
            return [self.ingest_file(name, data, collection) for name, data in files]
        report, state = IngestReport(), BatchState()

        def prepare(item: tuple[str, bytes]) -> PreparedFile | FileResult:
            return self.preparer.prepare(item[0], item[1], collection, state, report.selection)

        groups = self.preparer.groups(list(files), prepare, report)
        report.files.extend(pipelined(groups, self._embed, self.store.store_batch))
        return _in_order(report.files, names)

    @_serialised
    def ingest_file(self, name: str, data: bytes, collection: str = "default") -> FileResult:
        """Ingest one file's bytes under the source name `name` (an upload)."""
        prepared = self.preparer.prepare(name, data, collection, BatchState(), SelectionReport())
        if isinstance(prepared, FileResult):
            return prepared
        done: Future[np.ndarray] = Future()
        try:
            done.set_result(self._embed([prepared]))
        except (RuntimeError, ValueError) as exc:
            done.set_exception(exc)
        return self.store.store_batch([prepared], done)[0]

    @_serialised
    def delete_document(self, document_id: str) -> int:
        """Delete a document, its chunk rows and their vectors; returns the number of chunks removed."""
        removed = self.store.delete_document(document_id)
        self.preparer.forget_document(document_id)
        return removed

    @_serialised
    def check_index(self) -> ConsistencyReport:
        """Compare the vector ids with the chunk rows of 'ready' documents."""
        return self.store.check_index()

    @_serialised
    def recover(self) -> ConsistencyReport:
        """Apply the crash-safety repair (`ingest.store`); returns the state found before repairing."""
        return self.store.recover()

    @_serialised
    def rebuild_index(
        self, reembed: bool = False, on_progress: Callable[[int, int], None] | None = None
    ) -> ConsistencyReport:
        """Rebuild the index from the rows: structure by size (flat/HNSW), tombstones dropped, gaps re-embedded
        (every chunk with `reembed=True`: the embedder changed); `on_progress(embedded, to_embed)` as it goes."""
        return self.store.rebuild_index(reembed, on_progress)

    def _embed(self, batch: list[PreparedFile]) -> np.ndarray:
        return self.embedder.embed([draft.text for p in batch for draft in p.drafts])

    def _embed_in_slices(self, tally: _Tally, batch: list[PreparedFile]) -> np.ndarray:
        """`_embed`, `EMBED_SLICE` texts a call, each slice counted on `tally` (in the embedding thread)."""
        texts = [draft.text for p in batch for draft in p.drafts]
        vectors = []
        for start in range(0, len(texts), EMBED_SLICE):
            vectors.append(self.embedder.embed(texts[start : start + EMBED_SLICE]))
            tally.add_embedded(len(vectors[-1]))
        return np.concatenate(vectors) if vectors else self.embedder.embed([])


def _in_order(results: list[FileResult], sources: list[str]) -> list[FileResult]:
    """`results` (one per source, in completion order) sorted back into the order of `sources` (distinct names)."""
    by_source = {result.source: result for result in results}
    return [by_source[source] for source in sources]
