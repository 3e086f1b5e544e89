"""Files that survive a crash or a power cut: the one home of the write-then-rename-then-fsync recipe.

Contract:
- `write_atomic(path, data, mode=None)` writes a sibling temporary file, fsyncs it, renames it over `path` and fsyncs
  the directory: a reader (or the next start after a crash) sees the old content or the new, never a part. `mode`
  (e.g. 0o600 for a file holding credentials) is set on the temporary file before any byte is written, so the
  content is never readable by others, not even for a moment.
- `fsync_tree(root)` fsyncs every file and directory under `root` (and `root` itself), so a copied directory is on
  disk before a database row that points to it commits.
- `fsync_dir(directory)` makes a rename or a new entry in `directory` durable.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # a platform without directory handles (Windows): the rename is as durable as it gets
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str | bytes, mode: int | None = None) -> None:
    """Replace `path` with `data` atomically and durably (see the module contract)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    payload = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
    try:
        if mode is not None:
            os.fchmod(fd, mode)  # the umask may have widened or narrowed what os.open set
        with os.fdopen(fd, "wb", closefd=False) as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under `root`, deepest first, then `root`."""
    for directory, _, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(Path(directory) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(directory))
