"""Company documents through the real server: a scanned PDF uploaded over REST is read by OCR, searchable, and its
parse report (method per page, confidence, characters) is in `GET /v1/documents/{id}`; PPTX, XLSX and EML uploads
keep their pages and sections; a scan with OCR finding nothing is a 422 that says why and stores nothing."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.fixtures.documents import make_eml, make_pdf, make_pptx, make_scanned_pdf, make_xlsx
from tests.fixtures.live_server import LiveServer

SCANNED = [
    ["The fire assembly point is the north car park.", "Fire wardens wear yellow vests."],
    ["First aid kits are kept beside every lift.", "The defibrillator is at the main reception."],
]


def _upload(server: LiveServer, name: str, data: bytes) -> dict[str, Any]:
    """The file's result (inline 200, or the background task polled to the end); a refused upload's error body."""
    files = [("files", (name, data))]
    response = httpx.post(f"{server.base_url}/v1/documents", files=files, data={"collection": "company"}, timeout=300)
    if response.status_code == 202:
        task = response.json()
        for _ in range(3000):
            task = httpx.get(f"{server.base_url}/v1/documents/uploads/{task['id']}", timeout=30).json()
            if task["state"] == "done":
                return dict(task["results"][0])
            time.sleep(0.1)
        raise TimeoutError(f"upload {task['id']} not done")
    if response.status_code == 200:
        return dict(response.json()["data"][0])
    return {"status": "failed", "status_code": response.status_code, "error": response.json()["error"]["message"]}


def _document(server: LiveServer, document_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/v1/documents/{document_id}", timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_scanned_pdf_upload_is_searchable_with_its_parse_report(live_server: LiveServer) -> None:
    result = _upload(live_server, "safety-scan.pdf", make_scanned_pdf(SCANNED, height_pt=160))
    assert result["status"] == "ingested", result
    document = _document(live_server, result["document_id"])
    report = document["parse_report"]
    assert report["pages"] == 2 and report["methods"] == {"ocr": 2} and report["warnings"] == []
    assert [p["method"] for p in report["page_details"]] == ["ocr", "ocr"]
    assert all(p["confidence"] > 0.8 and p["chars"] > 30 for p in report["page_details"])
    assert {c["page"] for c in document["chunk_list"]} == {1, 2}
    hits = httpx.post(
        f"{live_server.base_url}/v1/retrieve",
        json={"query": "where is the defibrillator", "collections": ["company"]},
        timeout=60,
    ).json()["data"]
    assert hits[0]["document_id"] == result["document_id"] and hits[0]["page"] == 2


def test_a_scan_with_nothing_to_read_is_a_422_saying_why(live_server: LiveServer) -> None:
    result = _upload(live_server, "blank-scan.pdf", make_scanned_pdf([[""]], height_pt=120))
    assert result["status_code"] == 422 and "OCR found no text" in result["error"]
    listing = httpx.get(f"{live_server.base_url}/v1/documents", params={"collection": "company"}).json()["data"]
    assert "blank-scan.pdf" not in {d["source"] for d in listing}


def test_slides_sheets_and_mail_keep_pages_and_sections(live_server: LiveServer) -> None:
    slides = [
        ("Travel policy", ["Book trains under four hours"], "Mention the rail card."),
        ("Expenses", ["Submit receipts within thirty days"], ""),
    ]
    staff = [["Name", "Desk"], ["Grace Hopper", "B-212"], ["Ken Thompson", "C-101"]]
    files = {
        "travel.pptx": make_pptx(slides),
        "desks.xlsx": make_xlsx({"Desks": staff}),
        "move.eml": make_eml("Desk move", "Desks move on Monday.", [("plan.txt", "text/plain", b"Floor 2.")]),
        "plain.pdf": make_pdf([["A text page keeps its own text layer."]]),
    }
    chunks: dict[str, list[dict[str, Any]]] = {}
    reports: dict[str, dict[str, Any]] = {}
    for name, data in files.items():
        result = _upload(live_server, name, data)
        assert result["status"] == "ingested", result
        document = _document(live_server, result["document_id"])
        chunks[name], reports[name] = document["chunk_list"], document["parse_report"]
    assert {(c["page"], c["section"]) for c in chunks["travel.pptx"]} == {(1, "Travel policy"), (2, "Expenses")}
    assert any("Speaker notes: Mention the rail card." in c["text"] for c in chunks["travel.pptx"])
    assert reports["travel.pptx"]["pages"] == 2
    assert [c["text"].split("\n")[0] for c in chunks["desks.xlsx"]] == ["| Name | Desk |"]
    assert {c["section"] for c in chunks["desks.xlsx"]} == {"Desks"} and reports["desks.xlsx"]["tables"] == 1
    assert {c["section"] for c in chunks["move.eml"]} == {"Desk move", "attachment: plan.txt"}
    assert reports["plain.pdf"]["methods"] == {"text": 1}
