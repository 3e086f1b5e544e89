"""PDF pages -> blocks: the text layer (pypdf), ruled tables as Markdown tables (pdfplumber), OCR for scanned pages.

Contract: `load_pdf(data, name, options)` returns one text block per page (page = its 1-based number) plus one
table block per table found, and a `ParseReport` with each page's method:
- 'text': the page's own text layer. With `options.pdf_tables`, pdfplumber looks for ruled tables on the pages whose
  content stream draws lines or rectangles (`may_have_ruled_table`: pdfplumber is 20-30x slower than pypdf); each
  table becomes a Markdown table block (`ingest.tables`) and the page's text is what lies outside the tables, read
  band by band from the top so text above a table stays before it.
- 'ocr': the page rendered (pypdfium2, `options.ocr_dpi`) and recognised (`ingest.ocr`, `options.ocr_engine`).
  `options.ocr` = 'auto' reads a page by OCR when its text layer has fewer than `MIN_TEXT_CHARS` non-space
  characters or is garbage (`assistant.dedup.is_garbage`, the same check cleaning applies); 'always' every page
  (the text layer is kept when OCR finds nothing); 'never' none.
- 'failed': nothing usable (no text layer and OCR off, unavailable, empty or out of time); the reason is a warning.
A document where every page failed is refused (422) with the reason; a partly failed one is returned with its
warnings. OCR stops starting pages once `OCR_BUDGET_SHARE` of `options.time_budget_s` (the parse budget) is spent,
so a long scan is stored with the pages read so far and a warning naming `ingest.parse_timeout_s`, instead of the
whole file being killed at the deadline.
"""

from __future__ import annotations

import io
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assistant.dedup import is_garbage
from assistant.errors import PayloadTooLargeError, UnprocessableError
from ingest import ocr
from ingest.document_types import Block, ParsedDocument
from ingest.report import PageReport, ParseReport
from ingest.tables import table_block

if TYPE_CHECKING:
    from ingest.loaders import LoaderOptions

log = logging.getLogger(__name__)

MIN_TEXT_CHARS = 10  # fewer non-space characters than this in the text layer: treat the page as scanned
OCR_BUDGET_SHARE = 0.8  # OCR starts no page after this share of the parse time budget
MIN_RULES = 4  # a ruled table draws at least this many lines or rectangles
_PATH_OPERATORS = re.compile(rb"[\d.]\s+(?:re|l)\s")  # 'x y w h re' and 'x y l' after a number operand


@dataclass
class _Pdf:
    """One PDF being read: its bytes, the options, the report and the lazily opened helpers."""

    data: bytes
    name: str
    options: LoaderOptions
    report: ParseReport = field(default_factory=ParseReport)
    deadline: float | None = None
    plumber: Any = None
    renderer: ocr.PageRenderer | None = None
    ocr_error: str | None = None  # the engine could not start: every later page gets the same reason


def load_pdf(data: bytes, name: str, options: LoaderOptions) -> ParsedDocument:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not _decrypt_empty(reader):
        raise UnprocessableError(f"{name}: the PDF is password-protected; upload an unencrypted copy")
    pages = len(reader.pages)
    if pages > options.max_pdf_pages:
        raise PayloadTooLargeError(
            f"{name}: {pages} pages is over the {options.max_pdf_pages} page limit (ingest.max_pdf_pages)"
        )
    pdf = _Pdf(data, name, options)
    if options.time_budget_s is not None:
        pdf.deadline = time.monotonic() + OCR_BUDGET_SHARE * options.time_budget_s
    blocks: list[Block] = []
    try:
        for number, page in enumerate(reader.pages, start=1):
            blocks.extend(_read_page(pdf, page, number))
            _check_size(pdf, blocks)
    finally:
        _close(pdf)
    _refuse_if_nothing_read(pdf, pages)
    metadata: Any = reader.metadata or {}
    title = str(metadata.get("/Title") or "") or _stem(name)
    return ParsedDocument(title, "application/pdf", blocks, pdf.report)


def _decrypt_empty(reader: Any) -> bool:
    """Open a PDF encrypted with an empty user password (common for 'no copy' PDFs)."""
    try:
        return bool(reader.decrypt(""))
    except Exception:  # pypdf raises several types for wrong passwords / missing crypto
        return False


def _stem(name: str) -> str:
    from ingest.loaders import stem

    return stem(name)


def _check_size(pdf: _Pdf, blocks: list[Block]) -> None:
    from ingest.loaders import check_text_size

    check_text_size(pdf.name, sum(len(block.text) for block in blocks), pdf.options)


def needs_ocr(text: str, mode: str, max_unprintable_ratio: float) -> bool:
    """Whether a page with this text layer is read by OCR under `ingest.ocr` = `mode`."""
    if mode == "never":
        return False
    if mode == "always":
        return True
    return len("".join(text.split())) < MIN_TEXT_CHARS or is_garbage(text, max_unprintable_ratio)


def _read_page(pdf: _Pdf, page: Any, number: int) -> list[Block]:
    try:
        text = page.extract_text() or ""
    except Exception as exc:  # one broken content stream must not lose the other pages
        pdf.report.warn(f"page {number}: text layer unreadable ({type(exc).__name__}: {exc})")
        text = ""
    if needs_ocr(text, pdf.options.ocr, pdf.options.max_unprintable_ratio):
        blocks = _ocr_page(pdf, number, text)
        if blocks is not None:
            return blocks
    if not text.strip() or is_garbage(text, pdf.options.max_unprintable_ratio):
        _fail_page(pdf, number, text)
        return []
    blocks = _text_page(pdf, number, text, page)
    chars = sum(len(block.text) for block in blocks)
    pdf.report.pages.append(PageReport(number, "text", chars))
    return blocks


def _fail_page(pdf: _Pdf, number: int, text: str) -> None:
    reason = "its text layer is garbage" if text.strip() else "it has no text layer"
    if pdf.options.ocr == "never":
        reason += " and ingest.ocr is 'never'"
    pdf.report.pages.append(PageReport(number, "failed", 0))
    pdf.report.warn(f"page {number}: not read: {reason}")


def _ocr_page(pdf: _Pdf, number: int, text: str) -> list[Block] | None:
    """The page's OCR text as a block, or None when OCR gave nothing (the caller falls back to the text layer)."""
    reason = _ocr_unavailable(pdf)
    if reason is None:
        started = time.perf_counter()
        try:
            if pdf.renderer is None:
                pdf.renderer = ocr.PageRenderer(pdf.data)
            engine = ocr.engine(pdf.options.ocr_engine, pdf.options.ocr_languages)
            pdf.report.ocr_engine = engine.name
            recognised = engine.recognise(pdf.renderer.render(number - 1, pdf.options.ocr_dpi))
        except ocr.OcrUnavailableError as exc:
            pdf.ocr_error = str(exc)
            reason = str(exc)
        except Exception as exc:  # a page that cannot be rendered or recognised fails alone
            reason = f"OCR failed ({type(exc).__name__}: {exc})"
        finally:
            pdf.report.ocr_seconds += time.perf_counter() - started
    if reason is None and recognised.text.strip():
        pdf.report.pages.append(PageReport(number, "ocr", len(recognised.text), recognised.confidence))
        return [Block(recognised.text, page=number, meta={"ocr": True})]
    if text.strip() and not is_garbage(text, pdf.options.max_unprintable_ratio):
        if reason is not None:
            pdf.report.warn(f"page {number}: read from its text layer, OCR not used: {reason}")
        return None  # a short but real text layer: keep it
    pdf.report.pages.append(PageReport(number, "failed", 0))
    pdf.report.warn(f"page {number}: not read: {reason or 'no text layer and OCR found no text'}")
    return []


def _ocr_unavailable(pdf: _Pdf) -> str | None:
    if pdf.ocr_error is not None:
        return pdf.ocr_error
    if pdf.deadline is not None and time.monotonic() > pdf.deadline:
        return (
            f"OCR skipped: {OCR_BUDGET_SHARE:.0%} of the parse time budget was spent "
            "(raise ingest.parse_timeout_s for long scanned documents)"
        )
    return None


def _text_page(pdf: _Pdf, number: int, text: str, page: Any) -> list[Block]:
    """The page's text block, or with `pdf_tables` its tables and the text around them."""
    if not pdf.options.pdf_tables or not may_have_ruled_table(page):
        return [Block(text, page=number)]
    try:
        found = _tables_and_text(pdf, number)
    except Exception as exc:  # table finding is best effort: the plain text layer is still right
        pdf.report.warn(f"page {number}: table detection failed ({type(exc).__name__}: {exc})")
        return [Block(text, page=number)]
    if found is None:
        return [Block(text, page=number)]
    return found


def may_have_ruled_table(page: Any) -> bool:
    """Whether the page draws enough straight lines or rectangles to hold a ruled table (or uses form XObjects,
    which may draw one): a scan of its content stream, so pdfplumber (about 0.3 s a page, 20-30x pypdf's text
    extraction) only reads the pages that can have a table."""
    try:
        contents = page.get_contents()
        data = contents.get_data() if contents is not None else b""
        resources = page.get("/Resources") or {}
        xobjects = resources.get("/XObject") or {}
        forms = any(xobject.get_object().get("/Subtype") == "/Form" for xobject in xobjects.values())
    except Exception:  # an unreadable stream: let pdfplumber decide
        return True
    return forms or len(_PATH_OPERATORS.findall(data)) >= MIN_RULES


def _tables_and_text(pdf: _Pdf, number: int) -> list[Block] | None:
    """Text bands and Markdown tables of a page in top-to-bottom order, or None when it has no table."""
    if pdf.plumber is None:
        import pdfplumber

        pdf.plumber = pdfplumber.open(io.BytesIO(pdf.data))
    page = pdf.plumber.pages[number - 1]
    try:
        tables = sorted(page.find_tables(), key=lambda table: table.bbox[1])
        tables = [table for table in tables if len(table.rows) >= 2]
        if not tables:
            return None
        boxes = [table.bbox for table in tables]
        outside = page.filter(lambda obj: not any(_inside(obj, box) for box in boxes))
        blocks: list[Block] = []
        top = page.bbox[1]
        for table in tables:
            blocks.extend(_band(outside, page, top, table.bbox[1], number))
            block = table_block(table.extract(), page=number)
            if block is not None:
                blocks.append(block)
                pdf.report.tables += 1
            top = max(top, table.bbox[3])
        blocks.extend(_band(outside, page, top, page.bbox[3], number))
        return blocks
    finally:
        page.close()


def _inside(obj: dict[str, Any], box: tuple[float, float, float, float]) -> bool:
    if "x0" not in obj or "top" not in obj:
        return False
    middle_x = (obj["x0"] + obj["x1"]) / 2
    middle_y = (obj["top"] + obj["bottom"]) / 2
    return box[0] <= middle_x <= box[2] and box[1] <= middle_y <= box[3]


def _band(outside: Any, page: Any, top: float, bottom: float, number: int) -> list[Block]:
    if bottom - top < 1:
        return []
    crop = outside.crop((page.bbox[0], top, page.bbox[2], bottom), strict=False)
    text = crop.extract_text() or ""
    return [Block(text, page=number)] if text.strip() else []


def _refuse_if_nothing_read(pdf: _Pdf, pages: int) -> None:
    """A document where no page gave text is an error saying why (the first reasons, e.g. OCR off)."""
    if not pages:
        raise UnprocessableError(f"{pdf.name}: the PDF has no pages")
    if any(page.method != "failed" for page in pdf.report.pages):
        return
    reasons = list(dict.fromkeys(warning.split(": not read: ", 1)[-1] for warning in pdf.report.warnings))
    hint = " Set ingest.ocr: auto to read scanned pages." if pdf.options.ocr == "never" else ""
    raise UnprocessableError(f"{pdf.name}: none of its {pages} pages could be read ({'; '.join(reasons[:3])}).{hint}")


def _close(pdf: _Pdf) -> None:
    if pdf.plumber is not None:
        pdf.plumber.close()
    if pdf.renderer is not None:
        pdf.renderer.close()
