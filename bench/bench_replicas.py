"""Replica catch-up time: two `assistant serve` processes on one throwaway PostgreSQL (tiny model, transformers
engine, each with its own data directory). Each round uploads one new document through replica A and measures the
time until replica B's *dense* retrieval (its own in-memory FAISS index) returns it; then deletes it through A and
measures the time until B's index no longer holds its vectors (`/health` -> replica.vectors). The bound to compare
with is `server.replica_sync_s` (the poll interval) plus one sync pass.

Run: PYTHONPATH=$PWD python bench/bench_replicas.py --rounds 20 --sync-s 0.5
Needs the Debian `postgresql` binaries (the same throwaway server the `postgres` tests use).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.postgres import PostgresServer, find_bin_dir  # noqa: E402
from tests.fixtures.replicas import Replica, start_replicas, wait_for  # noqa: E402
from tests.fixtures.tiny_model import build_tiny_model  # noqa: E402

WORDS = ["harbour", "lantern", "granite", "meadow", "copper", "falcon", "willow", "ember", "glacier", "saffron"]


def document(n: int) -> tuple[str, str]:
    """A distinct document and a query that finds it."""
    a, b, c = WORDS[n % 10], WORDS[(n // 10) % 10], WORDS[(n * 7 + 3) % 10]
    text = f"Report {n}: the {a} {b} of station {n} keeps a {c} log. " * 8
    return text, f"the {a} {b} of station {n}"


def one_round(a: Replica, b: Replica, n: int) -> tuple[float, float]:
    text, query = document(n)
    before = b.replica_status()["vectors"]
    response = a.post("/v1/documents", files=[("files", (f"report-{n}.txt", text.encode()))])
    response.raise_for_status()
    document_id = response.json()["data"][0]["document_id"]
    added = wait_for(lambda: document_id in b.dense_document_ids(query), timeout=60, poll_s=0.02)
    httpx.delete(f"{a.base_url}/v1/documents/{document_id}", timeout=60).raise_for_status()
    removed = wait_for(lambda: b.replica_status()["vectors"] == before, timeout=60, poll_s=0.02)
    return added, removed


def summary(label: str, values: list[float]) -> str:
    p50 = statistics.median(values)
    return f"{label:<34} {p50 * 1000:>9.0f} {max(values) * 1000:>9.0f} {len(values):>6}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--sync-s", type=float, default=0.5, help="server.replica_sync_s of both replicas")
    args = parser.parse_args()
    bin_dir = find_bin_dir()
    if bin_dir is None:
        sys.exit("PostgreSQL binaries not found (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="bench-replicas-pg-")), bin_dir)  # its own dir: chowned
    server.start()
    replicas: list[Replica] = []
    try:
        url = server.create_database("bench")
        model_dir = build_tiny_model(root / "tiny-model")
        started = time.perf_counter()
        replicas = start_replicas(root, url, model_dir, sync_s=args.sync_s)
        print(f"two replicas ready in {time.perf_counter() - started:.1f} s (sync interval {args.sync_s} s)")
        rounds = [one_round(*replicas, n) for n in range(args.rounds)]
    finally:
        for replica in replicas:
            replica.stop()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'catch-up on replica B':<34} {'p50 ms':>9} {'max ms':>9} {'rounds':>6}")
    print(summary("upload via A -> dense hit on B", [r[0] for r in rounds]))
    print(summary("delete via A -> vectors gone on B", [r[1] for r in rounds]))
    print(f"{'bound: sync interval':<34} {args.sync_s * 1000:>9.0f}")


if __name__ == "__main__":
    main()
