"""Format loaders: bytes of one file -> `ParsedDocument` (ordered blocks with page/section labels).

Contract: `load_document(name, data, options)` picks the loader from the file extension and returns the document's
blocks; it raises `UnsupportedMediaError` (415) for an unknown type and `UnprocessableError` (422) for a file that
cannot be read (empty, corrupt, password-protected, binary garbage, no text). Any parser failure is converted to a
422 naming the file, so one bad file never escapes as an unexpected exception.
Formats: PDF (`ingest.pdf`: text layer, ruled tables, OCR of scanned pages; one block per page), DOCX (python-docx:
heading sections, paragraphs, tables), HTML (BeautifulSoup: <main>/<article> when marked, scripts/nav/header/
footer/aside removed, heading sections, data tables; `html_main_content` on/auto: trafilatura's main content
first), Markdown (heading sections, fenced code kept, tables), TXT (UTF-8, else
charset-normalizer detection), CSV and JSON/JSONL (one block per record; `record_text_fields` / `record_title_field`
choose the text and the label), PPTX, XLSX and EML (`ingest.office_formats`). Tables become Markdown table blocks
(`ingest.tables`); every loader returns a `ParseReport` with its document (pages, methods, tables, warnings).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from assistant.dedup import is_garbage
from assistant.errors import AssistantError, PayloadTooLargeError, UnprocessableError, UnsupportedMediaError
from assistant.settings import IngestSettings
from ingest.document_types import Block, ParsedDocument
from ingest.report import ParseReport
from ingest.tables import markdown_table, split_markdown_tables, table_block

log = logging.getLogger(__name__)

PREFERRED_ENCODINGS = ("cp1252", "latin_1", "iso8859_15", "utf_16", "cp1250")
FENCES = ("```", "~~~")
MAX_HEADING_LEVEL = 6
HTML_BOILERPLATE = (
    "script",
    "style",
    "noscript",
    "nav",
    "footer",
    "header",
    "aside",
    "form",
    "iframe",
    "svg",
    "template",
)
HTML_BOILERPLATE_ROLES = ("navigation", "banner", "contentinfo")
MAX_TABLE_CELL_CHARS = 1000  # an HTML table cell longer than this is page layout, not data
MAX_COLSPAN = 50
HTML_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
HTML_HEADING_MARK = "@@heading-level-"  # a heading's stand-in paragraph through trafilatura: `main_content_text`
HTML_TABLE_MARK = "@@data-table-"  # a data table's stand-in paragraph, likewise
HTML_CONTENT_MARKS = ({"name": "main"}, {"name": "article"}, {"attrs": {"role": "main"}})
# In trafilatura's output a <pre> inside a paragraph, cell or inline element is inline code (DocBook's <code
# class="literal">, say), not a code block: read as words of its sentence rather than a block of its own.
HTML_CODE_BLOCK_PARENTS = ("html", "body", "div", "section", "article", "main", "blockquote")
HTML_BLOCKS = ("p", "div", "li", "tr", "pre", "table", "section", "article", "blockquote", "dd", "dt", "br", "ul", "ol")


@dataclass(frozen=True)
class LoaderOptions:
    """Loader settings (from `settings.ingest`)."""

    record_text_fields: tuple[str, ...] | None = None
    record_title_field: str | None = None
    max_unprintable_ratio: float = 0.05
    max_archive_bytes: int = 200 * 2**20
    max_archive_ratio: float = 100.0
    max_archive_entries: int = 5000
    max_pdf_pages: int = 2000
    max_text_chars: int = 50 * 2**20
    ocr: str = "auto"
    ocr_engine: str = "auto"
    ocr_languages: str = "eng"
    ocr_dpi: int = 200
    pdf_tables: bool = True
    html_main_content: str = "off"
    time_budget_s: float | None = None  # the parse budget (set by `ingest.parsing`): OCR stops starting pages near it

    @classmethod
    def from_settings(cls, ingest: IngestSettings) -> LoaderOptions:
        fields = ingest.record_text_fields
        return cls(
            record_text_fields=tuple(fields) if fields else None,
            record_title_field=ingest.record_title_field,
            max_unprintable_ratio=ingest.max_unprintable_ratio,
            max_archive_bytes=int(ingest.max_archive_mb * 2**20),
            max_archive_ratio=ingest.max_archive_ratio,
            max_archive_entries=ingest.max_archive_entries,
            max_pdf_pages=ingest.max_pdf_pages,
            max_text_chars=int(ingest.max_text_mb * 2**20),
            ocr=ingest.ocr,
            ocr_engine=ingest.ocr_engine,
            ocr_languages=ingest.ocr_languages,
            ocr_dpi=ingest.ocr_dpi,
            pdf_tables=ingest.pdf_tables,
            html_main_content=ingest.html_main_content,
        )


def stem(name: str) -> str:
    return PurePath(name).stem or name


# ---------------------------------------------------------------- text decoding


def decode_text(data: bytes, name: str, options: LoaderOptions) -> str:
    """UTF-8 (BOM stripped) when valid, else the encoding charset-normalizer detects; garbage is refused."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = _detect(data, name)
    if "\x00" in text or is_garbage(text, options.max_unprintable_ratio):
        raise UnprocessableError(f"{name}: binary or garbage content, not text")
    return text


def _detect(data: bytes, name: str) -> str:
    """charset-normalizer's best match; among equally good ones, the most common Western encodings win."""
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        raise UnprocessableError(f"{name}: binary or garbage content (no text encoding fits)")
    best = matches[0]
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    chosen = next((m for enc in PREFERRED_ENCODINGS for m in tied if m.encoding == enc), best)
    log.debug("%s decoded as %s", name, chosen.encoding)
    return str(chosen)


# ---------------------------------------------------------------- PDF


def load_pdf(data: bytes, name: str, options: LoaderOptions) -> ParsedDocument:
    from ingest.pdf import load_pdf as read_pdf

    return read_pdf(data, name, options)


# ---------------------------------------------------------------- DOCX


def load_docx(data: bytes, name: str, options: LoaderOptions) -> ParsedDocument:
    import docx
    from docx.table import Table

    check_archive(name, data, options)
    document = docx.Document(io.BytesIO(data))
    blocks: list[Block] = []
    report = ParseReport()
    section: str | None = None
    lines: list[str] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            _flush(blocks, lines, section)
            table = table_block([[cell.text for cell in row.cells] for row in item.rows], section=section)
            if table is not None:
                blocks.append(table)
                report.tables += 1
        elif _is_heading(item):
            _flush(blocks, lines, section)
            section, lines = item.text.strip() or section, [item.text]
        else:
            lines.append(item.text)
    _flush(blocks, lines, section)
    title = document.core_properties.title or stem(name)
    mime = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    return ParsedDocument(title, mime, blocks, report)


def check_archive(name: str, data: bytes, options: LoaderOptions) -> None:
    """Refuse a ZIP whose directory declares too many entries, too much uncompressed data or a bomb-like ratio.

    Only the central directory is read. The declared sizes bound what `zipfile` will inflate (it stops at an
    entry's declared size and fails its CRC check when the data says otherwise), so nothing larger is ever produced.
    """
    try:
        entries = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise UnprocessableError(f"{name}: not a valid Office (ZIP) file ({exc})") from exc
    if len(entries) > options.max_archive_entries:
        raise PayloadTooLargeError(
            f"{name}: {len(entries)} archive entries is over the limit of {options.max_archive_entries} "
            "(ingest.max_archive_entries)"
        )
    total = sum(entry.file_size for entry in entries)
    if total > options.max_archive_bytes:
        raise PayloadTooLargeError(
            f"{name}: the archive inflates to {total / 2**20:.0f} MB, over the {options.max_archive_bytes / 2**20:.0f}"
            " MB limit (ingest.max_archive_mb)"
        )
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size > 2**20 and ratio > options.max_archive_ratio:
            raise PayloadTooLargeError(
                f"{name}: entry {entry.filename!r} inflates {ratio:.0f}x, over the limit of "
                f"{options.max_archive_ratio:g}x (ingest.max_archive_ratio): refused as a likely zip bomb"
            )


def check_text_size(name: str, chars: int, options: LoaderOptions) -> None:
    if chars > options.max_text_chars:
        raise PayloadTooLargeError(
            f"{name}: yields more than {options.max_text_chars / 2**20:.0f} MB of text (ingest.max_text_mb)"
        )


def _is_heading(paragraph: Any) -> bool:
    style = paragraph.style.name if paragraph.style is not None else ""
    return bool(style) and (style.startswith("Heading") or style == "Title")


def _flush(blocks: list[Block], lines: list[str], section: str | None) -> None:
    text = "\n\n".join(line for line in lines if line.strip())
    if text:
        blocks.append(Block(text, section=section))
    lines.clear()


# ---------------------------------------------------------------- Markdown and HTML


def markdown_blocks(text: str) -> list[Block]:
    """Split at ATX headings (outside code fences); each block starts with its heading text."""
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False
    for line in text.splitlines():
        in_fence = in_fence != line.lstrip().startswith(FENCES)
        heading = None if in_fence else atx_heading(line)
        if heading is None:
            lines.append(line)
            continue
        _flush_markdown(blocks, lines, _section_label(path))
        level, title = heading
        path = [(lvl, name) for lvl, name in path if lvl < level] + [(level, title)]
        lines = [title, ""]
    _flush_markdown(blocks, lines, _section_label(path))
    return blocks


def _flush_markdown(blocks: list[Block], lines: list[str], section: str | None) -> None:
    """The section's lines as prose blocks and table blocks, in order."""
    for text, rows in split_markdown_tables("\n".join(lines)):
        table = table_block(rows, section=section) if rows is not None else None
        if table is not None:
            blocks.append(table)
        elif rows is None:
            _flush(blocks, [text], section)
    lines.clear()


def atx_heading(line: str) -> tuple[int, str] | None:
    """(level, title) of an ATX heading line (`## Title ##`), else None.

    Plain string operations, linear in the line: the regex this replaces (`^(#{1,6})\\s+(.+?)\\s*#*\\s*$`)
    backtracked cubically on `# a` + many spaces + `b` (minutes for a few thousand spaces).
    """
    level = len(line) - len(line.lstrip("#"))
    if not 1 <= level <= MAX_HEADING_LEVEL or level == len(line) or not line[level].isspace():
        return None
    title = line[level:].strip()
    core = title.rstrip("#").rstrip()  # an optional closing sequence of '#'
    title = core or title
    return (level, title) if title else None


def _section_label(path: list[tuple[int, str]]) -> str | None:
    return " > ".join(name for _level, name in path) or None


def load_markdown(data: bytes, name: str, options: LoaderOptions) -> ParsedDocument:
    text = decode_text(data, name, options)
    blocks = markdown_blocks(text)
    title = next((b.section for b in blocks if b.section), None) or stem(name)
    return ParsedDocument(title.split(" > ")[0], "text/markdown", blocks)


def load_html(data: bytes, name: str, options: LoaderOptions) -> ParsedDocument:
    """The page's text as heading sections and table blocks. With `html_main_content` 'on' (or 'auto' on a page
    that does not mark its content with <main>/<article>/role=main) trafilatura picks the main content first; when
    it finds none, the whole page is read as with 'off', and the report says so."""
    import warnings

    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():  # XHTML (the PostgreSQL manual) read as HTML is intended: lxml's HTML parser
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(data, "lxml")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else ""
    report = ParseReport()
    marked = options.html_main_content == "auto" and any(soup.find(**mark) for mark in HTML_CONTENT_MARKS)
    text = main_content_text(soup) if options.html_main_content != "off" and not marked else None
    if text is None:
        if options.html_main_content != "off" and not marked:
            report.warn("no main content found apart from boilerplate: the whole page was read")
        text = html_text(soup.find("main") or soup.find("article") or soup.body or soup)
    return ParsedDocument(title or stem(name), "text/html", markdown_blocks(text), report)


def main_content_text(soup: Any) -> str | None:
    """The page's main content as `html_text` reads it (headings, tables), as trafilatura separates it from
    navigation, menus, sidebars and footers; None when it finds none. (`soup`'s headings are rewritten.)

    Headings and data tables travel through trafilatura as marked paragraphs (holding their words, so that it
    judges them as content or boilerplate like any paragraph): it drops many headings whose text it keeps (every
    section title of the PostgreSQL manual, nested in DocBook's `titlepage` <div>s), and flattens tables inside
    lists into lines of cells; the marks come back as headings and as `html_table_rows`' Markdown tables.
    """
    import re

    import trafilatura
    from bs4 import BeautifulSoup

    for heading in soup.find_all(HTML_HEADINGS):
        level, title = heading.name[1], heading.get_text(" ", strip=True)
        heading.name, heading.attrs = "p", {}
        heading.string = f"{HTML_HEADING_MARK}{level} {title}"
    tables: list[str] = []
    for table in soup.find_all("table"):
        rows = html_table_rows(table) if table.parent is not None else None  # None: a layout table, or gone
        if rows is not None:
            words = " ".join(" ".join(row) for row in rows).split()
            table.name, table.attrs = "p", {}
            table.string = f"{HTML_TABLE_MARK}{len(tables)} {' '.join(words)}"
            tables.append(markdown_table(rows))
    extracted = trafilatura.extract(
        str(soup),
        output_format="html",
        include_tables=True,
        include_formatting=True,
        include_links=False,
        include_images=False,
        include_comments=False,
        favor_recall=True,  # a manual page's short sections and tables are content, not boilerplate
        deduplicate=False,
    )
    if not extracted:
        return None
    content = BeautifulSoup(extracted, "html.parser")  # keeps a <pre> inside a <p> where it is (lxml moves it out)
    for node in content.find_all(("p", "pre")):
        text = node.get_text(" ", strip=True)
        if node.name == "p" and text.startswith(HTML_HEADING_MARK):
            level, _space, title = text.removeprefix(HTML_HEADING_MARK).partition(" ")
            node.name, node.string = f"h{level}", title
        elif node.name == "pre" and node.parent is not None and node.parent.name not in HTML_CODE_BLOCK_PARENTS:
            node.unwrap()
    text = html_text(content.body or content)
    marks = re.compile(re.escape(HTML_TABLE_MARK) + r"(\d+) [^\n]*")
    text = marks.sub(lambda m: f"\n\n{tables[int(m[1])]}\n\n" if int(m[1]) < len(tables) else "", text)
    text = re.sub(re.escape(HTML_HEADING_MARK) + r"\d ", "", text)  # one trafilatura moved into a list or cell
    return text if text.strip() else None


def html_text(root: Any) -> str:
    """The visible text under `root`: boilerplate skipped, headings as Markdown `#` lines, blank lines after blocks.

    One iterative walk, linear in the tree. (Decomposing boilerplate and appending "\\n\\n" to every block in the
    tree, as this did before, costs O(depth) per append in BeautifulSoup: 10k nested <div>s took 20 s, 20k 80 s.)
    """
    from bs4 import CData, NavigableString, Tag

    parts: list[str] = []
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            parts.append("\n\n")
        elif isinstance(node, Tag):
            if node.name in HTML_BOILERPLATE or node.get("role") in HTML_BOILERPLATE_ROLES:
                continue
            if node.name in HTML_HEADINGS:
                parts.append(f"\n\n{'#' * int(node.name[1])} {node.get_text(' ', strip=True)}\n\n")
                continue
            if node.name == "table" and (rows := html_table_rows(node)) is not None:
                parts.append(f"\n\n{markdown_table(rows)}\n\n")  # `markdown_blocks` makes it a table block
                continue
            if node.name in HTML_BLOCKS:
                stack.append((node, True))
            stack.extend((child, False) for child in reversed(node.contents))
        elif type(node) in (NavigableString, CData):  # not comments, doctypes, processing instructions
            parts.append(str(node))
    return "".join(parts)


def html_table_rows(table: Any) -> list[list[str]] | None:
    """The cells of a data table (a `colspan` cell repeated), or None for a layout table (a nested table, cells
    holding whole paragraphs, `role="presentation"`, a navigation summary), which is read as text instead."""
    if table.find("table") is not None or table.get("role") in ("presentation", "none"):
        return None
    if "navigation" in str(table.get("summary") or "").lower():  # DocBook's navheader/navfooter link rows
        return None
    rows: list[list[str]] = []
    for row in table.find_all("tr"):
        cells: list[str] = []
        for cell in row.find_all(("th", "td"), recursive=False):
            text = cell.get_text(" ", strip=True)
            if len(text) > MAX_TABLE_CELL_CHARS:
                return None
            span = str(cell.get("colspan") or "1")
            cells.extend([text] * min(int(span) if span.isdigit() else 1, MAX_COLSPAN))
        rows.append(cells)
    return rows if sum(1 for row in rows if any(row)) >= 2 else None


def load_text(data: bytes, name: str, options: LoaderOptions) -> ParsedDocument:
    return ParsedDocument(stem(name), "text/plain", [Block(decode_text(data, name, options))])


# ---------------------------------------------------------------- records: CSV, JSON, JSONL


def record_block(record: Any, number: int, options: LoaderOptions) -> Block:
    """One record as text: the chosen fields' values, or every field as 'key: value'."""
    if not isinstance(record, dict):
        return Block(_as_text(record), section=f"record {number}")
    fields = options.record_text_fields
    if fields:
        text = "\n".join(_as_text(record[f]) for f in fields if record.get(f) not in (None, ""))
    else:
        text = "\n".join(f"{key}: {_as_text(value)}" for key, value in record.items() if value not in (None, ""))
    label = record.get(options.record_title_field) if options.record_title_field else None
    return Block(text, section=str(label) if label else f"record {number}", meta={"record": number})


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def load_csv(data: bytes, name: str, options: LoaderOptions) -> ParsedDocument:
    text = decode_text(data, name, options)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = csv.DictReader(io.StringIO(text), dialect=dialect)
    blocks = [record_block(row, number, options) for number, row in enumerate(rows, start=1)]
    return ParsedDocument(stem(name), "text/csv", blocks)


def load_json(data: bytes, name: str, options: LoaderOptions) -> ParsedDocument:
    try:
        value = json.loads(decode_text(data, name, options))
    except json.JSONDecodeError as exc:
        raise UnprocessableError(f"{name}: invalid JSON ({exc})") from exc
    records = value if isinstance(value, list) else [value]
    blocks = [record_block(record, number, options) for number, record in enumerate(records, start=1)]
    return ParsedDocument(stem(name), "application/json", blocks)


def load_jsonl(data: bytes, name: str, options: LoaderOptions) -> ParsedDocument:
    blocks = [record_block(record, number, options) for number, record in _jsonl_records(data, name, options)]
    return ParsedDocument(stem(name), "application/jsonl", blocks)


def _jsonl_records(data: bytes, name: str, options: LoaderOptions) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(decode_text(data, name, options).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise UnprocessableError(f"{name}: line {number} is not valid JSON ({exc})") from exc


# ---------------------------------------------------------------- dispatch

Loader = Callable[[bytes, str, LoaderOptions], ParsedDocument]
LOADERS: dict[str, Loader] = {
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".html": load_html,
    ".htm": load_html,
    ".xhtml": load_html,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".text": load_text,
    ".rst": load_text,
    ".csv": load_csv,
    ".json": load_json,
    ".jsonl": load_jsonl,
    ".ndjson": load_jsonl,
    ".pptx": lambda data, name, options: _formats().load_pptx(data, name, options),
    ".xlsx": lambda data, name, options: _formats().load_xlsx(data, name, options),
    ".xlsm": lambda data, name, options: _formats().load_xlsx(data, name, options),
    ".eml": lambda data, name, options: _formats().load_eml(data, name, options),
}


def _formats() -> Any:
    """`ingest.office_formats` (imported on use: it imports this module's helpers)."""
    import ingest.office_formats

    return ingest.office_formats


def loader_for(name: str) -> Loader:
    suffix = PurePath(name).suffix.lower()
    if suffix not in LOADERS:
        supported = ", ".join(sorted(LOADERS))
        raise UnsupportedMediaError(f"{name}: unsupported file type '{suffix or '(none)'}'; supported: {supported}")
    return LOADERS[suffix]


def load_document(name: str, data: bytes, options: LoaderOptions) -> ParsedDocument:
    """Parse one file (see the module contract for the errors)."""
    loader = loader_for(name)
    if not data:
        raise UnprocessableError(f"{name}: the file is empty")
    try:
        parsed = loader(data, name, options)
    except AssistantError:
        raise
    except Exception as exc:  # parsers raise many types on corrupt input; report them as one 422
        raise UnprocessableError(f"{name}: could not be parsed ({type(exc).__name__}: {exc})") from exc
    check_text_size(name, sum(len(block.text) for block in parsed.blocks), options)
    return parsed
