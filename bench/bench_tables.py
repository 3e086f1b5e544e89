"""Table benchmark: questions whose answer is one cell of a real table, recall@5 of a chunk holding that row, with
tables kept as tables against the former flattening, on the PostgreSQL manual's tables.

Contract: run `python bench/bench_tables.py [--manual DIR] [--files 40] [--questions 3]` with the manual of
Debian's postgresql-doc-15 (`apt-get download postgresql-doc-15 && dpkg-deb -x *.deb DIR`; default
/usr/share/doc/postgresql-doc-15/html). It picks the data tables (`table.table`) of the first `--files` pages that
have one, asks, for up to `--questions` rows of each, "What is the <column> of <first cell>?", and counts a hit when
one of the top 5 retrieved chunks holds the row's first cell and the answer cell together. Printed side by side:
- HTML pages, tables kept as Markdown tables (now) vs read as text (before: `html_table_rows` returning None, the
  former path, where a table's cells ran together as one paragraph);
- the same pages printed to PDF by headless Chromium (when `chromium` is installed; ruled tables found by pdfplumber
  now, `ingest.pdf_tables: false` before: the text layer only);
- the same tables as an XLSX workbook (one sheet per table, now) vs as CSV files (the records loader: one block per
  row as 'column: value' lines).
Parsing runs in-process (`ingest.parse_timeout_s: None`) so the 'before' switch applies.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")
MAX_ANSWER_CHARS = 60


@dataclass(frozen=True)
class Question:
    text: str
    key: str
    answer: str


def pick_tables(manual: Path, files: int) -> list[tuple[Path, list[list[str]]]]:
    """(page, rows) of the data tables of the first `files` pages holding one with a header and 3+ rows whose first
    cells are unique."""
    from bs4 import BeautifulSoup

    from ingest.loaders import html_table_rows

    chosen: list[tuple[Path, list[list[str]]]] = []
    pages = 0
    for page in sorted(manual.glob("*.html")):
        soup = BeautifulSoup(page.read_bytes(), "lxml")
        tables = [html_table_rows(t) for t in soup.select("table.table") if t.find("thead") is not None]
        good = [rows for rows in tables if rows and _usable(rows)]
        if good:
            chosen.extend((page, rows) for rows in good)
            pages += 1
        if pages >= files:
            break
    return chosen


def _usable(rows: list[list[str]]) -> bool:
    keys = [row[0] for row in rows[1:] if row]
    return len(rows) >= 4 and len(rows[0]) >= 2 and len(set(keys)) == len(keys) and all(len(k) >= 2 for k in keys)


def questions(tables: list[tuple[Path, list[list[str]]]], per_table: int, seed: int = 0) -> list[Question]:
    chooser = random.Random(seed)
    asked: list[Question] = []
    for _page, rows in tables:
        header = rows[0]
        candidates = [
            (row[0], header[c], row[c])
            for row in rows[1:]
            for c in range(1, min(len(row), len(header)))
            if row[c] and len(row[c]) <= MAX_ANSWER_CHARS and row[c] != row[0] and header[c]
        ]
        for key, column, answer in chooser.sample(candidates, min(per_table, len(candidates))):
            asked.append(Question(f"What is the {column} of {key}?", key, answer))
    return asked


def recall(service: Any, asked: list[Question], collection: str) -> float:
    """Share of questions with a top-5 chunk holding the row's first cell and the answer cell."""
    from assistant.parts import make_keyword_search
    from assistant.retrieval import Retriever

    retriever = Retriever(
        service.settings, service.db, service.index, service.embedder, keyword=make_keyword_search(service.db)
    )
    found = 0
    for question in asked:
        hits = retriever.search(question.text, k=5, collections=[collection])
        found += any(_holds_row(hit.text, question) for hit in hits)
    return found / len(asked)


def _holds_row(text: str, question: Question) -> bool:
    flat = " ".join(text.split())
    if "|" in flat:  # a Markdown table chunk: the two cells on one row
        return any(f"| {question.key} |" in f" {line}" and question.answer in line for line in text.split("\n") if line)
    return question.key in flat and question.answer in flat


def workbook(tables: list[tuple[Path, list[list[str]]]]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for number, (_page, rows) in enumerate(tables, start=1):
        sheet = book.create_sheet(f"Table {number}")
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def csv_file(rows: list[list[str]]) -> bytes:
    import csv

    buffer = io.StringIO()
    header = [name or f"column {i}" for i, name in enumerate(rows[0], start=1)]
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows[1:])
    return buffer.getvalue().encode()


def print_pdfs(pages: list[Path], folder: Path) -> list[tuple[str, bytes]]:
    """The pages printed to PDF by headless Chromium, as a user would print the manual; [] without chromium."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return []
    printed = []
    for page in pages:
        target = folder / f"{page.stem}.pdf"
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--print-to-pdf={target}", page.as_uri()]
        subprocess.run(command, capture_output=True, timeout=120, check=False)
        if target.exists():
            printed.append((target.name, target.read_bytes()))
    return printed


def run(
    tables: list[tuple[Path, list[list[str]]]], asked: list[Question], pdfs: list[tuple[str, bytes]], kept: bool
) -> tuple[float, float, float]:
    """(HTML, PDF, spreadsheet recall): tables kept (XLSX) or flattened (CSV records)."""
    import ingest.loaders
    from ingest.ingest_service import IngestService
    from tests.fixtures.retrieval_env import make_settings, shared_embedder

    original = ingest.loaders.html_table_rows
    if not kept:
        ingest.loaders.html_table_rows = lambda table: None  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as folder:
            settings = make_settings(Path(folder) / "data", parse_timeout_s=None, pdf_tables=kept)
            service = IngestService.open(settings, shared_embedder())
            pages = sorted({page for page, _rows in tables})
            service.ingest_files([(page.name, page.read_bytes()) for page in pages], "html")
            if kept:
                service.ingest_file("tables.xlsx", workbook(tables), "sheets")
            else:
                csvs = [(f"table-{i}.csv", csv_file(rows)) for i, (_page, rows) in enumerate(tables, start=1)]
                service.ingest_files(csvs, "sheets")
            if pdfs:
                service.ingest_files(pdfs, "pdf")
            pdf_recall = recall(service, asked, "pdf") if pdfs else float("nan")
            result = recall(service, asked, "html"), pdf_recall, recall(service, asked, "sheets")
            service.close()
    finally:
        ingest.loaders.html_table_rows = original
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manual", type=Path, default=MANUAL)
    parser.add_argument("--files", type=int, default=40, help="Manual pages with data tables to use.")
    parser.add_argument("--questions", type=int, default=3, help="Questions per table.")
    args = parser.parse_args()
    if not args.manual.is_dir():
        print(f"skipped: {args.manual} not found (apt-get download postgresql-doc-15; dpkg-deb -x; --manual DIR)")
        return 0
    tables = pick_tables(args.manual, args.files)
    asked = questions(tables, args.questions)
    pages = len({page for page, _rows in tables})
    print(f"{len(tables)} tables on {pages} manual pages, {len(asked)} one-cell questions, recall@5 of the row's chunk")
    with tempfile.TemporaryDirectory() as folder:
        pdfs = print_pdfs(sorted({page for page, _rows in tables}), Path(folder))
    print(f"{len(pdfs)} pages printed to PDF by chromium" if pdfs else "no chromium: the PDF row is skipped")
    before = run(tables, asked, pdfs, kept=False)
    now = run(tables, asked, pdfs, kept=True)
    print(f"\n{'':38}{'before':>10}{'now':>10}")
    rows = ("HTML pages (text -> tables)", "printed PDF (text -> pdfplumber)", "spreadsheet (CSV records -> XLSX)")
    for label, old, new in zip(rows, before, now, strict=True):
        print(f"{label:38}{old:>10.3f}{new:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
