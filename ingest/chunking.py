"""Token-aware, structure-aware chunking, linear in the text.

Contract: `Chunker.chunk(doc)` splits each `Section` of a `CleanDocument` on its own (chunks never span a heading,
page or record boundary), recursively like LangChain's `RecursiveCharacterTextSplitter`: paragraph breaks first, then
lines, sentences, clauses, words, characters, merging neighbouring pieces up to `ingest.chunk_tokens` (capped at the
embedder's `max_tokens`) with `ingest.chunk_overlap` tokens of overlap. A chunk still over `max_tokens` is halved at
whitespace until it fits, so the embedder never truncates. Every chunk's text equals
`doc.text[char_start:char_end]`, and carries the section's page and section label.
Tables (`Section.table`: a Markdown table, `ingest.tables`) are split by whole rows, never inside one, without
overlap; every chunk starts with the table's header and separator lines, so it names its columns. The first chunk
is the contiguous span `doc.text[char_start:char_end]`; a later one's text is the header lines, a newline, then
`doc.text[char_start:char_end]` (its rows). A header too long to repeat (over half a chunk) is not repeated, and a
row too long for one chunk is split like text: such chunks follow the plain rule.

Cost: a section is tokenized once (the embedder's `token_starts` when it has one, else a word/punctuation
approximation); the splitter works on character spans and counts tokens by bisecting those starts, so a 100k
character line without separators costs one tokenizer call, not one per character (LangChain's splitter called the
tokenizer per split: tens of seconds for such a line). Only the final chunks are counted with the real tokenizer.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable

from assistant.dedup import content_hash
from assistant.embedding import Embedder
from ingest.document_types import ChunkDraft, CleanDocument, Section
from ingest.tables import TABLE_HEADER_LINES

SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ": ", ", ", " ", ""]
_APPROXIMATE_TOKEN = re.compile(r"\w+|[^\w\s]")  # linear: no nested quantifiers
Span = tuple[int, int]


def token_starts(embedder: Embedder, text: str) -> list[int]:
    """Character offsets where the embedder's tokens of `text` start (sorted)."""
    starts: Callable[[str], list[int]] | None = getattr(embedder, "token_starts", None)
    if starts is not None:
        return starts(text)
    return [match.start() for match in _APPROXIMATE_TOKEN.finditer(text)]


def count_many(embedder: Embedder, texts: list[str]) -> list[int]:
    """Token counts of many texts (one batched tokenizer call when the embedder offers `count_tokens_many`)."""
    many: Callable[[list[str]], list[int]] | None = getattr(embedder, "count_tokens_many", None)
    return many(texts) if many is not None else [embedder.count_tokens(text) for text in texts]


class _Body:
    """One section's text with O(log n) token counts of any span."""

    def __init__(self, text: str, starts: list[int]) -> None:
        self.text = text
        self.starts = starts

    def count(self, span: Span) -> int:
        return bisect_left(self.starts, span[1]) - bisect_left(self.starts, span[0])


class Chunker:
    """Splits cleaned documents into chunks that fit the embedder."""

    def __init__(self, embedder: Embedder, chunk_tokens: int, chunk_overlap: int) -> None:
        self.embedder = embedder
        self.max_tokens = embedder.max_tokens
        self.chunk_size = min(chunk_tokens, self.max_tokens)
        self.chunk_overlap = min(chunk_overlap, self.chunk_size // 2)

    def chunk(self, doc: CleanDocument) -> list[ChunkDraft]:
        drafts: list[ChunkDraft] = []
        for section in doc.sections:
            table = self._split_table(doc.text, section) if section.table else None
            if table is not None:
                drafts.extend(
                    _draft(len(drafts) + i, text, start, tokens, section, end)
                    for i, (start, end, text, tokens) in enumerate(table)
                )
                continue
            for start, text, tokens in self._split_section(doc.text, section):
                drafts.append(_draft(len(drafts), text, start, tokens, section))
        return drafts

    def _split_table(self, text: str, section: Section) -> list[tuple[int, int, str, int]] | None:
        """(absolute start, absolute end, chunk text, tokens) of a table's row chunks, each headed by the header
        lines; None when the table fits one chunk or its header is too long to repeat (split as text instead)."""
        body = _Body(text[section.start : section.end], [])
        body.starts = token_starts(self.embedder, body.text)
        if body.count((0, len(body.text))) <= self.chunk_size:
            return None
        lines = _pieces(body.text, (0, len(body.text)), "\n")
        if len(lines) <= TABLE_HEADER_LINES:
            return None
        header_end = lines[TABLE_HEADER_LINES - 1][1]  # just after the separator line's newline
        header = body.text[: header_end - 1]
        budget = self.chunk_size - body.count((0, header_end))
        if budget < self.chunk_size // 2:
            return None
        spans: list[Span] = []
        first, total = TABLE_HEADER_LINES, 0
        for i in range(TABLE_HEADER_LINES, len(lines)):
            size = body.count(lines[i])
            if total + size > budget and i > first:
                spans.append((lines[first][0], lines[i - 1][1]))
                first, total = i, 0
            total += size
        spans.append((lines[first][0], lines[-1][1]))
        spans = [_strip(body.text, *span) for span in spans]
        texts = [body.text[: spans[0][1]]] + [f"{header}\n{body.text[a:b]}" for a, b in spans[1:]]
        starts = [0] + [a for a, _b in spans[1:]]
        counts = count_many(self.embedder, texts)
        chunks: list[tuple[int, int, str, int]] = []
        for (_start, end), chunk_start, chunk, count in zip(spans, starts, texts, counts, strict=True):
            if count <= self.max_tokens:
                chunks.append((section.start + chunk_start, section.start + end, chunk, count))
                continue
            for offset, part, tokens in self._fit(body.text, chunk_start, end):  # one huge row: plain pieces
                chunks.append((section.start + offset, section.start + offset + len(part), part, tokens))
        return chunks

    def _split_section(self, text: str, section: Section) -> list[tuple[int, str, int]]:
        """(absolute start offset, text, token count) of each chunk of one section."""
        body = _Body(text[section.start : section.end], [])
        body.starts = token_starts(self.embedder, body.text)
        whole = (0, len(body.text))
        spans = [whole] if body.count(whole) <= self.chunk_size else self._split(body, whole, SEPARATORS)
        stripped = [span for span in (_strip(body.text, *span) for span in spans) if span[0] < span[1]]
        counts = count_many(self.embedder, [body.text[a:b] for a, b in stripped])
        located: list[tuple[int, str, int]] = []
        for (start, end), count in zip(stripped, counts, strict=True):
            fitted = [(start, body.text[start:end], count)] if count <= self.max_tokens else None
            for offset, part, tokens in fitted or self._fit(body.text, start, end):
                located.append((section.start + offset, part, tokens))
        return located

    def _split(self, body: _Body, span: Span, separators: list[str]) -> list[Span]:
        """LangChain's recursive split on spans: the first separator present, recursing on pieces still too big."""
        index = next(i for i, sep in enumerate(separators) if sep == "" or body.text.find(sep, *span) >= 0)
        separator, rest = separators[index], separators[index + 1 :]
        if not separator:
            return self._windows(body, span)
        out: list[Span] = []
        small: list[Span] = []
        for piece in _pieces(body.text, span, separator):
            if body.count(piece) < self.chunk_size:
                small.append(piece)
                continue
            out.extend(self._merge(body, small))
            small = []
            out.extend(self._split(body, piece, rest) if rest else [piece])
        out.extend(self._merge(body, small))
        return out

    def _merge(self, body: _Body, pieces: list[Span]) -> list[Span]:
        """Neighbouring pieces joined up to `chunk_size` tokens, consecutive chunks overlapping by `chunk_overlap`."""
        merged: list[Span] = []
        first, total = 0, 0  # the current chunk is pieces[first:i]
        for i, piece in enumerate(pieces):
            size = body.count(piece)
            if total + size > self.chunk_size and i > first:
                merged.append((pieces[first][0], pieces[i - 1][1]))
                while first < i and (total > self.chunk_overlap or total + size > self.chunk_size):
                    total -= body.count(pieces[first])
                    first += 1
            total += size
        if first < len(pieces):
            merged.append((pieces[first][0], pieces[-1][1]))
        return merged

    def _windows(self, body: _Body, span: Span) -> list[Span]:
        """What merging single characters gives, computed directly: windows of `chunk_size` tokens, each starting
        `chunk_size - chunk_overlap` tokens after the previous one (cut at token starts)."""
        lo, hi = bisect_left(body.starts, span[0]), bisect_left(body.starts, span[1])
        bounds = [span[0], *body.starts[lo + 1 : hi], span[1]]  # token k spans bounds[k]:bounds[k + 1]
        tokens = len(bounds) - 1
        stride = max(1, self.chunk_size - self.chunk_overlap)
        windows: list[Span] = []
        for first in range(0, max(tokens, 1), stride):
            windows.append((bounds[first], bounds[min(first + self.chunk_size, tokens)]))
            if first + self.chunk_size >= tokens:
                break
        return windows

    def _fit(self, text: str, start: int, end: int) -> list[tuple[int, str, int]]:
        """The span, or its halves (split at whitespace) until each is within `max_tokens` (real tokenizer)."""
        piece = text[start:end]
        count = self.embedder.count_tokens(piece)
        if count <= self.max_tokens or len(piece) < 2:
            return [(start, piece, count)]
        middle = piece.rfind(" ", 0, len(piece) // 2 + 1)
        middle = start + (middle if middle > 0 else len(piece) // 2)
        halves = [(start, middle), (middle, end)]
        return [part for a, b in halves for part in self._fit(text, *_strip(text, a, b)) if part[1]]


def _pieces(text: str, span: Span, separator: str) -> list[Span]:
    """Contiguous spans covering `span`, each ending just after an occurrence of `separator` (kept at the end)."""
    start, end = span
    pieces: list[Span] = []
    while (found := text.find(separator, start, end)) >= 0:
        pieces.append((start, found + len(separator)))
        start = found + len(separator)
    if start < end:
        pieces.append((start, end))
    return pieces


def _strip(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _draft(ordinal: int, text: str, start: int, tokens: int, section: Section, end: int | None = None) -> ChunkDraft:
    return ChunkDraft(
        ordinal=ordinal,
        text=text,
        char_start=start,
        char_end=start + len(text) if end is None else end,
        page=section.page,
        section=section.section,
        token_count=tokens,
        content_hash=content_hash(text),
    )
