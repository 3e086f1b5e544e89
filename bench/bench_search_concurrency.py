"""Does a search wait for another caller's work? (issue 26, point 8 and 7)

Ingests SQuAD articles (shared data) into a fresh data directory with the real parts (MiniLM, FAISS, SQLite FTS5),
then times short questions through the server's `RetrievalService` (the path `/v1/retrieve` takes, with the server's
index lock): alone, beside another caller's searches of thousands of distinct words, and beside an ingest. Each
"beside" figure is printed as a ratio to "alone" (the issue's bound: 2x), for today's read-write lock with capped
query terms and for the former behaviour (one exclusive lock around the whole search, no cap), in one run.

    .venv/bin/python bench/bench_search_concurrency.py [--articles 6] [--queries 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-v1.1-dev-part1.json"


class ExclusiveLock:
    """The former index lock: a plain re-entrant lock, searches included."""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> ExclusiveLock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._lock:
            yield


def _articles(count: int) -> list[dict[str, Any]]:
    return list(json.loads(SQUAD.read_text())["data"][:count])


def _timed(search: Any, queries: list[str]) -> float:
    times = []
    for query in queries:
        started = time.perf_counter()
        asyncio.run(search(query, 5, None, "hybrid"))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _beside(load: Any, search: Any, queries: list[str]) -> float:
    stop = threading.Event()
    thread = threading.Thread(target=load, args=(stop,), daemon=True)
    thread.start()
    time.sleep(0.5)
    try:
        return _timed(search, queries)
    finally:
        stop.set()
        thread.join()  # the next figures must not run beside a leftover ingest


def run(articles: int, queries: int) -> None:
    from assistant.index.locking import IndexLock
    from assistant.parts import Parts
    from assistant.settings import Settings
    from ingest.ingest_service import IngestService

    data = _articles(articles + 4)
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="bench-search-")))
    parts = Parts(settings)
    ingest = IngestService.of(parts)
    files = [
        (f"{a['title']}.txt", "\n\n".join(p["context"] for p in a["paragraphs"]).encode()) for a in data[:articles]
    ]
    ingest.ingest_files(files, "squad")
    questions = [qa["question"] for a in data[:articles] for p in a["paragraphs"] for qa in p["qas"]][:queries]
    huge = " ".join(f"w{i:05d} {word}" for i, word in enumerate(" ".join(questions * 20).split()[:1100]))[:8000]
    extra = [
        (f"extra-{a['title']}-{i}.txt", p["context"].encode())
        for a in data[articles:]
        for i, p in enumerate(a["paragraphs"])
    ]
    variants = (
        ("today (read-write lock, 64 terms)", IndexLock(), 64),
        ("before (exclusive, no cap)", ExclusiveLock(), 10**9),
    )
    rows = [_measure(parts, ingest, questions, huge, extra, *variant) for variant in variants]
    print(f"{len(questions)} questions over {articles} SQuAD articles ({len(parts.index)} chunks); median seconds")
    print(
        f"{'':36} {'alone':>8} {'1 huge query':>13} {'beside huge':>12} {'ratio':>6} {'beside ingest':>14} {'ratio':>6}"
    )
    for label, alone, huge_s, search_s, ingest_s in rows:
        print(
            f"{label:36} {alone:8.3f} {huge_s:13.3f} {search_s:12.3f} {search_s / alone:5.2f}x "
            f"{ingest_s:14.3f} {ingest_s / alone:5.2f}x"
        )


def _measure(
    parts: Any, ingest: Any, questions: list[str], huge: str, extra: list[Any], label: str, lock: Any, cap: int
) -> tuple[str, float, float, float, float]:
    import assistant.retrieval.keyword as keyword
    from serving.prometheus_metrics import Metrics
    from serving.services.retrieval_service import RetrievalService

    keyword.MAX_QUERY_TERMS = cap
    service = RetrievalService(parts.retriever, parts.db, lock, Metrics())
    ingest.use_write_lock(lock)
    _timed(service.search, [*questions, huge])  # warm-up: caches, thread pools and the first FTS5 reads
    alone = _timed(service.search, questions)

    def slow_searches(stop: threading.Event) -> None:
        while not stop.is_set():
            asyncio.run(service.search(huge, 5, None, "hybrid"))

    def ingesting(stop: threading.Event) -> None:  # new content every round (same bytes would be deduplicated)
        for round_no in range(1_000):
            for i in range(0, len(extra), 20):
                if stop.is_set():
                    return
                batch = [
                    (f"{cap}-{round_no}-{name}", f"{label} {round_no}\n".encode() + text)
                    for name, text in extra[i : i + 20]
                ]
                ingest.ingest_files(batch, f"extra-{cap}")

    one_huge = _timed(service.search, [huge])
    return (
        label,
        alone,
        one_huge,
        _beside(slow_searches, service.search, questions),
        _beside(ingesting, service.search, questions),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=6)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    run(args.articles, args.queries)


if __name__ == "__main__":
    main()
