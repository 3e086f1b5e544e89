"""A process SIGKILLed in the middle of an ingest leaves index and rows consistent after reopening."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.ingest_service import IngestService

ROOT = Path(__file__).resolve().parents[2]
TOPICS = [
    "backups",
    "travel",
    "payroll",
    "security",
    "canteen",
    "parking",
    "holidays",
    "laptops",
    "phones",
    "printers",
    "badges",
    "meetings",
]


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for number, topic in enumerate(TOPICS):
        (folder / f"{number:02d}-{topic}.txt").write_text(f"Policy {number}: the rules about {topic} are simple.")
    return folder


@pytest.mark.parametrize("point", ["before_save", "after_save"])
def test_sigkill_mid_ingest_is_repaired_on_open(
    point: str, tmp_path: Path, make_service: Callable[..., IngestService]
) -> None:
    folder = _folder(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.crash_ingest", str(tmp_path / "data"), str(folder), point],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "PAUSED"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    service = make_service(embed_batch_size=1)
    report = service.check_index()
    assert report.ok, report.summary()
    assert report.chunks == 1  # the first group (one file with embed_batch_size=1) was committed before the kill
    again = service.ingest_paths([folder])
    assert again.counts() == {"unchanged": 1, "ingested": 11}
    assert service.check_index().ok and len(service.index) == 12
