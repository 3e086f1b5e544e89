"""Tables kept as tables: PDF (ruled, pdfplumber), DOCX, HTML, Markdown and spreadsheet tables become Markdown table
blocks; a table larger than a chunk is chunked by rows with its header in every chunk; a question about one cell
retrieves the chunk holding that row."""

from __future__ import annotations

import io
from collections.abc import Callable

from pypdf import PdfReader
from sqlalchemy import select

from assistant.dedup import SelectionReport
from assistant.parts import make_keyword_search
from assistant.retrieval import Retriever
from assistant.storage.orm import Chunk
from ingest.chunking import Chunker
from ingest.cleaning import clean_document
from ingest.ingest_service import IngestService
from ingest.loaders import LoaderOptions, load_document
from ingest.pdf import may_have_ruled_table
from ingest.tables import markdown_table, parse_table_row, split_markdown_tables
from tests.fixtures.documents import make_pdf, make_table_pdf, make_xlsx
from tests.fixtures.retrieval_env import shared_embedder

OPTIONS = LoaderOptions()
SETTINGS_ROWS = [["Setting", "Default", "Unit"], ["work_mem", "4MB", "kB"], ["shared_buffers", "128MB", "8kB"]]
FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Ken"]
LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Hamilton", "Thompson"]
CITIES = ["Berlin", "Paris", "Lisbon", "Oslo", "Vienna", "Madrid", "Dublin", "Prague"]


def _staff(count: int) -> list[list[object]]:
    """A staff list: unique names and extensions, so each row can be asked for by one cell."""
    rows: list[list[object]] = [["Employee", "Office", "Extension", "Team"]]
    for i in range(count):
        rows.append(
            [f"Person{i:03d} Surname{i * 7 % 101:03d}", CITIES[i % len(CITIES)], 4000 + i * 13, f"team {i % 5}"]
        )
    return rows


def _table_blocks(name: str, data: bytes) -> list[str]:
    return [b.text for b in load_document(name, data, OPTIONS).blocks if b.meta.get("table")]


def test_markdown_table_escapes_pipes_and_drops_empty_rows_and_columns() -> None:
    table = markdown_table([["Key", "", "Value"], ["a|b", "", "line\none"], ["", "", ""], ["c", None, 3]])
    assert table.split("\n") == ["| Key | Value |", "| --- | --- |", "| a\\|b | line one |", "| c | 3 |"]
    assert parse_table_row("| a\\|b | line one |") == ["a|b", "line one"]
    assert markdown_table([["", "x"], ["1", "2"]]).startswith("| column 1 | x |")


def test_tables_of_every_format_become_markdown_tables() -> None:
    expected = markdown_table(SETTINGS_ROWS)
    pdf = make_table_pdf("Memory settings are below.", SETTINGS_ROWS, "Restart after changing them.")
    parsed = load_document("settings.pdf", pdf, OPTIONS)
    assert [b.text for b in parsed.blocks] == ["Memory settings are below.", expected, "Restart after changing them."]
    assert parsed.report.tables == 1 and all(b.page == 1 for b in parsed.blocks)
    plain = PdfReader(io.BytesIO(make_pdf([["Memory settings are below.", "a | b | c"]]))).pages[0]
    assert may_have_ruled_table(PdfReader(io.BytesIO(pdf)).pages[0]) and not may_have_ruled_table(plain)
    html = "<html><body><h1>Memory</h1><p>Settings:</p><table><thead><tr><th>Setting</th><th>Default</th><th>Unit"
    html += "</th></tr></thead><tbody><tr><td>work_mem</td><td>4MB</td><td>kB</td></tr><tr><td>shared_buffers</td>"
    html += "<td>128MB</td><td>8kB</td></tr></tbody></table><p>After.</p></body></html>"
    assert _table_blocks("settings.html", html.encode()) == [expected]
    markdown = f"# Memory\n\nSettings:\n\n{expected}\n\nAfter.\n"
    assert _table_blocks("settings.md", markdown.encode()) == [expected]
    assert _table_blocks("settings.xlsx", make_xlsx({"Memory": SETTINGS_ROWS})) == [expected]
    assert split_markdown_tables("```\n| a | b |\n| --- | --- |\n```")[0][1] is None  # inside a code fence


def test_a_layout_table_in_html_is_read_as_text() -> None:
    paragraph = "This page uses a table for its layout. " * 40
    html = f"<html><body><table><tr><td>Menu</td><td><p>{paragraph}</p></td></tr></table></body></html>"
    parsed = load_document("old.html", html.encode(), OPTIONS)
    assert not any(b.meta.get("table") for b in parsed.blocks) and "for its layout" in parsed.blocks[0].text
    navigation = '<table summary="Navigation header"><tr><th colspan="3">9.3. Math</th></tr><tr><td>Prev</td>'
    navigation += "<td>Up</td><td>Next</td></tr></table><p>Body text.</p>"
    assert not any(b.meta.get("table") for b in load_document("nav.html", navigation.encode(), OPTIONS).blocks)


def test_a_table_larger_than_a_chunk_repeats_its_header_in_every_chunk() -> None:
    rows = _staff(60)
    clean = clean_document(
        load_document("staff.xlsx", make_xlsx({"Staff": rows}), OPTIONS), "s", SelectionReport(), 0.05
    )
    chunks = Chunker(shared_embedder(), 64, 8).chunk(clean)
    header = "| Employee | Office | Extension | Team |\n| --- | --- | --- | --- |"
    assert len(chunks) > 5
    seen: list[str] = []
    for number, chunk in enumerate(chunks):
        assert chunk.text.startswith(header + "\n"), chunk.text[:80]
        assert chunk.section == "Staff" and chunk.token_count <= 64
        body = chunk.text[len(header) + 1 :]
        located = clean.text[chunk.char_start : chunk.char_end]
        assert located == (chunk.text if number == 0 else body)  # the rows are where the offsets say
        seen.extend(body.split("\n"))
    assert seen == [f"| {' | '.join(str(cell) for cell in row)} |" for row in rows[1:]]  # every row once, whole


def test_a_cell_question_retrieves_the_chunk_holding_its_row(make_service: Callable[..., IngestService]) -> None:
    service = make_service(chunk_tokens=64, chunk_overlap=8)
    rows = _staff(80)
    result = service.ingest_file("staff.xlsx", make_xlsx({"Staff": rows}), "hr")
    assert result.status == "ingested" and result.chunks > 5
    retriever = Retriever(
        service.settings, service.db, service.index, service.embedder, keyword=make_keyword_search(service.db)
    )
    for row in rows[1::9]:
        hits = retriever.search(f"What is the phone extension of {row[0]}?", k=5, collections=["hr"])
        holding = [hit for hit in hits if f"| {row[0]} |" in hit.text]
        assert holding, f"{row[0]} not in the top 5"
        assert holding[0].text.startswith("| Employee | Office | Extension | Team |")
        assert f"| {row[2]} |" in holding[0].text  # the answer cell sits in the same row, under its column
    with service.db.session() as session:
        texts = session.scalars(select(Chunk.text).where(Chunk.collection == "hr")).all()
    assert all(text.startswith("| Employee |") for text in texts)
