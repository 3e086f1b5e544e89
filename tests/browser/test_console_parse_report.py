"""A document's parse report in the real console (headless Chromium against the real server): a PDF whose first page
has a text layer and whose second is a scan (an image only, read by OCR) is uploaded over REST; opening its row on
the Documents page shows the report the API gives for it: the page count, the method of each page (text layer, then
OCR, as the file was built), each page's OCR confidence and characters, and its warnings. The report closes again,
stays open across the list's refreshes, and a member scoped to the collection sees it too."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ADMIN_KEY, MEMBER_COLLECTION, MEMBER_KEY, call
from tests.browser.test_console import all_css, css, go, shot, sign_in, wait_for
from tests.fixtures.documents import make_pdf, make_scanned_pdf
from tests.fixtures.live_server import LiveServer

pytestmark = pytest.mark.browser

TEXT_PAGE = ["The cafeteria opens at half past seven.", "Breakfast is served until ten."]
SCANNED_PAGE = ["The fire assembly point is the north car park.", "Fire wardens wear yellow vests."]


def text_then_scanned_pdf() -> bytes:
    """Page 1: a text PDF page; page 2: the same kind of page rendered to an image (no text layer)."""
    import pypdfium2

    document = pypdfium2.PdfDocument(make_pdf([TEXT_PAGE]))
    scan = pypdfium2.PdfDocument(make_scanned_pdf([SCANNED_PAGE], height_pt=160))
    document.import_pages(scan)
    buffer = io.BytesIO()
    document.save(buffer)
    scan.close()
    document.close()
    return buffer.getvalue()


def upload(server: LiveServer, name: str, data: bytes, collection: str) -> str:
    """The stored document's id (a large upload runs in the background: its task is polled to the end)."""
    files = [("files", (name, data))]
    response = call(server, "POST", "/v1/documents", files=files, data={"collection": collection})
    assert response.status_code in (200, 202), response.text
    if response.status_code == 200:
        result = response.json()["data"][0]
    else:
        task_id = response.json()["id"]
        for _ in range(600):
            task = call(server, "GET", f"/v1/documents/uploads/{task_id}").json()
            if task["state"] == "done":
                break
            time.sleep(0.2)
        result = task["results"][0]
    assert result["status"] == "ingested", result
    return str(result["document_id"])


@pytest.fixture(scope="module")
def mixed_document(console_server: LiveServer) -> dict[str, Any]:
    document_id = upload(console_server, "canteen-and-safety.pdf", text_then_scanned_pdf(), MEMBER_COLLECTION)
    body = call(console_server, "GET", f"/v1/documents/{document_id}").json()
    assert [p["method"] for p in body["parse_report"]["page_details"]] == ["text", "ocr"]  # as the file was built
    return dict(body)


def open_report(driver: Any, document_id: str) -> Any:
    row = f'#documents-body tr[data-id="{document_id}"]'
    wait_for(driver, lambda d: css(d, row), what="the document's row")
    css(driver, f"{row} button.report-toggle").click()
    report = f'#documents-body tr.doc-report[data-report-for="{document_id}"]'
    wait_for(driver, lambda d: all_css(d, f"{report} table.report-pages tbody tr"), what="the parse report's pages")
    return css(driver, report)


def shown_pages(report: Any) -> list[dict[str, str]]:
    rows = report.find_elements("css selector", "table.report-pages tbody tr")
    cells = [[td.text for td in row.find_elements("css selector", "td")] for row in rows]
    return [
        {"page": page, "method_attr": str(row.get_attribute("data-method")), "method": method, "confidence": conf,
         "chars": chars}
        for row, (page, method, conf, chars) in zip(rows, cells, strict=True)
    ]  # fmt: skip


def test_a_documents_parse_report_shows_the_method_of_each_page(
    console_server: LiveServer, browser: Any, mixed_document: dict[str, Any], screenshot_dir: Path
) -> None:
    expected = mixed_document["parse_report"]
    sign_in(browser, console_server, ADMIN_KEY)
    go(browser, "documents")
    report = open_report(browser, mixed_document["id"])
    toggle = css(browser, f'#documents-body tr[data-id="{mixed_document["id"]}"] button.report-toggle')
    assert toggle.get_attribute("aria-expanded") == "true"

    pages = shown_pages(report)
    assert [p["method_attr"] for p in pages] == ["text", "ocr"]
    assert [p["method"] for p in pages] == ["text layer", "OCR"]
    for shown, page in zip(pages, expected["page_details"], strict=True):
        assert shown["page"] == str(page["page"]) and shown["chars"] == str(page["chars"])
        confidence = "—" if page["confidence"] is None else f"{page['confidence'] * 100:.1f}%"
        assert shown["confidence"] == confidence
    assert pages[0]["confidence"] == "—" and pages[1]["confidence"].endswith("%")  # OCR has a confidence, text none

    summary = {
        dt.text: dd.text
        for dt, dd in zip(
            report.find_elements("css selector", ".report-summary dt"),
            report.find_elements("css selector", ".report-summary dd"),
            strict=True,
        )
    }
    assert summary["Pages"] == str(expected["pages"]) == "2"
    assert summary["Read by"] == "text layer: 1 · OCR: 1"
    assert summary["Tables found"] == str(expected["tables"])
    assert summary["OCR engine"].startswith(str(expected["ocr_engine"]))
    warnings = [li.text for li in report.find_elements("css selector", "ul.report-warnings li")]
    assert warnings == expected["warnings"]
    if not warnings:
        assert report.find_element("css selector", ".report-warnings").text == "No warnings."
    shot(browser, screenshot_dir, "09-parse-report")

    # the list refreshes (a filter change): the report stays open; the toggle closes it
    from selenium.webdriver.support.ui import Select

    Select(css(browser, "#filter-collection")).select_by_value(MEMBER_COLLECTION)
    wait_for(browser, lambda d: len(all_css(d, "tr.doc-report table.report-pages tbody tr")) == 2, what="still open")
    css(browser, f'#documents-body tr[data-id="{mixed_document["id"]}"] button.report-toggle').click()
    wait_for(browser, lambda d: not all_css(d, "tr.doc-report"), what="the report closed")
    toggle = css(browser, f'#documents-body tr[data-id="{mixed_document["id"]}"] button.report-toggle')
    assert toggle.get_attribute("aria-expanded") == "false"


def test_a_member_sees_the_parse_report_of_a_document_in_its_collection(
    console_server: LiveServer, browser: Any, mixed_document: dict[str, Any]
) -> None:
    sign_in(browser, console_server, MEMBER_KEY)
    go(browser, "documents")
    report = open_report(browser, mixed_document["id"])
    assert [p["method_attr"] for p in shown_pages(report)] == ["text", "ocr"]
