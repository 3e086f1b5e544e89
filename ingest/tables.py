"""Tables kept as tables: rows of cells -> one Markdown table block whose first line names the columns.

Contract: `table_block(rows, page=..., section=...)` renders a table (a list of rows of cell strings) as a Markdown
table (`| a | b |`, a `| --- |` separator, one line per row; `|` in cells escaped, line breaks in cells turned into
spaces, empty rows and columns dropped, short rows padded) and returns it as a `Block` marked `meta["table"]`, or None
when nothing is left. Cleaning keeps such a block's lines (`ingest.cleaning`), and chunking splits it by rows with the
header and separator lines repeated at the top of every chunk (`ingest.chunking`), so a chunk always names its
columns. `TABLE_HEADER_LINES` is how many lines that header is.
`split_markdown_tables(text)` cuts Markdown text into prose and the GitHub-style tables in it (outside code fences),
so Markdown files and the Markdown that HTML is turned into keep their tables too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ingest.document_types import Block

TABLE_HEADER_LINES = 2  # the header row and the `| --- |` separator
_SEPARATOR_CELL = re.compile(r"^\s*:?-{1,}:?\s*$")
_FENCES = ("```", "~~~")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def clean_rows(rows: Sequence[Sequence[object]]) -> list[list[str]]:
    """Cells as single-line strings; empty rows and columns dropped, rows padded to one width."""
    cells = [[_cell(value) for value in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return []
    width = max(len(row) for row in cells)
    cells = [row + [""] * (width - len(row)) for row in cells]
    used = [i for i in range(width) if any(row[i] for row in cells)]
    return [[row[i] for i in used] for row in cells]


def markdown_table(rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table of `rows` (the first row is the header; an empty header cell becomes 'column N')."""
    cells = clean_rows(rows)
    if not cells:
        return ""
    header = [name or f"column {i}" for i, name in enumerate(cells[0], start=1)]
    lines = [_line(header), _line(["---"] * len(header))]
    lines.extend(_line(row) for row in cells[1:])
    return "\n".join(lines)


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table_block(rows: Sequence[Sequence[object]], page: int | None = None, section: str | None = None) -> Block | None:
    """The table as a Markdown table `Block` (meta `table`: True, `rows`: data rows), or None when it is empty."""
    text = markdown_table(rows)
    if not text:
        return None
    return Block(text, page=page, section=section, meta={"table": True, "rows": text.count("\n") - 1})


def parse_table_row(line: str) -> list[str]:
    """The cells of one Markdown table line (`| a | b |`, outer pipes optional, `\\|` kept inside a cell)."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    cells: list[str] = []
    current: list[str] = []
    escaped = False
    for char in body:
        if char == "|" and not escaped:
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        escaped = char == "\\" and not escaped
    cells.append("".join(current).strip())
    return [cell.replace("\\|", "|") for cell in cells]


def _is_separator(line: str) -> bool:
    cells = parse_table_row(line)
    return "-" in line and all(_SEPARATOR_CELL.match(cell) for cell in cells)


def _is_row(line: str) -> bool:
    return line.lstrip().startswith("|")


def split_markdown_tables(text: str) -> list[tuple[str, list[list[str]] | None]]:
    """`text` as consecutive (prose, None) and (table text, rows) parts; tables are `|` lines whose second line is a
    `| --- |` separator, outside code fences. Linear in the text."""
    lines = text.split("\n")
    parts: list[tuple[str, list[list[str]] | None]] = []
    prose: list[str] = []
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        in_fence = in_fence != line.lstrip().startswith(_FENCES)
        if not in_fence and _is_row(line) and i + 1 < len(lines) and _is_separator(lines[i + 1]):
            end = i + 2
            while end < len(lines) and _is_row(lines[end]):
                end += 1
            if prose:
                parts.append(("\n".join(prose), None))
                prose = []
            rows = [parse_table_row(lines[i])] + [parse_table_row(row) for row in lines[i + 2 : end]]
            parts.append(("\n".join(lines[i:end]), rows))
            i = end
            continue
        prose.append(line)
        i += 1
    if prose:
        parts.append(("\n".join(prose), None))
    return parts
