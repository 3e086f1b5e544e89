"""One writing process per data directory, enforced with an OS file lock.

Contract: `WriterLock.acquire(data_dir)` takes an exclusive, non-blocking `fcntl.flock` on `<data_dir>/writer.lock`
and writes the holder (pid, host, command, start time) into the file; when another process holds it, it raises
`ConflictError` (409) naming that holder. The kernel drops the lock when the holder exits, however it exits (kill -9
included), so a stale file never blocks anyone. Within one process the lock is shared (reference-counted): several
services of one server or test may open the same data directory. `release()` gives one reference back.
Readers (search, `index check`) never take it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from assistant.errors import ConflictError

LOCK_FILE = "writer.lock"
_held: dict[Path, tuple[int, int]] = {}  # lock file -> (open descriptor, references) in this process
_guard = threading.Lock()


def holder(path: Path) -> dict[str, object]:
    """What the lock file says about its holder (empty when unreadable)."""
    try:
        value = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class WriterLock:
    """A held writer lock on one data directory (see the module contract)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._released = False

    @classmethod
    def acquire(cls, data_dir: Path) -> WriterLock:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = (data_dir / LOCK_FILE).resolve()
        with _guard:
            if path in _held:
                fd, references = _held[path]
                _held[path] = (fd, references + 1)
                return cls(path)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise _held_elsewhere(path, data_dir) from None
            _write_holder(fd)
            _held[path] = (fd, 1)
        return cls(path)

    def release(self) -> None:
        with _guard:
            if self._released or self.path not in _held:
                return
            self._released = True
            fd, references = _held[self.path]
            if references > 1:
                _held[self.path] = (fd, references - 1)
                return
            del _held[self.path]
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _write_holder(fd: int) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _command_line(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    os.fsync(fd)


def _command_line() -> str:
    """This process's command line as typed (`python -m cli.main ingest ...`), else `sys.argv`."""
    try:
        return Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return " ".join([sys.executable, *sys.argv])


def _held_elsewhere(path: Path, data_dir: Path) -> ConflictError:
    info = holder(path)
    who = f"pid {info.get('pid', '?')} on {info.get('host', '?')} ({info.get('command', 'unknown command')})"
    return ConflictError(
        f"the data directory {data_dir} is being written by another process: {who}, since {info.get('since', '?')}. "
        "One writer per data directory: stop it, or upload through its API (POST /v1/documents) if it is the server; "
        "reads (search, index check) work meanwhile.",
        code="data_dir_locked",
    )
