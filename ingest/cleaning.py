"""Text normalisation of parsed documents.

Contract: `normalize_text` applies NFKC, removes control characters (tabs/newlines kept as whitespace), collapses
whitespace inside paragraphs to single spaces and separates paragraphs (blank-line separated in the input) by exactly
"\\n\\n". `clean_document` normalises every block, drops empty and garbage blocks (`assistant.dedup.is_garbage`;
recorded in the `SelectionReport` and as a warning of the document's `ParseReport`), and joins the rest with "\\n\\n"
into the text that chunk offsets refer to; a document with nothing left is refused (422). A table block
(`meta["table"]`, `ingest.tables`) is normalised line by line, so its rows stay one per line, and its `Section` is
marked `table` for the chunker.
"""

from __future__ import annotations

import re
import unicodedata

from assistant.dedup import ALLOWED_CONTROLS, UNPRINTABLE_CATEGORIES, SelectionReport, is_garbage, plainly_printable
from assistant.errors import UnprocessableError
from ingest.document_types import CleanDocument, ParsedDocument, Section

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_WHITESPACE = re.compile(r"\s+")
SEPARATOR = "\n\n"


def _strip_controls(text: str) -> str:
    if plainly_printable(text):
        return text
    return "".join(
        char if char in ALLOWED_CONTROLS or unicodedata.category(char) not in UNPRINTABLE_CATEGORIES else " "
        for char in text
    )


def normalize_text(text: str) -> str:
    """NFKC, no control characters, single spaces inside paragraphs, "\\n\\n" between paragraphs."""
    text = _strip_controls(unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n"))
    paragraphs = (_WHITESPACE.sub(" ", part).strip() for part in _PARAGRAPH_BREAK.split(text))
    return SEPARATOR.join(part for part in paragraphs if part)


def normalize_table(text: str) -> str:
    """A Markdown table normalised row by row: one line per row, no blank lines inside."""
    lines = (_strip_controls(unicodedata.normalize("NFKC", line)) for line in text.split("\n"))
    rows = (_WHITESPACE.sub(" ", line).strip() for line in lines)
    return "\n".join(row for row in rows if row)


def clean_document(
    parsed: ParsedDocument, source: str, report: SelectionReport, max_unprintable_ratio: float
) -> CleanDocument:
    """Normalise and join the blocks; drop empty/garbage ones; refuse a document with no text left."""
    parts: list[str] = []
    sections: list[Section] = []
    offset = 0
    for number, block in enumerate(parsed.blocks, start=1):
        if is_garbage(block.text, max_unprintable_ratio):
            report.drop(source, "block", "garbage", f"block {number}: mostly unprintable characters")
            where = f"page {block.page}" if block.page is not None else f"block {number}"
            parsed.report.warn(f"{where}: dropped as garbage (mostly unprintable characters)")
            continue
        table = bool(block.meta.get("table"))
        text = normalize_table(block.text) if table else normalize_text(block.text)
        if not text:
            continue
        if parts:
            offset += len(SEPARATOR)
        parts.append(text)
        sections.append(Section(offset, offset + len(text), block.page, block.section, table))
        offset += len(text)
    if not parts:
        raise UnprocessableError(f"{source}: no extractable text (empty, scanned without a text layer, or garbage)")
    return CleanDocument(parsed.title, parsed.mime_type, SEPARATOR.join(parts), sections, parsed.report)
