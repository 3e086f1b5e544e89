"""Hostile uploads: adversarial lines parse in linear time, archive bombs and oversized PDFs are refused before they
are inflated, a runaway file is stopped by the per-file time budget; a refused file changes nothing stored."""

from __future__ import annotations

import io
import re
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from sqlalchemy import func, select

from assistant.embedding import Embedder
from assistant.errors import PayloadTooLargeError
from assistant.storage import Chunk, Document
from ingest.chunking import Chunker
from ingest.ingest_service import IngestService
from ingest.loaders import LoaderOptions, atx_heading, load_document
from ingest.parsing import parse_in_process
from tests.fixtures.documents import make_docx, make_pdf

N = 100_000
ADVERSARIAL_LINES = {
    "heading_then_spaces": "# a" + " " * N + "b",
    "heading_spaces_hashes": "# a" + " #" * (N // 2) + "b",
    "many_hashes": "#" * N,
    "hash_space_hashes": "# " + "#" * N + " x",
    "emphasis_markers": "*_" * (N // 2),
    "punctuation_run": "!?.,;:" * (N // 6),
    "dots": "." * N,
    "nested_brackets": "[" * (N // 2) + "]" * (N // 2),
    "unclosed_links": "[a](" * (N // 4),
    "backticks": "`" * N,
    "whitespace_lines": "a\n" + " \t\n" * (N // 3),
    "angle_brackets": "<" * N,
}
OLD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")  # the regex the heading parser replaced (reference)


@dataclass(frozen=True)
class Stored:
    documents: int
    chunk_ids: tuple[int, ...]
    vectors: int
    index_bytes: int


def stored(service: IngestService) -> Stored:
    with service.db.session() as session:
        documents = int(session.scalar(select(func.count(Document.id))) or 0)
        chunk_ids = tuple(session.scalars(select(Chunk.id).order_by(Chunk.id)).all())
    path = service.settings.index_dir / "chunks.faiss.npz"
    return Stored(documents, chunk_ids, len(service.index), path.stat().st_size if path.exists() else 0)


@pytest.fixture
def seeded(make_service: Callable[..., IngestService]) -> Callable[..., IngestService]:
    """A service (with the given settings) over a data dir already holding one document."""

    def factory(**ingest: object) -> IngestService:
        service = make_service(**ingest)
        assert service.ingest_file("kept.md", b"# Kept\n\nThe canteen opens at noon.").ok
        return service

    return factory


@pytest.mark.parametrize("extension", [".md", ".html", ".txt"])
@pytest.mark.parametrize("shape", sorted(ADVERSARIAL_LINES))
def test_adversarial_line_parses_in_well_under_a_second(shape: str, extension: str) -> None:
    line = ADVERSARIAL_LINES[shape]
    data = (f"<html><body><h1>{line}</h1><p>{line}</p></body></html>" if extension == ".html" else line).encode()
    started = time.process_time()  # CPU seconds: backtracking shows there, other processes' load on a shared box not
    clean, _report = parse_in_process(f"hostile{extension}", data, LoaderOptions())
    seconds = time.process_time() - started
    assert seconds < 1.0, f"{shape}{extension}: {seconds:.2f} CPU s"
    assert clean.text.strip()


def test_heading_parser_agrees_with_the_old_regex_on_ordinary_lines() -> None:
    lines = ["# Title", "## Two  ##", "###### Six", "####### seven", "#NoSpace", "# C#", "#\tTabbed  ", "# a # b #"]
    lines += ["   # indented", "#", "# ", "## Closing ###   ", "text # not", "# Ünïcode ✓"]
    for line in lines:
        match = OLD_HEADING.match(line)
        expected = (len(match.group(1)), match.group(2)) if match else None
        assert atx_heading(line) == expected, line
    assert atx_heading("# a" + " " * N + "b") == (1, "a" + " " * N + "b")


@pytest.mark.parametrize("shape", ["dots", "nested_brackets", "emphasis_markers"])
def test_chunking_is_linear_in_the_line(shape: str, embedder: Embedder) -> None:
    """Chunking a separator-free line costs about 10x for 10x the length (it was one tokenizer call per char)."""
    chunker = Chunker(embedder, chunk_tokens=200, chunk_overlap=30)

    def chunk_seconds(length: int) -> float:
        clean, _ = parse_in_process("x.txt", ADVERSARIAL_LINES[shape][:length].encode(), LoaderOptions())
        started = time.process_time()  # tokenizer threads count too: CPU seconds, robust to a loaded machine
        chunks = chunker.chunk(clean)
        seconds = time.process_time() - started
        assert all(c.token_count <= embedder.max_tokens for c in chunks)
        assert all(clean.text[c.char_start : c.char_end] == c.text for c in chunks)
        return seconds

    small, large = chunk_seconds(N // 10), chunk_seconds(N)
    assert large < 10.0 and large < 30 * max(small, 0.05), (small, large)


def _zip_bomb_docx(declared_mb: int) -> bytes:
    """A real DOCX whose word/document.xml is padded with `declared_mb` MB of spaces (streamed: small memory)."""
    original = zipfile.ZipFile(io.BytesIO(make_docx()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as bomb:
        for entry in original.infolist():
            if entry.filename != "word/document.xml":
                bomb.writestr(entry, original.read(entry))
                continue
            xml = original.read(entry)
            head, tail = xml[: xml.rindex(b"</w:body>")], xml[xml.rindex(b"</w:body>") :]
            info = zipfile.ZipInfo("word/document.xml")
            info.compress_type = zipfile.ZIP_DEFLATED
            with bomb.open(info, "w", force_zip64=True) as handle:
                handle.write(head)
                block = b" " * 2**20
                for _ in range(declared_mb):
                    handle.write(block)
                handle.write(tail)
    return out.getvalue()


def test_docx_zip_bomb_is_refused_before_inflating(seeded: Callable[..., IngestService]) -> None:
    service = seeded()
    before = stored(service)
    bomb = _zip_bomb_docx(210)
    assert len(bomb) < 2 * 2**20  # ~200 KB on the wire
    tracemalloc.start()
    with pytest.raises(PayloadTooLargeError, match="max_archive_mb"):
        load_document("bomb.docx", bomb, LoaderOptions())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.0f} MB: the archive was inflated"
    result = service.ingest_file("bomb.docx", bomb)
    assert result.status == "failed" and result.status_code == 413
    assert stored(service) == before


def test_docx_entry_ratio_and_count_limits(seeded: Callable[..., IngestService]) -> None:
    service = seeded()
    before = stored(service)
    ratio = service.ingest_file("ratio.docx", _zip_bomb_docx(8))  # 8 MB of spaces: ~1000x
    assert ratio.status_code == 413 and "max_archive_ratio" in (ratio.error or "")
    service.loader_options = LoaderOptions(max_archive_entries=3)
    many = service.ingest_file("many.docx", make_docx())
    assert many.status_code == 413 and "max_archive_entries" in (many.error or "")
    assert stored(service) == before
    service.loader_options = LoaderOptions()
    assert service.ingest_file("fine.docx", make_docx()).status == "ingested"  # a normal DOCX still passes


def test_pdf_page_and_text_caps(seeded: Callable[..., IngestService]) -> None:
    service = seeded(max_pdf_pages=2)
    before = stored(service)
    pages = service.ingest_file("long.pdf", make_pdf([["one"], ["two"], ["three"]]))
    assert pages.status_code == 413 and "max_pdf_pages" in (pages.error or "")
    service.loader_options = LoaderOptions(max_text_chars=1000)
    text = service.ingest_file("big.txt", b"words and more words. " * 100)
    assert text.status_code == 413 and "max_text_mb" in (text.error or "")
    assert stored(service) == before
    assert service.ingest_file("short.pdf", make_pdf([["one"], ["two"]])).status == "ingested"


def test_runaway_file_is_stopped_by_the_time_budget(seeded: Callable[..., IngestService]) -> None:
    service = seeded(parse_timeout_s=1.0)
    before = stored(service)
    runaway = b"<div>x " * 400_000  # deeply nested: lxml + BeautifulSoup take far longer than the budget
    started = time.perf_counter()
    result = service.ingest_file("runaway.html", runaway)
    assert time.perf_counter() - started < 10
    assert result.status == "failed" and result.status_code == 422 and "parse_timeout_s" in (result.error or "")
    assert stored(service) == before
    after = service.ingest_file("next.md", b"# Next\n\nThe parking lot closes at nine.")  # a fresh parser child
    assert after.status == "ingested" and after.chunks == 1
    hits = service.index.search(np.asarray(service.embedder.embed(["parking lot"]))[0], 1)
    assert hits and hits[0].id == max(stored(service).chunk_ids)
