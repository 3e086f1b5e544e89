"""HTML main-content benchmark: today's parser (`ingest.html_main_content: off`) against trafilatura's main content
(`on`) on the PostgreSQL manual, side by side in one run.

Contract: run `python bench/bench_html.py [--manual DIR] [--pages 300] [--questions 200]` with the manual of Debian's
postgresql-doc-15 (`apt-get download postgresql-doc-15 && dpkg-deb -x *.deb DIR`; default
/usr/share/doc/postgresql-doc-15/html). The questions are the manual's own back-of-book index (`bookindex.html`,
not ingested): each entry's term (a sub-entry prefixed by its entry, "autovacuum_naptime configuration parameter")
is a query, and the pages the index links it to are its gold pages. `--pages` pages are drawn at random (seeded),
every entry with 1-3 gold pages among them is a candidate, `--questions` are drawn. For each parser mode the pages
are ingested into a fresh data directory through `IngestService` (parse child process included, as in the server),
and it prints: ingest wall and CPU seconds, chunks, chunks holding the manual's navigation rows (Prev/Up/Home/
Next), hybrid recall@1/5/10 and MRR@10 by page, and the table questions of `bench/bench_tables.py` (recall@5 of the
chunk holding the answer's row, on the first `--table-files` manual pages with data tables).
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")
INDEX_PAGE = "bookindex.html"
MAX_GOLD_PAGES = 3  # an index entry pointing at more pages is too vague to be a known-item question
NAVIGATION_WORDS = ("Prev", "Up", "Home", "Next")
MODES = ("off", "on")


@dataclass(frozen=True)
class Question:
    text: str
    gold: frozenset[str]


def index_entries(manual: Path) -> list[tuple[str, frozenset[str]]]:
    """(term, linked page names) of every entry of the manual's index; sub-entries named with their entry."""
    import warnings

    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
    soup = BeautifulSoup((manual / INDEX_PAGE).read_bytes(), "lxml")
    entries = []
    for term in soup.select("div.index dt"):
        name = _own_text(term)
        parent = term.find_parent("dd")
        parent_term = parent.find_previous_sibling("dt") if parent is not None else None
        if parent_term is not None:
            name = f"{_own_text(parent_term)} {name}"
        pages = frozenset(a["href"].split("#")[0] for a in term.find_all("a", href=True))
        if name and pages:
            entries.append((name, pages))
    return entries


def _own_text(term: Any) -> str:
    """The entry's words before its first link (`autovacuum_naptime configuration parameter, Automatic Vacuuming`)."""
    words = []
    for node in term.children:
        if getattr(node, "name", None) == "a":
            break
        words.append(node.get_text(" ") if hasattr(node, "get_text") else str(node))
    return " ".join("".join(words).split()).rstrip(",").strip()


def pick(manual: Path, pages: int, questions: int, seed: int) -> tuple[list[Path], list[Question]]:
    chooser = random.Random(seed)
    every = sorted(p for p in manual.glob("*.html") if p.name != INDEX_PAGE)
    chosen = sorted(chooser.sample(every, min(pages, len(every))))
    names = {page.name for page in chosen}
    candidates = []
    for term, linked in index_entries(manual):
        gold = linked & names
        if gold and len(linked) <= MAX_GOLD_PAGES:
            candidates.append(Question(term, frozenset(gold)))
    return chosen, chooser.sample(candidates, min(questions, len(candidates)))


def scores(service: Any, asked: list[Question], collection: str, k: int = 10) -> dict[str, float]:
    """Recall@1/5/10 (a gold page among the top k chunks' pages) and MRR@10 (by the first gold chunk)."""
    from assistant.parts import make_keyword_search
    from assistant.retrieval import Retriever

    retriever = Retriever(
        service.settings, service.db, service.index, service.embedder, keyword=make_keyword_search(service.db)
    )
    ranks = []
    for question in asked:
        hits = retriever.search(question.text, k=k, collections=[collection])
        ranks.append(next((r for r, hit in enumerate(hits, 1) if hit.source in question.gold), None))
    total = len(asked)
    result = {f"recall@{n}": sum(1 for r in ranks if r is not None and r <= n) / total for n in (1, 5, 10)}
    result["MRR@10"] = sum(1 / r for r in ranks if r is not None) / total
    return result


def navigation_chunks(service: Any, collection: str) -> int:
    """Chunks holding the manual's navigation row (all of Prev, Up, Home, Next as words)."""
    from sqlalchemy import text

    with service.db.engine.connect() as connection:
        rows = connection.execute(text("SELECT text FROM chunks WHERE collection = :c"), {"c": collection}).all()
    flat = (f" {' '.join(chunk.split())} " for (chunk,) in rows)
    return sum(1 for chunk in flat if all(f" {word} " in chunk for word in NAVIGATION_WORDS))


def run(
    mode: str, pages: list[Path], asked: list[Question], table_pages: list[Path], table_qs: list[Any]
) -> dict[str, Any]:
    from bench_retrieval import Measured
    from bench_tables import recall as table_recall

    from ingest.ingest_service import IngestService
    from tests.fixtures.retrieval_env import make_settings, shared_embedder

    with tempfile.TemporaryDirectory() as folder:
        settings = make_settings(Path(folder) / "data", html_main_content=mode)
        service = IngestService.open(settings, shared_embedder())
        files = [(page.name, page.read_bytes()) for page in pages]
        with Measured() as ingest:
            results = service.ingest_files(files, "pg")
        failed = [r.source for r in results if r.error is not None]
        service.ingest_files([(page.name, page.read_bytes()) for page in table_pages], "tables")
        figures: dict[str, Any] = {
            "ingest s": ingest.seconds,
            "ingest CPU s": ingest.cpu,  # the machine may be shared: CPU seconds of this process and its children
            "chunks": sum(r.chunks for r in results),
            "failed files": len(failed),
            "navigation chunks": navigation_chunks(service, "pg"),
            **scores(service, asked, "pg"),
            "table recall@5": table_recall(service, table_qs, "tables"),
        }
        service.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manual", type=Path, default=MANUAL)
    parser.add_argument("--pages", type=int, default=300, help="Manual pages ingested (seeded random sample).")
    parser.add_argument("--questions", type=int, default=200, help="Index entries asked.")
    parser.add_argument("--table-files", type=int, default=40, help="Pages with data tables (bench_tables).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.manual / INDEX_PAGE).is_file():
        print(f"skipped: {args.manual} has no {INDEX_PAGE} (apt-get download postgresql-doc-15; dpkg-deb -x; --manual)")
        return 0
    from bench_tables import pick_tables, questions

    pages, asked = pick(args.manual, args.pages, args.questions, args.seed)
    tables = pick_tables(args.manual, args.table_files)
    table_pages = sorted({page for page, _rows in tables})
    table_qs = questions(tables, 3)
    print(
        f"{len(pages)} manual pages, {len(asked)} index-entry questions (gold: the pages the index links); "
        f"{len(table_qs)} one-cell table questions on {len(table_pages)} pages"
    )
    figures = {mode: run(mode, pages, asked, table_pages, table_qs) for mode in MODES}
    print(f"\n{'':24}{'today (off)':>14}{'trafilatura (on)':>18}")
    for name in figures["off"]:
        old, new = figures["off"][name], figures["on"][name]
        cells = (f"{old:>14.3f}{new:>18.3f}") if isinstance(old, float) else f"{old:>14}{new:>18}"
        print(f"{name:24}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
