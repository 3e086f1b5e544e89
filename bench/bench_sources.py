"""Source-sync benchmark: seconds per sync of a folder of small files, against re-running `assistant ingest` on it.

Contract: run `python bench/bench_sources.py [--files N]` (default 500). It writes N small text files, then prints in
one run, for the sync (`ingest.directory_sources`): the dry run, the first sync, a sync with nothing changed, and a sync
after 10% of the files were edited, 10% deleted and 10% added; and for the baseline, `IngestService.ingest_paths` (what
`assistant ingest DIR` does) on the folder, as many files as the first sync, first and again with nothing changed (it
reads and hashes every file; it never deletes). Both use the real MiniLM embedder, SQLite and FAISS, each in its own
temporary data directory.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOPICS = ["backups", "travel", "payroll", "security", "canteen", "parking", "holidays", "laptops", "phones", "badges"]


def write_note(folder: Path, number: int, version: int) -> None:
    path = folder / f"team-{number % 4}" / f"note-{number:05d}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    topic = TOPICS[number % len(TOPICS)]
    path.write_text(f"Policy note {number} version {version}: the {topic} rule number {number * 7919 % 10007}.\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + version * 1_000_000_000))


def main() -> int:
    from ingest.directory_sources import SourceRegistry, SourceSyncer
    from ingest.ingest_service import IngestService
    from tests.fixtures.retrieval_env import make_settings, shared_embedder

    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=500)
    count = parser.parse_args().files
    tenth = max(count // 10, 1)
    embedder = shared_embedder()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        for number in range(count):
            write_note(folder, number, 1)
        service = IngestService.open(make_settings(Path(tmp) / "sync-data"), embedder)
        registry = SourceRegistry(service.settings, service.db)
        registry.create(folder, "bench")
        syncer = SourceSyncer(registry, service)
        rows = [("sync: dry run", syncer.plan("docs"))]
        rows.append(("sync: first", syncer.sync("docs")))
        rows.append(("sync: nothing changed", syncer.sync("docs")))
        for number in range(tenth):
            write_note(folder, number, 2)
        for number in range(tenth, 2 * tenth):
            (folder / f"team-{number % 4}" / f"note-{number:05d}.txt").unlink()
        for number in range(count, count + tenth):
            write_note(folder, number, 1)
        rows.append((f"sync: {tenth} edited, {tenth} deleted, {tenth} added", syncer.sync("docs")))
        service.close()
        baseline = IngestService.open(make_settings(Path(tmp) / "ingest-data"), embedder)
        first = baseline.ingest_paths([folder], "bench")
        again = baseline.ingest_paths([folder], "bench")
        baseline.close()
    print(f"{'run':<48}{'seconds':>9}  files")
    for label, report in rows:
        counts = ", ".join(f"{v} {k}" for k, v in report.counts().items() if v)
        print(f"{label:<48}{report.seconds:>9.2f}  {counts}")
    for label, result in (("baseline ingest_paths: first", first), ("baseline ingest_paths: again", again)):
        counts = ", ".join(f"{v} {k}" for k, v in result.counts().items())
        print(f"{label:<48}{result.seconds:>9.2f}  {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
