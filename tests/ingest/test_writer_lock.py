"""One writer per data directory: with a real process holding the data dir, a second process's `ingest` and
`index rebuild` fail at once naming the holder, `index check` still works, and the lock goes with the holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.errors import ConflictError
from ingest.writer_lock import WriterLock, holder

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process holding tmp_path/data as its writer, with one document ingested."""
    doc = tmp_path / "policy.md"
    doc.write_text("# Backups\n\nDaily backups are kept for thirty days in the vault.")
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.hold_writer", str(tmp_path / "data"), str(doc)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=ENV,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "READY"
    yield child
    child.kill()
    child.wait(timeout=60)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )


def test_second_writer_process_is_refused_naming_the_holder(writer: subprocess.Popen[str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    info = holder(data / "writer.lock")
    assert info["pid"] == writer.pid and "-m tests.fixtures.hold_writer" in str(info["command"])
    other = tmp_path / "other.md"
    other.write_text("# Other\n\nSomething else entirely.")
    result = _cli("ingest", str(other), "--data-dir", str(data))
    assert result.returncode == 1, result.stderr
    assert f"pid {writer.pid}" in result.stderr and "hold_writer" in result.stderr, result.stderr
    with pytest.raises(ConflictError, match=f"pid {writer.pid}"):  # this process too, through the library
        WriterLock.acquire(data)

    writer.send_signal(signal.SIGKILL)  # the kernel drops the lock with its holder: no stale lock file
    writer.wait(timeout=60)
    lock = WriterLock.acquire(data)
    assert holder(data / "writer.lock")["pid"] == os.getpid()
    lock.release()


@pytest.mark.slow
def test_rebuild_is_refused_and_check_reads_beside_the_writer(writer: subprocess.Popen[str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    rebuild = _cli("index", "rebuild", "--data-dir", str(data))
    assert rebuild.returncode == 1 and f"pid {writer.pid}" in rebuild.stderr, rebuild.stderr
    checked = _cli("index", "check", "--data-dir", str(data))  # a reader works beside the writer
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "consistent: 1 vectors" in checked.stdout, checked.stdout
