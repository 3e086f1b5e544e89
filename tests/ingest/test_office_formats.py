"""PPTX, XLSX and EML from files built in the test with python-pptx, openpyxl and `email`: sections, pages, the parse
report, and the per-format errors; then one of each through the ingest service to stored chunks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from assistant.errors import PayloadTooLargeError, UnprocessableError
from assistant.storage.orm import Chunk, Document
from ingest.ingest_service import IngestService
from ingest.loaders import LoaderOptions, load_document
from tests.fixtures.documents import make_docx, make_eml, make_pptx, make_xlsx

OPTIONS = LoaderOptions()
SLIDES = [
    ("Quarterly results", ["Revenue grew 12 percent", "Costs stayed flat"], "Mention the new Lisbon office."),
    ("Roadmap", ["Mobile app launches in May"], ""),
    ("Hiring", ["Four engineers join in June"], "Ask HR about the relocation budget."),
]
STAFF = [["Name", "Office", "Extension"], ["Ada Lovelace", "Berlin", 4410], ["Alan Turing", "Paris", 5520]]


def test_pptx_slides_are_pages_titled_sections_with_speaker_notes() -> None:
    parsed = load_document("deck.pptx", make_pptx(SLIDES), OPTIONS)
    assert [(b.page, b.section) for b in parsed.blocks] == [(1, "Quarterly results"), (2, "Roadmap"), (3, "Hiring")]
    for block, (title, lines, notes) in zip(parsed.blocks, SLIDES, strict=True):
        assert block.text.startswith(title) and all(line in block.text for line in lines)
        assert (f"Speaker notes: {notes}" in block.text) == bool(notes)
    report = parsed.report.to_dict()
    assert report["pages"] == 3 and report["methods"] == {"text": 3}
    assert [p["chars"] for p in report["page_details"]] == [len(b.text) for b in parsed.blocks]
    assert parsed.title == "Quarterly results"


def test_xlsx_one_table_section_per_sheet_rows_under_their_header() -> None:
    rooms = [["Room", "Seats"], ["Atlas", 12], ["Boreal", 6.0]]
    data = make_xlsx({"Staff": STAFF, "Rooms": rooms, "Notes": []})
    parsed = load_document("office.xlsx", data, OPTIONS)
    assert [b.section for b in parsed.blocks] == ["Staff", "Rooms"]
    assert all(b.meta["table"] for b in parsed.blocks)
    staff = parsed.blocks[0].text.split("\n")
    assert staff[0] == "| Name | Office | Extension |" and staff[1] == "| --- | --- | --- |"
    assert staff[2:] == ["| Ada Lovelace | Berlin | 4410 |", "| Alan Turing | Paris | 5520 |"]
    assert parsed.blocks[1].text.split("\n")[-1] == "| Boreal | 6 |"  # a whole float is written as an integer
    assert parsed.report.tables == 2 and parsed.report.warnings == ["sheet 'Notes': empty"]


def test_eml_subject_sender_date_body_and_text_attachments() -> None:
    attachments = [
        ("floors.txt", "text/plain", b"Floor 3 is engineering, floor 4 is sales."),
        ("handbook.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", make_docx()),
        ("logo.png", "image/png", b"\x89PNG\r\n\x1a\nnot really"),
    ]
    data = make_eml("Office move on Friday", "We move to the new office on Friday.\n\nPack your desks.", attachments)
    parsed = load_document("memo.eml", data, OPTIONS)
    assert parsed.title == "Office move on Friday"
    header = parsed.blocks[0].text
    for expected in (
        "Subject: Office move on Friday",
        "From: Dana Fischer <dana@example.com>",
        "Date: Mon, 02 Mar 2026",
    ):
        assert expected in header
    sections = [b.section for b in parsed.blocks]
    assert sections[:2] == ["Office move on Friday", "Office move on Friday"]
    assert "Pack your desks." in parsed.blocks[1].text
    by_section = {b.section: b.text for b in parsed.blocks}
    assert by_section["attachment: floors.txt"] == "Floor 3 is engineering, floor 4 is sales."
    assert "twenty-five days" in by_section["attachment: handbook.docx > Holidays"]
    assert parsed.report.warnings == ["attachment: logo.png: skipped (type image/png is not read)"]


def test_html_only_email_body_is_read_as_text() -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"], message["From"] = "Badge update", "it@example.com"
    message.set_content("<html><body><nav>MENU</nav><p>New badges are ready at reception.</p></body></html>", "html")
    parsed = load_document("badge.eml", message.as_bytes(), OPTIONS)
    body = parsed.blocks[1].text
    assert "New badges are ready at reception." in body and "<p>" not in body and "MENU" not in body


def test_broken_office_files_and_non_mail_are_refused() -> None:
    with pytest.raises(UnprocessableError, match=r"deck\.pptx"):
        load_document("deck.pptx", b"PK\x03\x04 not a zip", OPTIONS)
    with pytest.raises(UnprocessableError, match=r"book\.xlsx"):
        load_document("book.xlsx", make_docx(), OPTIONS)  # a valid ZIP, not a workbook
    with pytest.raises(UnprocessableError, match="not an e-mail"):
        load_document("notes.eml", b"just some words\nwithout headers", OPTIONS)
    with pytest.raises(PayloadTooLargeError, match="max_text_mb"):
        load_document("big.xlsx", make_xlsx({"S": [["a"]] + [["x" * 100]] * 50}), LoaderOptions(max_text_chars=1000))


def test_office_and_mail_files_are_stored_with_pages_and_sections(
    make_service: Callable[..., IngestService],
) -> None:
    service = make_service(chunk_tokens=64, chunk_overlap=8)
    files = [
        ("deck.pptx", make_pptx(SLIDES)),
        ("office.xlsx", make_xlsx({"Staff": STAFF})),
        ("memo.eml", make_eml("Office move", "We move on Friday.")),
    ]
    results = service.ingest_files(files, "company")
    assert [r.status for r in results] == ["ingested"] * 3, [r.error for r in results]
    with service.db.session() as session:
        rows = session.execute(select(Document.source, Chunk.page, Chunk.section, Chunk.text).join(Chunk)).all()
        reports = dict(session.execute(select(Document.source, Document.parse_report)).tuples().all())
    deck = [(page, section) for source, page, section, _text in rows if source == "deck.pptx"]
    assert sorted(set(deck)) == [(1, "Quarterly results"), (2, "Roadmap"), (3, "Hiring")]
    assert any("Lisbon" in text and page == 1 for source, page, _s, text in rows if source == "deck.pptx")
    assert {section for source, _p, section, _t in rows if source == "office.xlsx"} == {"Staff"}
    assert {section for source, _p, section, _t in rows if source == "memo.eml"} == {"Office move"}
    assert reports["deck.pptx"]["pages"] == 3 and reports["office.xlsx"]["tables"] == 1
