"""Token-aware, structure-aware chunking.

Contract: `Chunker.chunk(doc)` splits each `Section` of a `CleanDocument` on its own (chunks never span a heading,
page or record boundary) with LangChain's `RecursiveCharacterTextSplitter` measuring length in embedder tokens:
paragraph breaks first, then lines, sentences, clauses, words, characters. Sizes: `ingest.chunk_tokens` (capped at the
embedder's `max_tokens`) with `ingest.chunk_overlap` tokens of overlap. A chunk still over `max_tokens` is halved at
whitespace until it fits, so the embedder never truncates. Every chunk's text equals
`doc.text[char_start:char_end]`, and carries the section's page and section label.
"""

from __future__ import annotations

from langchain_text_splitters import RecursiveCharacterTextSplitter

from assistant.embedding import Embedder
from ingest.documents import ChunkDraft, CleanDocument, Section
from ingest.selection import content_hash

SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ": ", ", ", " ", ""]


class Chunker:
    """Splits cleaned documents into chunks that fit the embedder."""

    def __init__(self, embedder: Embedder, chunk_tokens: int, chunk_overlap: int) -> None:
        self.embedder = embedder
        self.max_tokens = embedder.max_tokens
        size = self.chunk_size = min(chunk_tokens, self.max_tokens)
        self.splitter = RecursiveCharacterTextSplitter(
            chunk_size=size,
            chunk_overlap=min(chunk_overlap, size // 2),
            length_function=embedder.count_tokens,
            separators=SEPARATORS,
            keep_separator="end",
            strip_whitespace=True,
        )

    def chunk(self, doc: CleanDocument) -> list[ChunkDraft]:
        drafts: list[ChunkDraft] = []
        for section in doc.sections:
            for start, text, tokens in self._split_section(doc.text, section):
                drafts.append(_draft(len(drafts), text, start, tokens, section))
        return drafts

    def _split_section(self, text: str, section: Section) -> list[tuple[int, str, int]]:
        """(absolute start offset, text, token count) of each chunk of one section."""
        body = text[section.start : section.end]
        tokens = self.embedder.count_tokens(body)
        pieces = [body] if tokens <= self.chunk_size else self.splitter.split_text(body)
        located: list[tuple[int, str, int]] = []
        cursor = 0
        for piece in pieces:
            for part, count in self._fit(piece):
                start = body.find(part, cursor)
                if start < 0:  # not expected (pieces are substrings); fall back to a full search
                    start = body.find(part)
                cursor = start + 1
                located.append((section.start + start, part, count))
        return located

    def _fit(self, piece: str) -> list[tuple[str, int]]:
        """The piece, or its halves (split at whitespace) until each is within `max_tokens`."""
        count = self.embedder.count_tokens(piece)
        if count <= self.max_tokens or len(piece) < 2:
            return [(piece, count)]
        middle = piece.rfind(" ", 0, len(piece) // 2 + 1)
        middle = middle if middle > 0 else len(piece) // 2
        return self._fit(piece[:middle].strip()) + self._fit(piece[middle:].strip())


def _draft(ordinal: int, text: str, start: int, tokens: int, section: Section) -> ChunkDraft:
    return ChunkDraft(
        ordinal=ordinal,
        text=text,
        char_start=start,
        char_end=start + len(text),
        page=section.page,
        section=section.section,
        token_count=tokens,
        content_hash=content_hash(text),
    )
