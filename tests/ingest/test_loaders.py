"""Loaders on small real files: each format's blocks, labels and the per-format errors."""

from __future__ import annotations

import json

import pytest

from assistant.errors import UnprocessableError, UnsupportedMediaError
from ingest.cleaning import normalize_text
from ingest.loaders import LoaderOptions, load_document
from tests.fixtures.documents import HTML_PAGE, MARKDOWN_PAGE, make_docx, make_encrypted_pdf, make_pdf

OPTIONS = LoaderOptions()


def test_pdf_keeps_pages_and_title() -> None:
    parsed = load_document(
        "report.pdf", make_pdf([["Revenue grew.", "Costs fell."], ["Outlook is good."]], "Q3"), OPTIONS
    )
    assert parsed.title == "Q3"
    assert [b.page for b in parsed.blocks] == [1, 2]
    assert "Revenue grew." in parsed.blocks[0].text and "Outlook is good." in parsed.blocks[1].text


def test_password_protected_pdf_is_refused() -> None:
    with pytest.raises(UnprocessableError, match="password"):
        load_document("locked.pdf", make_encrypted_pdf(), OPTIONS)


def test_corrupt_pdf_is_a_422() -> None:
    with pytest.raises(UnprocessableError):
        load_document("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >> garbage", OPTIONS)


def test_docx_headings_paragraphs_and_tables() -> None:
    parsed = load_document("handbook.docx", make_docx(), OPTIONS)
    assert parsed.title == "Employee Handbook"
    sections = {b.section: b.text for b in parsed.blocks}
    assert "twenty-five days" in sections["Holidays"]
    assert "| Laptop | IT desk |" in sections["Equipment"]  # a table block: `ingest.tables`


def test_html_main_text_without_boilerplate() -> None:
    parsed = load_document("backup.html", HTML_PAGE, OPTIONS)
    text = " ".join(b.text for b in parsed.blocks)
    assert parsed.title == "Backup Policy"
    assert "every night" in text and "Monthly: 7 years" in text
    for noise in ("secret-tracker", "NAVIGATIONLINKS", "FOOTERTEXT", "intranet", "color: red"):
        assert noise not in text
    assert "Backup Policy > Retention" in [b.section for b in parsed.blocks]


def test_markdown_sections_ignore_code_fences() -> None:
    parsed = load_document("onboarding.md", MARKDOWN_PAGE.encode(), OPTIONS)
    assert [b.section for b in parsed.blocks] == ["Onboarding", "Onboarding > First day", "Onboarding > First week"]
    assert "# not a heading inside code" in parsed.blocks[1].text


def test_non_utf8_text_is_decoded_by_detection() -> None:
    text = "Le café de la crèche est fermé à Noël. Les élèves préfèrent les gâteaux à la crème brûlée. " * 5
    parsed = load_document("note.txt", text.encode("cp1252"), OPTIONS)
    assert "crème brûlée" in parsed.blocks[0].text


def test_binary_garbage_named_txt_is_refused() -> None:
    garbage = bytes(range(256)) * 20
    with pytest.raises(UnprocessableError, match=r"garbage|binary"):
        load_document("data.txt", garbage, OPTIONS)


def test_csv_one_block_per_row_with_chosen_fields() -> None:
    data = b"sku,name,description\n1,Widget,A small blue widget\n2,Gadget,A big red gadget\n"
    parsed = load_document("products.csv", data, LoaderOptions(("description",), "name"))
    assert [(b.section, b.text) for b in parsed.blocks] == [
        ("Widget", "A small blue widget"),
        ("Gadget", "A big red gadget"),
    ]


def test_json_and_jsonl_records() -> None:
    records = [{"q": "How do I reset my password?", "a": "Use the portal."}, {"q": "VPN?", "a": "Ask IT."}]
    parsed = load_document("faq.json", json.dumps(records).encode(), OPTIONS)
    assert len(parsed.blocks) == 2 and "q: How do I reset my password?" in parsed.blocks[0].text
    lines = "\n".join(json.dumps(r) for r in records).encode()
    assert len(load_document("faq.jsonl", lines, OPTIONS).blocks) == 2
    with pytest.raises(UnprocessableError, match="line 2"):
        load_document("bad.jsonl", b'{"a": 1}\n{broken\n', OPTIONS)


def test_unsupported_and_empty_files() -> None:
    with pytest.raises(UnsupportedMediaError) as info:
        load_document("slides.key", b"PK\x03\x04", OPTIONS)
    assert info.value.status_code == 415
    with pytest.raises(UnprocessableError, match="empty"):
        load_document("empty.txt", b"", OPTIONS)


def test_normalize_text_nfkc_and_whitespace() -> None:
    assert normalize_text("ﬁle\u00a0name\t  here\r\n\r\n\n  next\x07 para ") == "file name here\n\nnext para"
