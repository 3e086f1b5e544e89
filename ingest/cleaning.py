"""Text normalisation and garbage detection.

Contract: `normalize_text` applies NFKC, removes control characters (tabs/newlines kept as whitespace), collapses
whitespace inside paragraphs to single spaces and separates paragraphs (blank-line separated in the input) by exactly
"\\n\\n". `is_garbage` flags text whose share of unprintable characters (control, format, private-use, unassigned,
surrogate, U+FFFD) exceeds the threshold: binary data decoded as text. `clean_document` normalises every block, drops
empty and garbage blocks (recorded in the `SelectionReport`), and joins the rest with "\\n\\n" into the text that
chunk offsets refer to; a document with nothing left is refused (422).
"""

from __future__ import annotations

import re
import unicodedata

from assistant.errors import UnprocessableError
from ingest.documents import CleanDocument, ParsedDocument, Section
from ingest.selection import SelectionReport

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_WHITESPACE = re.compile(r"\s+")
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Cs"})
_ALLOWED_CONTROLS = frozenset("\n\t\r\f\v")
SEPARATOR = "\n\n"
# Whitespace controls and Unicode separators (Zs/Zl/Zp): printable text for our purposes, but not for isprintable().
_SEPARATORS_DELETED = dict.fromkeys(
    [ord(c) for c in _ALLOWED_CONTROLS] + [0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)


def _plainly_printable(text: str) -> bool:
    """True when no character is in an unprintable category (C-speed check; the per-character loops below cost
    ~1 s per MB). `str.isprintable` is False exactly for categories C* and Z* other than the ASCII space, so after
    deleting the whitespace controls and the other separators a True answer proves there is nothing to count."""
    return text.translate(_SEPARATORS_DELETED).isprintable()


def unprintable_ratio(text: str) -> float:
    """Share of characters that are not printable text (whitespace controls excluded)."""
    if not text:
        return 0.0
    if _plainly_printable(text):
        return text.count("\ufffd") / len(text)
    bad = sum(
        1
        for char in text
        if char == "\ufffd" or (char not in _ALLOWED_CONTROLS and unicodedata.category(char) in _UNPRINTABLE_CATEGORIES)
    )
    return bad / len(text)


def is_garbage(text: str, max_unprintable_ratio: float) -> bool:
    return unprintable_ratio(text) > max_unprintable_ratio


def _strip_controls(text: str) -> str:
    if _plainly_printable(text):
        return text
    return "".join(
        char if char in _ALLOWED_CONTROLS or unicodedata.category(char) not in _UNPRINTABLE_CATEGORIES else " "
        for char in text
    )


def normalize_text(text: str) -> str:
    """NFKC, no control characters, single spaces inside paragraphs, "\\n\\n" between paragraphs."""
    text = _strip_controls(unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n"))
    paragraphs = (_WHITESPACE.sub(" ", part).strip() for part in _PARAGRAPH_BREAK.split(text))
    return SEPARATOR.join(part for part in paragraphs if part)


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
            continue
        text = normalize_text(block.text)
        if not text:
            continue
        if parts:
            offset += len(SEPARATOR)
        parts.append(text)
        sections.append(Section(offset, offset + len(text), block.page, block.section))
        offset += len(text)
    if not parts:
        raise UnprocessableError(f"{source}: no extractable text (empty, scanned without a text layer, or garbage)")
    return CleanDocument(parsed.title, parsed.mime_type, SEPARATOR.join(parts), sections)
