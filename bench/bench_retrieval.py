"""Retrieval benchmark: quality, ingest throughput, query latency and memory vs a plain LangChain + FAISS baseline.

Contract: run `python bench/bench_retrieval.py [--questions N] [--scale N]`. On the SQuAD file (paragraphs = corpus,
one file per paragraph written to a temp dir first) it measures, in one run:
- quality: recall@1/5/10, MRR@10, nDCG@10 for our dense, BM25 and hybrid modes and for the baseline (LangChain
  RecursiveCharacterTextSplitter 1000/200 chars + the same embedder + flat IndexFlatIP);
- ingest: chunks/s and paragraphs/s end to end from files, ours vs baseline, with the share spent embedding;
- query latency p50/p95 on the SQuAD collection, ours (hybrid) vs baseline (dense);
- scale: hybrid/dense/BM25 query latency over `--scale` synthetic chunks (random unit vectors, text sampled from the
  SQuAD vocabulary) in SQLite + FAISS;
- peak RSS (resource.getrusage).
It prints tables and the acceptance checks; exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from assistant.embedding import Embedder, make_embedder
from assistant.retrieval import Retriever
from assistant.retrieval.metrics import RankingScores, score_rankings
from assistant.settings import Settings, load_settings
from ingest.evaluation import SquadCorpus, evaluate, load_squad, write_corpus
from ingest.service import IngestService

DEFAULT_SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-v1.1-dev-part1.json"


class TimedEmbedder:
    """Wraps an embedder and accumulates the seconds spent in `embed`."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.seconds = 0.0

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def embed(self, texts: list[str]) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - started


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50) * 1000), float(np.percentile(samples, 95) * 1000)


# ---------------------------------------------------------------- ours


def ingest_ours(settings: Settings, embedder: TimedEmbedder, corpus_dir: Path) -> tuple[IngestService, dict[str, Any]]:
    service = IngestService.open(settings, embedder)  # database migration + empty index: startup, not ingest
    embedder.seconds = 0.0
    started = time.perf_counter()
    report = service.ingest_paths([corpus_dir], collection="squad")
    seconds = time.perf_counter() - started
    files = sum(1 for r in report.files if r.ok)
    return service, {
        "chunks": report.chunks,
        "files": files,
        "seconds": seconds,
        "embed_s": embedder.seconds,
        "failed": len(report.failed),
    }


def latency_ours(retriever: Retriever, corpus: SquadCorpus, mode: str = "hybrid") -> list[float]:
    return [total for total, _embed in timed_queries(retriever, corpus, mode)]


def timed_queries(retriever: Retriever, corpus: SquadCorpus, mode: str) -> list[tuple[float, float]]:
    """(total seconds, seconds spent embedding the query) per question."""
    embedder = retriever.embedder
    timings = []
    for question in corpus.questions:
        embed_before = embedder.seconds if isinstance(embedder, TimedEmbedder) else 0.0
        started = time.perf_counter()
        retriever.search(question.text, k=10, mode=mode)
        embed_s = (embedder.seconds if isinstance(embedder, TimedEmbedder) else 0.0) - embed_before
        timings.append((time.perf_counter() - started, embed_s))
    return timings


# ---------------------------------------------------------------- baseline


def naive_model(settings: Any) -> Any:
    """The naive pipeline's embedder: the same MiniLM through plain sentence-transformers (torch), as people run it."""
    from sentence_transformers import SentenceTransformer

    from assistant.embedding import model_directory
    from assistant.models import resolve_embedder

    return SentenceTransformer(str(model_directory(resolve_embedder(settings))), device="cpu")


class Baseline:
    """The common pipeline: LangChain character splitter + the same embedder + IndexFlatIP."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.keys: list[str] = []
        self.index: Any = None

    def ingest(self, corpus_dir: Path) -> dict[str, Any]:
        import faiss
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        started = time.perf_counter()
        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        texts: list[str] = []
        files = sorted(corpus_dir.glob("*.txt"))
        for path in files:
            pieces = splitter.split_text(path.read_text(encoding="utf-8"))
            texts.extend(pieces)
            self.keys.extend([path.stem] * len(pieces))
        embed_started = time.perf_counter()
        # The common way: sentence-transformers' default batch size (32), as LangChain's HuggingFaceEmbeddings uses.
        vectors = self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        embed_s = time.perf_counter() - embed_started
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return {
            "chunks": len(texts),
            "files": len(files),
            "seconds": time.perf_counter() - started,
            "embed_s": embed_s,
            "failed": 0,
        }

    def search(self, question: str, k: int = 10) -> list[str]:
        vector = self.model.encode([question], normalize_embeddings=True, convert_to_numpy=True)
        _scores, rows = self.index.search(np.ascontiguousarray(vector, dtype=np.float32), k * 2)
        return [self.keys[r] for r in rows[0] if r >= 0]

    def evaluate(self, corpus: SquadCorpus) -> tuple[RankingScores, list[float]]:
        rankings, timings = [], []
        for question in corpus.questions:
            started = time.perf_counter()
            rankings.append(self.search(question.text))
            timings.append(time.perf_counter() - started)
        return score_rankings(rankings, [q.gold for q in corpus.questions]), timings


# ---------------------------------------------------------------- scale


def build_synthetic(settings: Settings, embedder: Embedder, corpus: SquadCorpus, count: int) -> IngestService:
    """`count` synthetic chunks (rows + random unit vectors) in 1 000-chunk documents, written directly."""
    from sqlalchemy import insert

    from assistant.storage.models import Chunk, Document

    service = IngestService.open(settings, embedder)
    vocabulary = " ".join(p.text for p in corpus.passages).split()
    rng = random.Random(7)
    per_document = 1000
    with service.db.session() as session:
        for start in range(0, count, per_document):
            doc_id = f"doc-synthetic-{start // per_document:06d}"
            session.add(
                Document(
                    id=doc_id,
                    collection="synthetic",
                    source=f"syn-{start}.txt",
                    title="synthetic",
                    content_hash=f"h{start}",
                    status="ready",
                )
            )
            session.flush()
            rows = [_synthetic_row(doc_id, start + i + 1, i, rng, vocabulary) for i in range(per_document)]
            session.execute(insert(Chunk), rows)
    vectors = np.random.default_rng(7).standard_normal((count, embedder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    service.index.rebuild(vectors, np.arange(1, count + 1, dtype=np.int64))  # HNSW past ingest.approximate_after
    return service


def _synthetic_row(doc_id: str, chunk_id: int, ordinal: int, rng: random.Random, vocabulary: list[str]) -> dict:
    text = " ".join(rng.choices(vocabulary, k=120))
    return {
        "id": chunk_id,
        "document_id": doc_id,
        "collection": "synthetic",
        "ordinal": ordinal,
        "text": text,
        "content_hash": f"{chunk_id}",
        "char_start": 0,
        "char_end": len(text),
        "token_count": 150,
        "meta": {},
    }


def scale_latency(base: Path, embedder: Embedder, corpus: SquadCorpus, count: int, queries: int) -> dict[str, Any]:
    settings = load_settings(None, data_dir=base / "scale")
    started = time.perf_counter()
    service = build_synthetic(settings, embedder, corpus, count)
    build_s = time.perf_counter() - started
    retriever = Retriever(settings, service.db, service.index, embedder)
    sample = SquadCorpus(corpus.passages, corpus.questions[:queries])
    result: dict[str, Any] = {"chunks": count, "build_s": build_s, "kind": service.index.kind}
    for mode in ("hybrid", "dense", "bm25"):
        timed_queries(retriever, SquadCorpus([], sample.questions[:5]), mode)  # warm-up
        timings = timed_queries(retriever, sample, mode)
        result[mode] = percentiles([total for total, _e in timings])
        result[f"{mode}_search"] = percentiles([total - embed for total, embed in timings])
        if mode == "hybrid":
            result["embed"] = percentiles([embed for _total, embed in timings])
    return result


# ---------------------------------------------------------------- report


def print_quality(ours: dict[str, RankingScores], baseline: RankingScores) -> None:
    print("\n## Retrieval quality (SQuAD paragraphs; gold = the question's paragraph)")
    print(f"{'pipeline':<22}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'MRR@10':>8}{'nDCG@10':>9}")
    rows = [(f"ours {mode}", s) for mode, s in ours.items()] + [("baseline (LC+flat)", baseline)]
    for name, s in rows:
        print(
            f"{name:<22}{s.recall_at_1:>8.3f}{s.recall_at_5:>8.3f}{s.recall_at_10:>8.3f}{s.mrr_at_10:>8.3f}"
            f"{s.ndcg_at_10:>9.3f}"
        )


def print_ingest(ours: dict[str, Any], baseline: dict[str, Any]) -> None:
    print("\n## Ingest, end to end from files (same embedder loaded once beforehand; database opened beforehand)")
    print(f"{'pipeline':<12}{'files':>7}{'chunks':>8}{'seconds':>9}{'chunks/s':>10}{'files/s':>9}{'embed %':>9}")
    for name, r in (("ours", ours), ("baseline", baseline)):
        print(
            f"{name:<12}{r['files']:>7}{r['chunks']:>8}{r['seconds']:>9.1f}{r['chunks'] / r['seconds']:>10.1f}"
            f"{r['files'] / r['seconds']:>9.1f}{100 * r['embed_s'] / r['seconds']:>8.0f}%"
        )


def print_latency(ours: list[float], baseline: list[float], scale: dict[str, Any] | None) -> None:
    print("\n## Query latency (ms, includes embedding the query)")
    print(f"{'setting':<48}{'p50':>8}{'p95':>8}")
    print(f"{'SQuAD, ours hybrid (+BM25, hydrate)':<48}{percentiles(ours)[0]:>8.1f}{percentiles(ours)[1]:>8.1f}")
    print(f"{'SQuAD, baseline dense':<48}{percentiles(baseline)[0]:>8.1f}{percentiles(baseline)[1]:>8.1f}")
    if scale:
        for mode in ("hybrid", "dense", "bm25"):
            label = f"{scale['chunks']:,} synthetic chunks, ours {mode}"
            print(f"{label:<48}{scale[mode][0]:>8.1f}{scale[mode][1]:>8.1f}")
            search = scale[f"{mode}_search"]
            print(f"{'  of which search (excl. query embedding)':<48}{search[0]:>8.1f}{search[1]:>8.1f}")
        print(f"{'  query embedding alone (MiniLM, CPU)':<48}{scale['embed'][0]:>8.1f}{scale['embed'][1]:>8.1f}")
        print(f"(synthetic collection: {scale['kind']} index, rows + FTS + index built in {scale['build_s']:.1f} s)")


def checks(
    ours: dict[str, RankingScores], baseline: RankingScores, ingest: tuple[dict, dict], scale: dict[str, Any] | None
) -> list[tuple[str, bool]]:
    hybrid, dense, bm25 = (ours[m].recall_at_5 for m in ("hybrid", "dense", "bm25"))
    ours_rate = ingest[0]["chunks"] / ingest[0]["seconds"]
    base_rate = ingest[1]["chunks"] / ingest[1]["seconds"]
    result = [
        (f"hybrid R@5 {hybrid:.3f} >= 1.05 x dense {dense:.3f}", hybrid >= 1.05 * dense),
        (f"hybrid R@5 {hybrid:.3f} >= bm25 {bm25:.3f}", hybrid >= bm25),
        (f"hybrid R@5 {hybrid:.3f} >= baseline {baseline.recall_at_5:.3f}", hybrid >= baseline.recall_at_5),
        (f"ingest {ours_rate:.1f} chunks/s >= baseline {base_rate:.1f} chunks/s", ours_rate >= base_rate),
    ]
    if scale:
        result.append(
            (f"hybrid p50 {scale['hybrid'][0]:.1f} ms < 50 ms at {scale['chunks']:,}", scale["hybrid"][0] < 50)
        )
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--squad", type=Path, default=DEFAULT_SQUAD, help="SQuAD v1.1 JSON file")
    parser.add_argument("--questions", type=int, default=1000, help="questions evaluated (seeded sample)")
    parser.add_argument("--scale", type=int, default=100_000, help="synthetic chunks for the latency test (0 = skip)")
    parser.add_argument("--scale-queries", type=int, default=200, help="queries timed at scale")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads for both pipelines (0 = torch default)"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    corpus = load_squad(args.squad, args.questions)
    print(
        f"corpus: {len(corpus.passages)} paragraphs, {len(corpus.questions)} questions; torch threads on "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        base = Path(tmp)
        write_corpus(corpus, base / "corpus")
        settings = load_settings(None, data_dir=base / "data")
        embedder = TimedEmbedder(make_embedder(settings))
        embedder.embed(["warm up the model"])
        service, ours_ingest = ingest_ours(settings, embedder, base / "corpus")
        baseline = Baseline(naive_model(settings))
        base_ingest = baseline.ingest(base / "corpus")
        retriever = Retriever(settings, service.db, service.index, embedder)
        ours = evaluate(retriever, corpus)
        ours_latency = latency_ours(retriever, corpus)
        base_scores, base_latency = baseline.evaluate(corpus)
        rss_squad = peak_rss_mb()
        scale = scale_latency(base, embedder, corpus, args.scale, args.scale_queries) if args.scale else None
    print_quality(ours, base_scores)
    print_ingest(ours_ingest, base_ingest)
    print_latency(ours_latency, base_latency, scale)
    print(f"\npeak RSS: {rss_squad:.0f} MB after the SQuAD part, {peak_rss_mb():.0f} MB overall")
    results = checks(ours, base_scores, (ours_ingest, base_ingest), scale)
    print("\n## Acceptance")
    for text, passed in results:
        print(f"[{'PASS' if passed else 'FAIL'}] {text}")
    return 0 if all(passed for _t, passed in results) else 1


if __name__ == "__main__":
    sys.exit(main())
