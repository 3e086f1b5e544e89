"""OCR of scanned PDF pages (rendered with pypdfium2, read by RapidOCR or Tesseract): a scanned PDF becomes
searchable, the garbage/empty check picks the pages, `ingest.ocr` switches it, and the parse report says how each
page was read. The scans are made in the test: text PDFs rendered to images and saved as image-only PDFs."""

from __future__ import annotations

import difflib
import io
import re
import shutil
from collections.abc import Callable

import pytest
from sqlalchemy import select

from assistant.errors import UnprocessableError
from assistant.parts import make_keyword_search
from assistant.retrieval import Retriever
from assistant.storage.orm import Document
from ingest import ocr
from ingest.ingest_service import IngestService
from ingest.loaders import LoaderOptions, load_document
from ingest.pdf import needs_ocr
from tests.fixtures.documents import make_pdf, make_scanned_pdf

POLICY = [
    ["Backups run every night at two in the morning.", "Daily backups are kept for thirty days."],
    ["The VPN gateway is vpn.example.com on port 443.", "Report lost laptops to the security desk."],
]
OPTIONS = LoaderOptions()
STRIP = 150  # points of each scanned page kept (its top, where the text is): OCR time grows with the area


def scan(pages: list[list[str]]) -> bytes:
    return make_scanned_pdf(pages, height_pt=STRIP)


def _recall(lines: list[str], text: str) -> float:
    """How much of the lines' characters the OCR text has, in order (spaces ignored: RapidOCR's recogniser sometimes
    runs two words together, which the embedder's subword tokens mostly survive)."""
    expected, found = ("".join(re.findall(r"[a-z0-9.]", value.lower())) for value in (" ".join(lines), text))
    matcher = difflib.SequenceMatcher(None, expected, found, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / len(expected)


def _merge(*pdfs: bytes) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for pdf in pdfs:
        writer.append(PdfReader(io.BytesIO(pdf)))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_the_garbage_check_decides_which_pages_need_ocr() -> None:
    assert needs_ocr("", "auto", 0.05) and needs_ocr("  3 ", "auto", 0.05)
    assert needs_ocr("\ufffd\x01\x02" * 20, "auto", 0.05)  # a broken font's text layer
    assert not needs_ocr("Backups run every night.", "auto", 0.05)
    assert needs_ocr("Backups run every night.", "always", 0.05) and not needs_ocr("", "never", 0.05)


NO_TESSERACT = pytest.mark.skipif(shutil.which("tesseract") is None, reason="Debian's tesseract-ocr is not installed")


@pytest.mark.parametrize("engine", ["rapidocr", pytest.param("tesseract", marks=NO_TESSERACT)])
def test_a_scanned_pdf_is_read_by_ocr_page_by_page(engine: str) -> None:
    parsed = load_document("policy.pdf", scan(POLICY), LoaderOptions(ocr_engine=engine))
    assert [b.page for b in parsed.blocks] == [1, 2]
    for block, lines in zip(parsed.blocks, POLICY, strict=True):
        assert _recall(lines, block.text) >= 0.9, block.text
    report = parsed.report.to_dict()
    assert report["methods"] == {"ocr": 2} and report["ocr_engine"] == engine and report["warnings"] == []
    for page, block in zip(report["page_details"], parsed.blocks, strict=True):
        assert page["chars"] == len(block.text) and page["confidence"] > 0.8


def test_text_pages_keep_their_text_layer_and_scanned_ones_get_ocr() -> None:
    pdf = _merge(make_pdf([POLICY[0]]), scan([POLICY[1]]))
    parsed = load_document("mixed.pdf", pdf, OPTIONS)
    details = parsed.report.to_dict()["page_details"]
    assert [(d["page"], d["method"]) for d in details] == [(1, "text"), (2, "ocr")]
    assert parsed.report.ocr_engine == ("tesseract" if shutil.which("tesseract") else "rapidocr")  # ocr_engine: auto
    assert details[0]["confidence"] is None and parsed.blocks[0].text == "\n".join(POLICY[0])
    assert _recall(POLICY[1], parsed.blocks[1].text) >= 0.9


def test_ocr_never_refuses_a_scan_saying_why_and_always_reads_text_pages_too() -> None:
    with pytest.raises(UnprocessableError, match=r"ingest\.ocr is 'never'.*ingest\.ocr: auto"):
        load_document("policy.pdf", scan(POLICY[:1]), LoaderOptions(ocr="never"))
    parsed = load_document("text.pdf", make_pdf(POLICY[:1]), LoaderOptions(ocr="always"))
    assert parsed.report.pages[0].method == "ocr" and _recall(POLICY[0], parsed.blocks[0].text) >= 0.9


def test_a_partly_failed_document_is_kept_with_warnings_and_a_fully_failed_one_says_why() -> None:
    blank = scan([[""]])
    parsed = load_document("partly.pdf", _merge(make_pdf([POLICY[0]]), blank), OPTIONS)
    assert [p.method for p in parsed.report.pages] == ["text", "failed"]
    assert parsed.report.warnings == ["page 2: not read: no text layer and OCR found no text"]
    with pytest.raises(UnprocessableError, match=r"none of its 1 pages could be read.*OCR found no text"):
        load_document("blank.pdf", blank, OPTIONS)
    with pytest.raises(UnprocessableError, match=r"parse_timeout_s"):  # no time left for OCR
        load_document("late.pdf", scan(POLICY[:1]), LoaderOptions(time_budget_s=1e-9))


def test_a_missing_ocr_engine_is_named_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr, "_ENGINES", {})  # build the engine afresh, with no tesseract on PATH
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UnprocessableError, match="apt-get install tesseract-ocr"):
        load_document("policy.pdf", scan(POLICY[:1]), LoaderOptions(ocr_engine="tesseract"))
    parsed = load_document("text.pdf", make_pdf(POLICY[:1]), LoaderOptions(ocr="always", ocr_engine="tesseract"))
    assert parsed.report.pages[0].method == "text" and parsed.blocks[0].text == "\n".join(POLICY[0])
    assert "OCR not used" in parsed.report.warnings[0] and "apt-get install tesseract-ocr" in parsed.report.warnings[0]


def test_a_scanned_pdf_is_searchable_after_ingest(make_service: Callable[..., IngestService]) -> None:
    service = make_service()  # parsing (and so OCR) in the parse child process, under ingest.parse_timeout_s
    result = service.ingest_file("policy.pdf", scan(POLICY), "it")
    assert result.status == "ingested", result.error
    hits = Retriever(
        service.settings, service.db, service.index, service.embedder, keyword=make_keyword_search(service.db)
    ).search("VPN gateway port", k=1)
    assert hits[0].page == 2 and "vpn.example.com" in hits[0].text.lower()
    with service.db.session() as session:
        report = session.scalars(select(Document.parse_report)).one()
    assert report is not None and report["methods"] == {"ocr": 2}
