"""Retrieval benchmark: quality, ingest throughput, query latency and memory vs a plain LangChain + FAISS baseline.

Contract: run `python bench/bench_retrieval.py [--questions N] [--scale N]`. On the SQuAD file (paragraphs = corpus,
one file per paragraph written to a temp dir first) it measures, in one run:
- quality: recall@1/5/10, MRR@10, nDCG@10 for our dense, BM25 and hybrid modes and for the baseline (LangChain
  RecursiveCharacterTextSplitter 1000/200 chars + the same embedder + flat IndexFlatIP);
- ingest: chunks/s and paragraphs/s end to end from files, ours vs baseline, with the share spent embedding;
- query latency p50/p95 on the SQuAD collection, ours (hybrid) vs baseline (dense);
- scale: hybrid/dense/BM25 query latency over `--scale` synthetic chunks (random unit vectors, text sampled from the
  SQuAD vocabulary) in SQLite + FAISS;
- recall per embedder backend (`--recall-backends`): the same stored chunks re-embedded by each backend into an index
  of its own, dense and hybrid recall@5 side by side with the torch backend's, and each backend's embed-only texts/s
  on those chunks;
- the PostgreSQL 15 HTML manual (`--pg-manual DIR`, Debian's `postgresql-doc-15`; skipped with a message when the
  folder is absent) uploaded through the REST API of a real `assistant serve` process: files/s and chunk count;
- peak RSS (resource.getrusage).
- `--force-avx2`: the whole run (both pipelines, every runtime) on this CPU's AVX2 code path, for a CPU with AVX-512:
  the bench re-runs itself with `bench/cpuid_avx2.c` preloaded (built with `cc`; Linux CPUID faulting makes every
  library read a CPUID without AVX-512/AVX512-BF16/VNNI/AMX; onnxruntime has no switch of its own) and with
  ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2, ATEN_CPU_CAPABILITY=avx2; the instruction sets the process
  sees are printed first, and the embedder runtime is measured again for that machine (`models.embedder_backend=auto`).
The machine may be shared: each ingest also reports the CPU seconds it used (this process's threads plus its
children, e.g. the parse child) and the load average around it, so chunks per CPU-second can be compared too.
It prints tables and the acceptance checks; exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import resource
import shutil
import subprocess
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

from assistant.embedding import Embedder, cpu_has_bf16, make_embedder, resolved_backend
from assistant.parts import make_keyword_search
from assistant.retrieval import Retriever
from assistant.retrieval.ranking_metrics import RankingScores, score_rankings
from assistant.settings import Settings, load_settings
from ingest.ingest_service import IngestService
from ingest.retrieval_eval import SquadCorpus, evaluate, load_squad, write_corpus

DEFAULT_SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-v1.1-dev-part1.json"
AVX2_LIMITS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def rerun_on_avx2(argv: list[str]) -> int:
    """This bench again, in a child process that sees an AVX2-only CPU (module contract, `--force-avx2`)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("--force-avx2 builds bench/cpuid_avx2.c: install a C compiler (apt-get install gcc)")
    with tempfile.TemporaryDirectory(prefix="cpuid-avx2-") as tmp:
        library = Path(tmp) / "cpuid_avx2.so"
        source = Path(__file__).with_name("cpuid_avx2.c")
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
        preload = " ".join(filter(None, [str(library), os.environ.get("LD_PRELOAD")]))
        env = {**os.environ, **AVX2_LIMITS, "LD_PRELOAD": preload, "BENCH_AVX2_CHILD": "1"}
        args = [a for a in argv if a != "--force-avx2"]
        return subprocess.run([sys.executable, __file__, *args], env=env).returncode


def seen_isa() -> str:
    """The vector instruction sets this process sees (through CPUID), as numpy and torch report them."""
    import torch
    from numpy._core._multiarray_umath import __cpu_features__ as numpy_features

    capabilities = torch.cpu.get_capabilities()
    torch_flags = [f for f in ("avx2", "avx512_f", "avx512_vnni", "avx512_bf16", "amx_bf16") if capabilities.get(f)]
    limits = {name: os.environ[name] for name in AVX2_LIMITS if name in os.environ}
    return (
        f"torch sees {'+'.join(torch_flags)} (ATen kernels {torch.backends.cpu.get_cpu_capability()}), numpy AVX512F "
        f"{numpy_features.get('AVX512F')}; limits {limits or 'none'}; LD_PRELOAD {os.environ.get('LD_PRELOAD', '-')}"
    )


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


def cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of its live and finished children (the parse child)."""
    import psutil

    process = psutil.Process()
    total = sum(process.cpu_times()[:4])  # user, system, children_user, children_system
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # ended meanwhile: counted in children_* once reaped
            total += sum(child.cpu_times()[:2])
    return total


def load_average() -> float:
    return os.getloadavg()[0]


class Measured:
    """Wall seconds, CPU seconds (`cpu_seconds`) and the 1-minute load average at start and end of a block."""

    def __enter__(self) -> Measured:
        self.load_start, self.cpu_start, self.started = load_average(), cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.cpu = cpu_seconds() - self.cpu_start
        self.load = (self.load_start, load_average())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50) * 1000), float(np.percentile(samples, 95) * 1000)


# ---------------------------------------------------------------- ours


def ingest_ours(settings: Settings, embedder: TimedEmbedder, corpus_dir: Path) -> tuple[IngestService, dict[str, Any]]:
    service = IngestService.open(settings, embedder)  # database migration + empty index: startup, not ingest
    embedder.seconds = 0.0
    with Measured() as measured:
        report = service.ingest_paths([corpus_dir], collection="squad")
    files = sum(1 for r in report.files if r.ok)
    return service, {
        "chunks": report.chunks,
        "files": files,
        "seconds": measured.seconds,
        "cpu_s": measured.cpu,
        "load": measured.load,
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
    from assistant.model_files import resolve_embedder

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

        measured = Measured().__enter__()
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
        measured.__exit__()
        return {
            "chunks": len(texts),
            "files": len(files),
            "seconds": measured.seconds,
            "cpu_s": measured.cpu,
            "load": measured.load,
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


# ---------------------------------------------------------------- backends


def backend_recall(
    settings: Settings, service: IngestService, corpus: SquadCorpus, backends: list[str], base: Path
) -> dict[str, dict[str, float]]:
    """Dense and hybrid recall@5 of the stored chunks re-embedded by each backend (an index of its own per backend),
    and the backend's embed-only texts/s on those chunks."""
    from sqlalchemy import select

    from assistant.index import open_index
    from assistant.storage.orm import Chunk

    with service.db.session() as session:
        rows = session.execute(select(Chunk.id, Chunk.text).order_by(Chunk.id)).all()
    ids = np.asarray([row[0] for row in rows], dtype=np.int64)
    texts = [row[1] for row in rows]
    results: dict[str, dict[str, float]] = {}
    for backend in backends:
        models = settings.models.model_copy(update={"embedder_backend": backend})
        work = settings.model_copy(update={"models": models})
        if backend == resolved_backend(settings):  # ours: its index and embed time are the ingest's own
            embedder, index = service.embedder, service.index
            seconds = service.embedder.seconds if isinstance(service.embedder, TimedEmbedder) else float("nan")
        else:
            embedder = make_embedder(work, check_space=False)
            embedder.embed(["warm up the model"])
            started = time.perf_counter()
            vectors = embedder.embed(texts)
            seconds = time.perf_counter() - started
            index = open_index(base / f"index-{backend}", embedder.dim, settings.ingest.approximate_after)
            index.add(vectors, ids)
        scores = evaluate(
            Retriever(work, service.db, index, embedder, keyword=make_keyword_search(service.db)),
            corpus,
            modes=("dense", "hybrid"),
        )
        results[backend] = {
            "dense": scores["dense"].recall_at_5,
            "hybrid": scores["hybrid"].recall_at_5,
            "texts_s": len(texts) / seconds,
        }
        print(f"backend {backend}: recall measured ({len(texts)} chunks embedded in {seconds:.1f} s)", flush=True)
    return results


# ---------------------------------------------------------------- PostgreSQL manual through REST

PG_MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")


def pg_manual_rest(folder: Path, base: Path, port: int, per_request: int) -> dict[str, Any]:
    """Upload every HTML file of `folder` through `POST /v1/documents` of a real server, `per_request` files a call.

    The server runs the transformers engine (generation is not measured here; vLLM would only cost start-up time).
    Calls whose total exceeds `server.sync_upload_mb` come back 202 and are polled until done.
    """
    import subprocess

    import httpx
    from server_process import wait_ready  # bench/ is on sys.path when a bench script runs

    files = sorted(folder.glob("*.html"))
    env = {**os.environ, "ASSISTANT_ENGINE__BACKEND": "transformers"}
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "cli.main", "serve", "--data-dir", str(base / "pg-data"), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    results: list[dict[str, Any]] = []
    try:
        wait_ready(url, proc)
        with httpx.Client(base_url=url, timeout=600) as client, Measured() as measured:
            for start in range(0, len(files), per_request):
                group = files[start : start + per_request]
                parts = [("files", (f.name, f.read_bytes(), "text/html")) for f in group]
                results.extend(_upload(client, parts))
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    ok = [r for r in results if r["status"] in ("ingested", "replaced")]
    return {
        "files": len(files),
        "ingested": len(ok),
        "chunks": sum(r["chunks"] for r in ok),
        "statuses": {s: sum(r["status"] == s for r in results) for s in sorted({r["status"] for r in results})},
        "seconds": measured.seconds,
        "load": measured.load,
    }


def _upload(client: Any, parts: list[tuple[str, tuple[str, bytes, str]]]) -> list[dict[str, Any]]:
    response = client.post("/v1/documents", files=parts, data={"collection": "pgdocs"})
    if response.status_code == 200:
        return list(response.json()["data"])
    if response.status_code != 202:
        raise RuntimeError(f"upload refused: {response.status_code} {response.text[:300]}")
    task_id = response.json()["id"]
    while True:
        task = client.get(f"/v1/documents/uploads/{task_id}").json()
        if task["state"] == "done":
            return list(task["results"])
        time.sleep(0.5)


# ---------------------------------------------------------------- scale


def build_synthetic(settings: Settings, embedder: Embedder, corpus: SquadCorpus, count: int) -> IngestService:
    """`count` synthetic chunks (rows + random unit vectors) in 1 000-chunk documents, written directly."""
    from sqlalchemy import insert

    from assistant.storage.orm import Chunk, Document

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
    retriever = Retriever(settings, service.db, service.index, embedder, keyword=make_keyword_search(service.db))
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
    header = f"{'pipeline':<12}{'files':>7}{'chunks':>8}{'seconds':>9}{'chunks/s':>10}{'files/s':>9}{'embed %':>9}"
    print(f"{header}{'CPU s':>8}{'chunks/CPU-s':>14}{'load 1m':>14}")
    for name, r in (("ours", ours), ("baseline", baseline)):
        print(
            f"{name:<12}{r['files']:>7}{r['chunks']:>8}{r['seconds']:>9.1f}{r['chunks'] / r['seconds']:>10.1f}"
            f"{r['files'] / r['seconds']:>9.1f}{100 * r['embed_s'] / r['seconds']:>8.0f}%{r['cpu_s']:>8.1f}"
            f"{r['chunks'] / r['cpu_s']:>14.2f}{r['load'][0]:>7.1f}->{r['load'][1]:<5.1f}"
        )
    print(
        f"ratio ours/baseline: {(ours['chunks'] / ours['seconds']) / (baseline['chunks'] / baseline['seconds']):.2f}x "
        f"chunks/s, {(ours['chunks'] / ours['cpu_s']) / (baseline['chunks'] / baseline['cpu_s']):.2f}x chunks/CPU-s"
    )


def print_backends(results: dict[str, dict[str, float]], default: str) -> None:
    print("\n## Recall@5 per embedder backend (the same stored chunks re-embedded; torch = sentence-transformers;")
    print("## ours' backend: its ingest index, texts/s = chunks / its embed seconds during ingest, overlapped)")
    print(f"{'backend':<16}{'dense R@5':>10}{'vs torch':>10}{'hybrid R@5':>12}{'vs torch':>10}{'texts/s':>9}")
    torch = results.get("torch")
    for name, r in results.items():
        d_dense = f"{r['dense'] - torch['dense']:+.3f}" if torch else "-"
        d_hybrid = f"{r['hybrid'] - torch['hybrid']:+.3f}" if torch else "-"
        label = f"{name}{' (ours)' if name == default else ''}"
        print(f"{label:<16}{r['dense']:>10.3f}{d_dense:>10}{r['hybrid']:>12.3f}{d_hybrid:>10}{r['texts_s']:>9.1f}")


def print_pg_manual(result: dict[str, Any] | None, folder: Path) -> None:
    print("\n## PostgreSQL 15 HTML manual through REST (POST /v1/documents of a real server)")
    if result is None:
        print(f"skipped: {folder} not found (apt-get install postgresql-doc-15, or pass --pg-manual DIR)")
        return
    print(
        f"{result['files']} files, {result['ingested']} ingested, {result['chunks']} chunks in "
        f"{result['seconds']:.1f} s: {result['files'] / result['seconds']:.2f} files/s, "
        f"{result['chunks'] / result['seconds']:.1f} chunks/s (statuses {result['statuses']}; load "
        f"{result['load'][0]:.1f} -> {result['load'][1]:.1f})"
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
    ours: dict[str, RankingScores],
    baseline: RankingScores,
    ingest: tuple[dict, dict],
    scale: dict[str, Any] | None,
    backends: tuple[dict[str, dict[str, float]], str],
) -> list[tuple[str, bool]]:
    hybrid, dense, bm25 = (ours[m].recall_at_5 for m in ("hybrid", "dense", "bm25"))
    ours_rate = ingest[0]["chunks"] / ingest[0]["seconds"]
    base_rate = ingest[1]["chunks"] / ingest[1]["seconds"]
    result = [
        (f"hybrid R@5 {hybrid:.3f} >= 1.05 x dense {dense:.3f}", hybrid >= 1.05 * dense),
        (f"hybrid R@5 {hybrid:.3f} >= bm25 {bm25:.3f}", hybrid >= bm25),
        (f"hybrid R@5 {hybrid:.3f} >= baseline {baseline.recall_at_5:.3f}", hybrid >= baseline.recall_at_5),
        (
            f"ingest {ours_rate:.1f} chunks/s >= 1.5 x baseline {base_rate:.1f} ({ours_rate / base_rate:.2f}x)",
            ours_rate >= 1.5 * base_rate,
        ),
    ]
    per_backend, default = backends
    if "torch" in per_backend and default in per_backend:
        for mode in ("dense", "hybrid"):
            ours_r5, torch_r5 = per_backend[default][mode], per_backend["torch"][mode]
            result.append(
                (
                    f"{mode} R@5, our backend {default} {ours_r5:.3f} within 0.01 of torch {torch_r5:.3f}",
                    abs(ours_r5 - torch_r5) <= 0.01 + 1e-9,  # a share of questions: 3 of 300 is 0.01 exactly
                )
            )
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
        "--recall-backends",
        nargs="*",
        default=None,
        help="embedder backends whose recall@5 is measured on the stored chunks (none = skip; default torch, onnx, "
        "onnx-int8 and, where the CPU has bfloat16 instructions, torch-bf16)",
    )
    parser.add_argument(
        "--force-avx2",
        action="store_true",
        help="run everything on the AVX2 code path (a CPU with AVX-512 made to look AVX2-only; see the docstring)",
    )
    parser.add_argument(
        "--backend",
        default=None,
        choices=["torch", "torch-bf16", "onnx", "onnx-int8"],
        help="our pipeline's embedder backend (default: models.embedder_backend as configured)",
    )
    parser.add_argument("--pg-manual", type=Path, default=PG_MANUAL, help="PostgreSQL HTML manual folder")
    parser.add_argument("--pg-port", type=int, default=8797, help="port of the server the manual is uploaded to")
    parser.add_argument("--pg-per-request", type=int, default=50, help="manual files per upload request")
    parser.add_argument("--skip-squad", action="store_true", help="only the PostgreSQL manual part")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads for both pipelines (0 = torch default)"
    )
    return parser.parse_args()


def run_squad(args: argparse.Namespace, corpus: SquadCorpus, base: Path) -> list[tuple[str, bool]]:
    """The SQuAD parts (quality, ingest, recall per backend, latency, scale): prints them, returns the checks."""
    write_corpus(corpus, base / "corpus")
    settings = load_settings(None, data_dir=base / "data")
    if args.backend:
        settings = settings.model_copy(
            update={"models": settings.models.model_copy(update={"embedder_backend": args.backend})}
        )
    embedder = TimedEmbedder(make_embedder(settings))
    embedder.embed(["warm up the model"])
    service, ours_ingest = ingest_ours(settings, embedder, base / "corpus")
    baseline = Baseline(naive_model(settings))
    base_ingest = baseline.ingest(base / "corpus")
    print_ingest(ours_ingest, base_ingest)  # early: the rest takes a while
    retriever = Retriever(settings, service.db, service.index, embedder, keyword=make_keyword_search(service.db))
    ours = evaluate(retriever, corpus)
    ours_latency = latency_ours(retriever, corpus)
    base_scores, base_latency = baseline.evaluate(corpus)
    embedder.seconds = ours_ingest["embed_s"]  # the ingest's embed time: that backend's texts/s in the table
    default = resolved_backend(settings)
    per_backend = backend_recall(settings, service, corpus, args.recall_backends, base)
    rss_squad = peak_rss_mb()
    scale = scale_latency(base, embedder, corpus, args.scale, args.scale_queries) if args.scale else None
    print_quality(ours, base_scores)
    print_ingest(ours_ingest, base_ingest)
    print_backends(per_backend, default)
    print_latency(ours_latency, base_latency, scale)
    print(f"\npeak RSS: {rss_squad:.0f} MB after the SQuAD part, {peak_rss_mb():.0f} MB overall")
    return checks(ours, base_scores, (ours_ingest, base_ingest), scale, (per_backend, default))


def main() -> int:
    args = parse_args()
    if args.force_avx2 and not os.environ.get("BENCH_AVX2_CHILD"):
        return rerun_on_avx2(sys.argv[1:])
    if args.recall_backends is None:
        args.recall_backends = ["torch", "onnx", "onnx-int8", *(["torch-bf16"] if cpu_has_bf16() else [])]
    print(f"instruction sets: {seen_isa()}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    corpus = load_squad(args.squad, args.questions)
    print(
        f"corpus: {len(corpus.passages)} paragraphs, {len(corpus.questions)} questions; {os.cpu_count()} CPUs, "
        f"load average {load_average():.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        results = [] if args.skip_squad else run_squad(args, corpus, Path(tmp))
        pg = None
        if args.pg_manual.is_dir():
            pg = pg_manual_rest(args.pg_manual, Path(tmp), args.pg_port, args.pg_per_request)
    print_pg_manual(pg, args.pg_manual)
    print("\n## Acceptance")
    for text, passed in results:
        print(f"[{'PASS' if passed else 'FAIL'}] {text}")
    return 0 if all(passed for _t, passed in results) else 1


if __name__ == "__main__":
    sys.exit(main())
