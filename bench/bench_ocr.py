"""OCR benchmark: retrieval on a scanned copy of a PDF against the same PDF with its text layer, and OCR seconds/page.

Contract: run `python bench/bench_ocr.py [--pages 20] [--engine rapidocr|tesseract] [--dpi 200]`. It builds its own
corpus from real text: SQuAD v1.1 dev paragraphs (/work/shared/data, `--per-page` paragraphs per page, wrapped
Helvetica lines) written as a text PDF, and a scanned copy of it (every page rendered with pypdfium2 at `--scan-dpi`
and saved by Pillow as an image-only JPEG PDF, as a scanner would). Both go through the real ingest service (parse
child, chunking, MiniLM, FAISS, SQLite) into two collections; the questions written on a page's paragraphs are its
known-item queries. It prints, side by side: hit@5 (a top-5 hit on the question's page), MRR@5, ingest seconds, and
the OCR seconds per page from the scanned document's parse report, with the scanned/text hit@5 ratio (goal >= 0.9).
Exit status 1 when the ratio is below 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-v1.1-dev-part1.json"
LINE_CHARS = 80  # Helvetica 12 pt between 1-inch margins
GOAL = 0.9


def corpus(pages: int, per_page: int, questions_per_paragraph: int) -> tuple[list[list[str]], list[tuple[str, int]]]:
    """Page texts (wrapped lines, a blank line between paragraphs) and (question, page) pairs, taken in order from
    the articles (paragraphs of one article share a page, as in a manual)."""
    data = json.loads(SQUAD.read_text())["data"]
    paragraphs = [p for article in data for p in article["paragraphs"]]
    page_lines: list[list[str]] = []
    questions: list[tuple[str, int]] = []
    for number in range(1, pages + 1):
        lines: list[str] = []
        for paragraph in paragraphs[(number - 1) * per_page : number * per_page]:
            lines.extend([*textwrap.wrap(paragraph["context"], LINE_CHARS), ""])
            questions.extend((qa["question"], number) for qa in paragraph["qas"][:questions_per_paragraph])
        page_lines.append(lines[:46])  # what fits on a letter page at 14 pt leading
    return page_lines, questions


def ingest(service: object, name: str, data: bytes, collection: str) -> tuple[float, dict[str, object]]:
    """(seconds, parse report) of ingesting one file."""
    from sqlalchemy import select

    from assistant.storage.orm import Document

    started = time.perf_counter()
    result = service.ingest_file(name, data, collection)  # type: ignore[attr-defined]
    seconds = time.perf_counter() - started
    if result.status != "ingested":
        raise SystemExit(f"{name}: {result.status} {result.error}")
    with service.db.session() as session:  # type: ignore[attr-defined]
        report = session.scalars(select(Document.parse_report).where(Document.id == result.document_id)).one()
    return seconds, dict(report or {})


def score(retriever: object, questions: list[tuple[str, int]], collection: str) -> tuple[float, float]:
    """(hit@5, MRR@5): the rank of the first hit on the question's page."""
    hits = 0
    reciprocal = 0.0
    for question, page in questions:
        found = retriever.search(question, k=5, collections=[collection])  # type: ignore[attr-defined]
        ranks = [rank for rank, hit in enumerate(found, start=1) if hit.page == page]
        hits += bool(ranks)
        reciprocal += 1 / ranks[0] if ranks else 0.0
    return hits / len(questions), reciprocal / len(questions)


def main() -> int:
    from assistant.parts import make_keyword_search
    from assistant.retrieval import Retriever
    from ingest.ingest_service import IngestService
    from tests.fixtures.documents import make_pdf, make_scanned_pdf
    from tests.fixtures.retrieval_env import make_settings, shared_embedder

    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--per-page", type=int, default=2, help="SQuAD paragraphs per page.")
    parser.add_argument("--questions", type=int, default=3, help="Questions per paragraph.")
    parser.add_argument("--engine", choices=["rapidocr", "tesseract"], default="rapidocr")
    parser.add_argument("--dpi", type=int, default=200, help="ingest.ocr_dpi: the resolution OCR renders at.")
    parser.add_argument("--scan-dpi", type=int, default=200, help="Resolution of the scanned copy's images.")
    args = parser.parse_args()

    pages, questions = corpus(args.pages, args.per_page, args.questions)
    text_pdf = make_pdf(pages, "SQuAD handbook")
    scanned_pdf = make_scanned_pdf(pages, dpi=args.scan_dpi)
    print(f"corpus: {len(pages)} pages, {len(questions)} known-item questions")
    print(f"OCR: {args.engine} at {args.dpi} dpi on a copy scanned at {args.scan_dpi} dpi")
    print(f"files: text PDF {len(text_pdf) / 1e3:.0f} kB, scanned PDF {len(scanned_pdf) / 1e3:.0f} kB")
    with tempfile.TemporaryDirectory() as folder:
        settings = make_settings(
            Path(folder) / "data", ocr_engine=args.engine, ocr_dpi=args.dpi, parse_timeout_s=3600.0, max_file_mb=200
        )
        service = IngestService.open(settings, shared_embedder())
        text_seconds, text_report = ingest(service, "handbook.pdf", text_pdf, "text")
        scan_seconds, scan_report = ingest(service, "handbook-scan.pdf", scanned_pdf, "scanned")
        retriever = Retriever(
            service.settings, service.db, service.index, service.embedder, keyword=make_keyword_search(service.db)
        )
        text_hit, text_mrr = score(retriever, questions, "text")
        scan_hit, scan_mrr = score(retriever, questions, "scanned")
        service.close()
    ocr_pages = int(dict(scan_report.get("methods") or {}).get("ocr", 0))
    ocr_seconds = float(scan_report.get("ocr_seconds") or 0.0)
    details = list(scan_report.get("page_details") or [])
    confidences = [float(p["confidence"]) for p in details if p.get("confidence") is not None]
    print()
    print(f"{'':24}{'text copy':>14}{'scanned copy':>16}")
    print(f"{'hit@5':24}{text_hit:>14.3f}{scan_hit:>16.3f}")
    print(f"{'MRR@5':24}{text_mrr:>14.3f}{scan_mrr:>16.3f}")
    print(f"{'ingest seconds':24}{text_seconds:>14.1f}{scan_seconds:>16.1f}")
    print(f"{'pages read by':24}{text_report.get('methods')!s:>14}{scan_report.get('methods')!s:>16}")
    print(f"{'OCR seconds / page':24}{'-':>14}{ocr_seconds / max(ocr_pages, 1):>16.2f}")
    if confidences:
        print(f"{'OCR mean confidence':24}{'-':>14}{sum(confidences) / len(confidences):>16.3f}")
    ratio = scan_hit / text_hit if text_hit else 0.0
    print(f"\nscanned/text hit@5 = {ratio:.3f} (goal >= {GOAL}); CPU cores: {os.cpu_count()}")
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
