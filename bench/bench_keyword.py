"""Keyword search quality on both engines: SQLite FTS5 BM25 vs PostgreSQL full-text search, alone and in hybrid.

Contract: run `python bench/bench_keyword.py [--questions N] [--database-url postgresql+psycopg://...]`. On the SQuAD
file (paragraphs = corpus, one file per paragraph) it ingests the corpus once through `IngestService` into
PostgreSQL (a throwaway server from `tests/fixtures/postgres.py` unless `--database-url` names an empty database),
copies the same document and chunk rows into a fresh SQLite database, and searches both with the same FAISS index and
embedder, so only the keyword search differs. It prints, for N evenly sampled questions, recall@1/5/10, MRR@10 and
the mean query time for dense (the shared reference), keyword-only (`mode=bm25`) and hybrid on each engine, for the
PostgreSQL rankings (BM25 in SQL, idf-weighted or plain `ts_rank_cd`, its length normalization 1 or 0).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from sqlalchemy import insert, select

from assistant.embedding import Embedder, make_embedder
from assistant.parts import make_keyword_search
from assistant.retrieval import Retriever
from assistant.retrieval.ranking_metrics import RankingScores
from assistant.settings import Settings, load_settings
from assistant.storage.db import Database
from assistant.storage.orm import Chunk, Document
from ingest.ingest_service import IngestService
from ingest.retrieval_eval import SquadCorpus, evaluate, load_squad, write_corpus

DEFAULT_SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-v1.1-dev-part1.json"


class SharedEmbedder:
    """The embedder with its calls serialised (the ONNX backend's tokenizer is not safe to call from the ingest's
    preparing and embedding threads at once) and query vectors cached (each question is embedded once, not once per
    mode and engine)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.cache: dict[str, np.ndarray] = {}
        self.dim, self.max_tokens = inner.dim, inner.max_tokens

    def count_tokens(self, text: str) -> int:
        with self.lock:
            return self.inner.count_tokens(text)

    def embed(self, texts: list[str]) -> np.ndarray:
        if len(texts) == 1 and texts[0] in self.cache:
            return self.cache[texts[0]]
        with self.lock:
            vectors = self.inner.embed(texts)
        if len(texts) == 1:
            self.cache[texts[0]] = vectors
        return vectors


def throwaway_postgres(stack: ExitStack) -> str:
    """A temporary PostgreSQL server (stopped when the stack closes) and the URL of an empty database on it."""
    from tests.fixtures.postgres import PostgresServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found: apt-get install postgresql, or pass --database-url")
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="pgbench-")), bin_dir)
    stack.callback(server.stop)
    server.start()
    return server.create_database("bench_keyword")


def copy_rows(source: Database, target: Database) -> int:
    """The documents and chunks of `source` into the (migrated, empty) `target`, ids unchanged."""
    with source.session() as session:
        documents = [dict(row._mapping) for row in session.execute(select(Document.__table__))]
        chunks = [dict(row._mapping) for row in session.execute(select(Chunk.__table__))]
    with target.session() as session:
        session.execute(insert(Document.__table__), documents)
        session.execute(insert(Chunk.__table__), chunks)
    return len(chunks)


def measure(retriever: Retriever, corpus: SquadCorpus, mode: str) -> tuple[RankingScores, float]:
    started = time.perf_counter()
    scores = evaluate(retriever, corpus, modes=(mode,))[mode]
    return scores, (time.perf_counter() - started) / max(1, len(corpus.questions)) * 1000


def row(label: str, scores: RankingScores, ms: float) -> str:
    return (
        f"{label:<44} {scores.recall_at_1:>6.3f} {scores.recall_at_5:>6.3f} {scores.recall_at_10:>6.3f} "
        f"{scores.mrr_at_10:>6.3f} {ms:>8.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, default=DEFAULT_SQUAD)
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--database-url", default=None, help="an empty PostgreSQL database (default: a throwaway)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the throwaway server is stopped on the way out

    corpus = load_squad(args.squad, args.questions)
    base = load_settings(args.config) if args.config else Settings()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-keyword-") as tmp:
        pg_url = args.database_url or throwaway_postgres(stack)
        settings = base.model_copy(update={"data_dir": Path(tmp) / "data", "database_url": pg_url})
        embedder: Any = SharedEmbedder(make_embedder(settings))
        service = IngestService.open(settings, embedder)
        write_corpus(corpus, Path(tmp) / "corpus")
        started = time.perf_counter()
        report = service.ingest_paths([Path(tmp) / "corpus"], collection="squad")
        print(
            f"ingested {report.chunks} chunks from {len(corpus.passages)} paragraphs into PostgreSQL "
            f"in {time.perf_counter() - started:.1f} s ({len(report.failed)} failed)"
        )
        if report.failed:
            raise SystemExit(f"{len(report.failed)} paragraphs failed to ingest: the figures would not be comparable")
        sqlite = Database(f"sqlite:///{Path(tmp) / 'fts5.db'}")
        sqlite.migrate()
        print(f"copied {copy_rows(service.db, sqlite)} chunks into SQLite")
        fts5 = Retriever(settings, sqlite, service.index, embedder, keyword=make_keyword_search(sqlite))
        postgres = Retriever(settings, service.db, service.index, embedder, keyword=make_keyword_search(service.db))
        pg_search: Any = postgres.keyword
        print(f"\n{len(corpus.questions)} questions, {len(corpus.passages)} paragraphs (SQuAD v1.1 dev half)")
        print(f"{'engine, ranking / mode':<44} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR@10':>6} {'ms/query':>8}")
        print(row("dense (same index on both, reference)", *measure(fts5, corpus, "dense")))
        default = (pg_search.ranking, pg_search.normalization)
        variants = [default, ("idf", 1), ("plain", 1), ("plain", 0)]
        for mode, label in (("bm25", "keyword"), ("hybrid", "hybrid")):
            print(row(f"SQLite FTS5 bm25() / {label}", *measure(fts5, corpus, mode)))
            for ranking, normalization in variants if mode == "bm25" else variants[:3]:
                pg_search.ranking, pg_search.normalization = ranking, normalization
                name = f"PostgreSQL {ranking}" + ("" if ranking == "bm25" else f" ts_rank_cd norm={normalization}")
                print(row(f"{name}{' (default)' if (ranking, normalization) == default else ''} / {label}",
                          *measure(postgres, corpus, mode)))  # fmt: skip
        print("(ms/query: the whole search incl. fusion; query vectors cached; the machine was shared)")
        sqlite.dispose()
        service.db.dispose()


if __name__ == "__main__":
    main()
