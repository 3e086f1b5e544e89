"""Preparing files for the store: bytes -> parsed, cleaned, chunked, deduplicated `PreparedFile`s (no writes).

Contract: `FilePreparer(settings, db, embedder)` turns one file (`prepare(source, data, ...)`, or `prepare_path`) into
a `PreparedFile` ready to embed, or into a final `FileResult` when there is nothing to write: 'unchanged' (same
bytes stored under that source), 'duplicate' (same bytes under another source in the collection, or no chunk left
after selection) or 'failed' (over `ingest.max_file_mb`, unreadable, unparseable: the `assistant.errors` type).
Exact duplicate chunks (SHA-256, in the collection, in the same call via `BatchState`) and near duplicates (MinHash
LSH per collection, `ingest.near_duplicate_threshold`, built from the stored 'ready' chunks on first use) are
dropped and recorded in the `SelectionReport`. `groups(items, prepare, report)` yields the prepared files in groups
of about `embed_batch_size * GROUP_BATCHES` chunks (the first one small, to get the embedder busy early).
The preparer only reads the database; when a file's write fails or a document is deleted, the store's caller tells
it through `forget_failed` / `forget_document`, so the near-duplicate index never holds chunks that are not stored.
`expand_paths` resolves files, folders (recursive, hidden files skipped) and glob patterns.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from sqlalchemy import func, select

from assistant.dedup import NearDuplicateIndex, SelectionReport, content_hash
from assistant.embedding import Embedder
from assistant.errors import AssistantError, PayloadTooLargeError, UnprocessableError
from assistant.settings import Settings
from assistant.storage.db import Database
from assistant.storage.orm import Chunk, Document, new_id
from ingest.chunking import Chunker
from ingest.document_types import ChunkDraft, PreparedFile
from ingest.loaders import LoaderOptions
from ingest.parsing import parse_file
from ingest.results import FileResult, IngestReport

log = logging.getLogger(__name__)

GROUP_BATCHES = 64  # chunks embedded per group = embed_batch_size * GROUP_BATCHES (large: less padding)
T = TypeVar("T")


@dataclass
class BatchState:
    """Content seen earlier in the same call (not yet committed)."""

    documents: dict[tuple[str, str], str] = field(default_factory=dict)
    chunks: set[tuple[str, str]] = field(default_factory=set)


class FilePreparer:
    """Parses, cleans, chunks and deduplicates files against the stored collection (see the module contract)."""

    def __init__(self, settings: Settings, db: Database, embedder: Embedder) -> None:
        self.options = settings.ingest
        self.db = db
        self.chunker = Chunker(embedder, self.options.chunk_tokens, self.options.chunk_overlap)
        self.loader_options = LoaderOptions.from_settings(self.options)
        self._near: dict[str, NearDuplicateIndex] = {}

    def groups(
        self, items: Sequence[T], prepare: Callable[[T], PreparedFile | FileResult], report: IngestReport
    ) -> Iterator[list[PreparedFile]]:
        """Groups of prepared files; files that need no write (unchanged, failed) go straight to the report."""
        batch: list[PreparedFile] = []
        target = self.options.embed_batch_size  # a small first group gets the embedder busy early
        for item in items:
            prepared = prepare(item)
            if isinstance(prepared, FileResult):
                report.files.append(prepared)
                continue
            batch.append(prepared)
            if sum(len(p.drafts) for p in batch) >= target:
                yield batch
                batch, target = [], self.options.embed_batch_size * GROUP_BATCHES
        if batch:
            yield batch

    def prepare_path(
        self, path: Path, *, collection: str, state: BatchState, selection: SelectionReport
    ) -> PreparedFile | FileResult:
        """`prepare` for a file on disk; its source name is the resolved path."""
        source = str(path.resolve())
        try:
            self._check_size(source, path.stat().st_size)
            data = path.read_bytes()
        except AssistantError as exc:
            return FileResult.failure(source, collection, exc)
        except OSError as exc:
            return FileResult.failure(source, collection, UnprocessableError(f"{source}: cannot be read ({exc})"))
        return self.prepare(source, data, collection, state, selection)

    def prepare(
        self, source: str, data: bytes, collection: str, state: BatchState, selection: SelectionReport
    ) -> PreparedFile | FileResult:
        """One file's bytes as a `PreparedFile`, or its final `FileResult` when nothing is to be written."""
        try:
            self._check_size(source, len(data))
            return self._parse(source, data, collection, state, selection)
        except AssistantError as exc:
            log.warning("%s", exc.message)
            return FileResult.failure(source, collection, exc)

    def forget_failed(self, prepared: PreparedFile) -> None:
        """Drop a file whose write failed from the near-duplicate index (an old version of it stays stored)."""
        if prepared.replaces:
            self._near.pop(prepared.collection, None)  # rebuilt from the stored (old) chunks on next use
        elif prepared.collection in self._near:
            self._near[prepared.collection].remove_group(prepared.document_id)

    def forget_document(self, document_id: str) -> None:
        """Drop a deleted document's chunks from the near-duplicate index."""
        for near in self._near.values():
            near.remove_group(document_id)

    def _check_size(self, source: str, size: int) -> None:
        limit = self.options.max_file_mb * 1024 * 1024
        if size > limit:
            raise PayloadTooLargeError(
                f"{source}: {size / 1e6:.1f} MB is over the {self.options.max_file_mb:g} MB limit (ingest.max_file_mb)"
            )

    def _parse(
        self, source: str, data: bytes, collection: str, state: BatchState, selection: SelectionReport
    ) -> PreparedFile | FileResult:
        raw_hash = content_hash(data)
        existing = self._find_document(collection, source)
        if existing is not None and existing.content_hash == raw_hash and existing.status == "ready":
            selection.drop(source, "document", "unchanged", f"same content as {existing.id}")
            return FileResult(source, collection, "unchanged", existing.id, chunks=self._chunk_count(existing.id))
        duplicate_of = state.documents.get((collection, raw_hash)) or self._find_duplicate(collection, raw_hash, source)
        if duplicate_of is not None:
            selection.drop(source, "document", "duplicate", f"same content as {duplicate_of}")
            return FileResult(source, collection, "duplicate", duplicate_of)
        clean, report = parse_file(source, data, self.loader_options, self.options.parse_timeout_s)
        document_id = existing.id if existing is not None else new_id("doc")
        drafts = self._select_chunks(self.chunker.chunk(clean), source, collection, document_id, state, report)
        selection.extend(report)
        if not drafts:
            return FileResult(source, collection, "duplicate", document_id, dropped_chunks=len(report.dropped))
        state.documents[(collection, raw_hash)] = document_id
        return PreparedFile(
            source,
            collection,
            document_id,
            existing is not None,
            raw_hash,
            len(data),
            clean.title,
            clean.mime_type,
            drafts,
            sum(1 for d in report.dropped if d.level == "chunk"),
            parse_report=clean.report.to_dict(),
        )

    def _select_chunks(
        self,
        drafts: list[ChunkDraft],
        source: str,
        collection: str,
        document_id: str,
        state: BatchState,
        report: SelectionReport,
    ) -> list[ChunkDraft]:
        """Drop exact duplicates (in the collection, the batch, the document) and near duplicates."""
        stored = self._stored_chunk_hashes(collection, [d.content_hash for d in drafts], document_id)
        near = self._near_index(collection)
        near.remove_group(document_id)  # a replaced version must not count as a duplicate of the new one
        kept: list[ChunkDraft] = []
        for draft in drafts:
            if draft.content_hash in stored or (collection, draft.content_hash) in state.chunks:
                report.drop(source, "chunk", "duplicate", f"chunk {draft.ordinal} at {draft.char_start}")
            elif near.find(draft.text):
                report.drop(source, "chunk", "near_duplicate", f"chunk {draft.ordinal} at {draft.char_start}")
            else:
                state.chunks.add((collection, draft.content_hash))
                draft.ordinal = len(kept)
                near.add((document_id, draft.ordinal), draft.text, group=document_id)
                kept.append(draft)
        return kept

    # ------------------------------------------------------------ database reads

    def _find_document(self, collection: str, source: str) -> Document | None:
        with self.db.session() as session:
            return session.scalars(
                select(Document).where(Document.collection == collection, Document.source == source)
            ).first()

    def _find_duplicate(self, collection: str, raw_hash: str, source: str) -> str | None:
        with self.db.session() as session:
            return session.scalars(
                select(Document.id).where(
                    Document.collection == collection,
                    Document.content_hash == raw_hash,
                    Document.source != source,
                    Document.status == "ready",
                )
            ).first()

    def _chunk_count(self, document_id: str) -> int:
        with self.db.session() as session:
            return int(session.scalar(select(func.count(Chunk.id)).where(Chunk.document_id == document_id)) or 0)

    def _stored_chunk_hashes(self, collection: str, hashes: list[str], document_id: str) -> set[str]:
        with self.db.session() as session:
            return set(
                session.scalars(
                    select(Chunk.content_hash).where(
                        Chunk.collection == collection,
                        Chunk.content_hash.in_(hashes),
                        Chunk.document_id != document_id,
                    )
                ).all()
            )

    def _near_index(self, collection: str) -> NearDuplicateIndex:
        """The collection's MinHash LSH, built from its stored chunks on first use."""
        if collection not in self._near:
            near = NearDuplicateIndex(self.options.near_duplicate_threshold)
            with self.db.session() as session:
                rows = session.execute(
                    select(Chunk.document_id, Chunk.ordinal, Chunk.text)
                    .join(Document)
                    .where(Chunk.collection == collection, Document.status == "ready")
                ).all()
            for document_id, ordinal, text in rows:
                near.add((document_id, ordinal), text, group=document_id)
            self._near[collection] = near
        return self._near[collection]


def expand_paths(paths: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """Files named by `paths` (files, folders recursively, glob patterns), de-duplicated; and the missing ones."""
    files: list[Path] = []
    missing: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(_folder_files(path))
        elif path.is_file():
            files.append(path)
        else:
            matches = [Path(m) for m in sorted(glob.glob(str(raw), recursive=True)) if Path(m).is_file()]
            files.extend(matches) if matches else missing.append(str(raw))
    unique = {file.resolve(): file for file in files}
    return list(unique.values()), missing


def _folder_files(folder: Path) -> list[Path]:
    return sorted(
        file
        for file in folder.rglob("*")
        if file.is_file() and not any(part.startswith(".") for part in file.relative_to(folder).parts)
    )
