"""`assistant.durable`: atomic, fsynced writes with a mode set before any byte, and whole trees fsynced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from assistant.durable import fsync_tree, write_atomic


def test_write_atomic_replaces_content_with_the_mode_asked(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "settings.yaml"
    write_atomic(target, "first", mode=0o600)
    write_atomic(target, b"second", mode=0o600)
    assert target.read_text() == "second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["settings.yaml"]  # no temporary file left


def test_a_failed_rename_keeps_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, "old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_fsync_tree_syncs_every_file_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.bin", "a/b/y.bin", "z.bin"):
        (tmp_path / name).write_bytes(b"data")
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    fsync_tree(tmp_path)
    expected = {str(tmp_path / p) for p in ("a/x.bin", "a/b/y.bin", "z.bin", "a", "a/b")} | {str(tmp_path)}
    assert set(synced) == expected
