"""Durability (issue 26, point 9): adapter files are on disk before their registry row commits; evaluation state is
written atomically and a damaged file never stops the server from starting; retention prunes evaluation runs one by
one, never the folder; the worker's settings file (it may hold a database URL) is mode 0600."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from assistant.settings import Settings
from assistant.storage import Adapter, Database


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def test_adapter_files_are_fsynced_before_the_row_commits(
    tmp_path: Path, tiny_adapter_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.registry import AdapterRegistry

    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    registry = AdapterRegistry(db, tmp_path / "adapters")
    synced: list[tuple[str, int]] = []  # (path, adapter rows at that moment)
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if "adapters" in path:
            with db.session() as session:
                synced.append((path, session.scalar(select(func.count()).select_from(Adapter)) or 0))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    record = registry.register("durable", tiny_adapter_dir, base_model="tiny", method="sft", lineage={}, metrics={})
    files = {p.relative_to(record.path).as_posix() for p in Path(record.path).rglob("*") if p.is_file()}
    synced_files = {Path(p).name for p, _ in synced}
    assert files and {Path(f).name for f in files} <= synced_files
    assert all(rows == 0 for _, rows in synced)  # every fsync happened before the row existed


def test_a_damaged_evaluation_file_is_skipped_not_fatal(tmp_path: Path) -> None:
    from serving.services.answer_eval_service import EvaluationService

    settings = _settings(tmp_path)
    folder = settings.runs_dir / "evaluations"
    (folder / "eval-damaged").mkdir(parents=True)
    (folder / "eval-damaged" / "evaluation.json").write_text('{"id": "eval-damaged", "status": "runn')  # cut short
    (folder / "eval-left").mkdir()
    left = {"id": "eval-left", "status": "running", "total": 3}
    (folder / "eval-left" / "evaluation.json").write_text(json.dumps(left))
    service = EvaluationService(settings, chat=None)  # type: ignore[arg-type]
    assert [run.id for run in service.list_runs()] == ["eval-left"]
    assert service.get("eval-left").status == "failed"  # the interrupted run was closed, atomically rewritten
    with pytest.raises(Exception, match="damaged"):
        service.get("eval-damaged")
    assert [p.name for p in (folder / "eval-left").iterdir()] == ["evaluation.json"]


def test_retention_prunes_evaluation_runs_one_by_one(tmp_path: Path) -> None:
    from training.uploads import prune_expired

    settings = Settings(data_dir=tmp_path / "data", training={"retention_days": 1})
    db = Database(settings.resolved_database_url)
    db.migrate()
    folder = settings.runs_dir / "evaluations"
    old, new = folder / "eval-old", folder / "eval-new"
    for run in (old, new):
        run.mkdir(parents=True)
        (run / "evaluation.json").write_text("{}")
    week_ago = time.time() - 7 * 86_400
    for path in (old / "evaluation.json", old, folder):
        os.utime(path, (week_ago, week_ago))
    removed = prune_expired(settings, db)
    assert old in removed and folder not in removed
    assert folder.is_dir() and new.is_dir() and not old.exists()


def test_the_worker_settings_file_is_private(tmp_path: Path) -> None:
    from serving.services.job_service import WorkerSupervisor

    settings = Settings(data_dir=tmp_path / "data", database_url="sqlite:///" + str(tmp_path / "x.sqlite"))
    command: list[Any] = WorkerSupervisor(settings)._worker_command()
    config = Path(command[command.index("--config") + 1])
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "x.sqlite" in config.read_text()
