"""Intermediate document types passed between the ingest stages.

Contract: a loader returns a `ParsedDocument` of ordered `Block`s (a page, a heading section, a table or a record)
that still hold raw text; cleaning turns it into a `CleanDocument` whose `text` is the exact string that chunk
character offsets (`char_start`/`char_end`) point into, with `Section` spans carrying page/section labels; chunking
and selection give `ChunkDraft`s, and a `PreparedFile` (the file's drafts and its document fields) is what
`ingest.preparing` hands to `ingest.store` to write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ingest.report import ParseReport


@dataclass
class Block:
    """A structural unit of a document, before cleaning."""

    text: str
    page: int | None = None
    section: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParsedDocument:
    """What a loader extracted from one file."""

    title: str
    mime_type: str
    blocks: list[Block]
    report: ParseReport = field(default_factory=ParseReport)


@dataclass(frozen=True)
class Section:
    """A span `[start, end)` of the cleaned text with its citation labels."""

    start: int
    end: int
    page: int | None
    section: str | None
    table: bool = False  # a Markdown table: chunked by rows, its header lines repeated in every chunk


@dataclass
class CleanDocument:
    """Normalised document text and its labelled spans."""

    title: str
    mime_type: str
    text: str
    sections: list[Section]
    report: ParseReport = field(default_factory=ParseReport)


@dataclass
class ChunkDraft:
    """A chunk ready to be embedded and stored."""

    ordinal: int
    text: str
    char_start: int
    char_end: int
    page: int | None
    section: str | None
    token_count: int
    content_hash: str


@dataclass
class PreparedFile:
    """A parsed, cleaned, chunked, deduplicated file waiting for its embeddings."""

    source: str
    collection: str
    document_id: str
    replaces: bool
    raw_hash: str
    size: int
    title: str
    mime_type: str
    drafts: list[ChunkDraft]
    dropped_chunks: int
    row_id: str | None = None  # set by the store: the row holding the new chunks until the swap (document or staging)
    parse_report: dict[str, Any] | None = None  # `ParseReport.to_dict()`, stored with the document
