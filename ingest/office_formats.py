"""Office and mail formats: PowerPoint slides, Excel sheets and e-mail messages -> blocks.

Contract (each loader takes the file's bytes, its name and the `LoaderOptions`, returns a `ParsedDocument` with its
`ParseReport`, and raises `UnprocessableError` / `PayloadTooLargeError` like the other loaders):
- `load_pptx` (python-pptx): one block per slide, page = slide number, section = the slide's title (else
  'slide N'); text frames in shape order (groups opened), speaker notes appended as 'Speaker notes: ...'; slide
  tables become Markdown table blocks. The report has one 'text' page per slide.
- `load_xlsx` (openpyxl, read-only, cached formula values): one table block per sheet, section = the sheet name, its
  first non-empty row as the header every row is listed under (`ingest.tables`). Hidden sheets are skipped (a
  warning); chart sheets have no cells.
- `load_eml` (standard library `email`): a header block (subject, from, to, cc, date) and the body (plain text, else
  HTML made text) under section = the subject; attachments with a supported extension (not .eml: no nesting) are
  parsed by their own loader and text/* attachments read as text, each under section 'attachment: NAME'; other
  attachments are listed as warnings.
The OOXML formats go through `loaders.check_archive` first (zip bombs are refused before anything is inflated).
"""

from __future__ import annotations

import email
import email.policy
import io
import logging
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import PurePath
from typing import Any

from assistant.errors import AssistantError, UnprocessableError
from ingest.document_types import Block, ParsedDocument
from ingest.loaders import LoaderOptions, check_archive, check_text_size, decode_text, html_text, stem
from ingest.report import PageReport, ParseReport
from ingest.tables import table_block

log = logging.getLogger(__name__)

PPTX_MIME = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
EML_MIME = "message/rfc822"
MAIL_HEADERS = ("Subject", "From", "To", "Cc", "Date")


# ---------------------------------------------------------------- PowerPoint


def load_pptx(data: bytes, name: str, options: LoaderOptions) -> ParsedDocument:
    from pptx import Presentation

    check_archive(name, data, options)
    presentation = Presentation(io.BytesIO(data))
    report = ParseReport()
    blocks: list[Block] = []
    chars = 0
    for number, slide in enumerate(presentation.slides, start=1):
        title = _slide_title(slide)
        section = title or f"slide {number}"
        lines: list[str] = []
        tables: list[Block] = []
        for shape in _shapes(slide.shapes):
            if getattr(shape, "has_table", False) and shape.has_table:
                rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
                block = table_block(rows, page=number, section=section)
                if block is not None:
                    tables.append(block)
            elif getattr(shape, "has_text_frame", False) and shape.has_text_frame and shape.text_frame.text.strip():
                lines.append(shape.text_frame.text)
        notes = _notes(slide)
        if notes:
            lines.append(f"Speaker notes: {notes}")
        text = "\n\n".join(lines)
        if text.strip():
            blocks.append(Block(text, page=number, section=section))
        blocks.extend(tables)
        report.tables += len(tables)
        page_chars = len(text) + sum(len(block.text) for block in tables)
        report.pages.append(PageReport(number, "text" if page_chars else "failed", page_chars))
        chars += page_chars
        check_text_size(name, chars, options)
    if not report.pages:
        raise UnprocessableError(f"{name}: the presentation has no slides")
    title = presentation.core_properties.title or _first_title(blocks) or stem(name)
    return ParsedDocument(title, PPTX_MIME, blocks, report)


def _slide_title(slide: Any) -> str:
    shape = slide.shapes.title
    return " ".join(shape.text_frame.text.split()) if shape is not None and shape.has_text_frame else ""


def _shapes(shapes: Any) -> Iterator[Any]:
    """Shapes in order, the members of group shapes included (depth-first)."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _shapes(shape.shapes)
        else:
            yield shape


def _notes(slide: Any) -> str:
    if not slide.has_notes_slide:
        return ""
    frame = slide.notes_slide.notes_text_frame
    return frame.text.strip() if frame is not None else ""


def _first_title(blocks: list[Block]) -> str | None:
    return next((block.section for block in blocks if block.section and block.page == 1), None)


# ---------------------------------------------------------------- Excel


def load_xlsx(data: bytes, name: str, options: LoaderOptions) -> ParsedDocument:
    import openpyxl

    check_archive(name, data, options)
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    report = ParseReport()
    blocks: list[Block] = []
    chars = 0
    try:
        for sheet in workbook.worksheets:
            if sheet.sheet_state != "visible":
                report.warn(f"sheet {sheet.title!r}: skipped ({sheet.sheet_state})")
                continue
            rows = _sheet_rows(sheet, name, options, chars)
            block = table_block(rows, section=sheet.title)
            if block is None:
                report.warn(f"sheet {sheet.title!r}: empty")
                continue
            blocks.append(block)
            report.tables += 1
            chars += len(block.text)
            check_text_size(name, chars, options)
    finally:
        workbook.close()
    if not blocks:
        raise UnprocessableError(f"{name}: no sheet has any cell with a value")
    title = workbook.properties.title or stem(name)
    return ParsedDocument(title, XLSX_MIME, blocks, report)


def _sheet_rows(sheet: Any, name: str, options: LoaderOptions, chars: int) -> list[list[object]]:
    """The sheet's rows of values (trailing empty cells cut), the text size checked as they are read."""
    rows: list[list[object]] = []
    for values in sheet.iter_rows(values_only=True):
        row = list(values)
        while row and row[-1] in (None, ""):
            row.pop()
        rows.append([_value(value) for value in row])
        chars += sum(len(str(value)) for value in row if value is not None) + 3
        check_text_size(name, chars, options)
    return rows


def _value(value: object) -> object:
    """Whole floats as integers (Excel stores 2024 as 2024.0); dates in ISO form."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else value


# ---------------------------------------------------------------- e-mail


def load_eml(data: bytes, name: str, options: LoaderOptions) -> ParsedDocument:
    message = email.message_from_bytes(data, policy=email.policy.default)
    if not isinstance(message, EmailMessage) or not any(message.get(header) for header in MAIL_HEADERS):
        raise UnprocessableError(f"{name}: not an e-mail message (no Subject, From, To or Date header)")
    report = ParseReport()
    subject = _header(message, "Subject")
    section = subject or stem(name)
    headers = [f"{header}: {value}" for header in MAIL_HEADERS if (value := _header(message, header))]
    blocks = [Block("\n".join(headers), section=section)]
    body = _body(message, name, options)
    if body.strip():
        blocks.append(Block(body, section=section))
    else:
        report.warn("the message has no text body")
    for part in message.iter_attachments():
        blocks.extend(_attachment(part, name, options, report))
    return ParsedDocument(subject or stem(name), EML_MIME, blocks, report)


def _header(message: EmailMessage, header: str) -> str:
    try:
        value = message.get(header)
    except Exception:  # a malformed header (bad encoded word, bad date) is skipped, not fatal
        return ""
    return " ".join(str(value).split()) if value else ""


def _body(message: EmailMessage, name: str, options: LoaderOptions) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    text = _part_text(part, name, options)
    if part.get_content_type() == "text/html":
        from bs4 import BeautifulSoup

        return html_text(BeautifulSoup(text, "lxml"))
    return text


def _part_text(part: Any, name: str, options: LoaderOptions) -> str:
    payload = part.get_payload(decode=True) or b""
    charset = part.get_content_charset()
    if charset:
        try:
            return str(payload.decode(charset, errors="replace"))
        except LookupError:  # an unknown charset name: detect instead
            pass
    return decode_text(payload, name, options) if payload else ""


def _attachment(part: Any, name: str, options: LoaderOptions, report: ParseReport) -> list[Block]:
    from ingest.loaders import LOADERS, load_document

    filename = part.get_filename() or "attachment"
    section = f"attachment: {filename}"
    suffix = PurePath(filename).suffix.lower()
    payload = part.get_payload(decode=True) or b""
    if not payload:
        report.warn(f"{section}: empty")
        return []
    try:
        if suffix in LOADERS and suffix != ".eml":
            parsed = load_document(f"{name}/{filename}", payload, options)
            report.tables += parsed.report.tables
            report.warnings.extend(f"{section}: {warning}" for warning in parsed.report.warnings)
            return [Block(b.text, section=_join(section, b.section), meta=b.meta) for b in parsed.blocks]
        if part.get_content_maintype() == "text":
            return [Block(_part_text(part, f"{name}/{filename}", options), section=section)]
    except AssistantError as exc:
        report.warn(f"{section}: skipped ({exc.message})")
        return []
    report.warn(f"{section}: skipped (type {part.get_content_type()} is not read)")
    return []


def _join(section: str, inner: str | None) -> str:
    return f"{section} > {inner}" if inner else section
