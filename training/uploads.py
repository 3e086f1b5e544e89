"""Uploaded training files: where they live, the one way to turn a file id into a path, and retention.

Contract:
- An uploaded file lives at `<data_dir>/uploads/<file id>/<original name>`; ids match `FILE_ID` (`file-` + 20 hex).
- `resolve_upload(settings, file_id)` is the only way the API and the worker turn an id into a path: an id that does
  not match the format is 422, a missing upload 404; the returned path is a regular file inside the uploads folder
  (no symlink, no `..`), so nothing outside it can be trained on.
- `prune_expired(settings, db, now)` deletes, after `training.retention_days`, uploaded files and job run
  directories/logs no queued or running job uses, and top-level training run directories not modified since; it
  returns what it deleted. The server runs it periodically.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
import uuid
from pathlib import Path

from sqlalchemy import select

from assistant.errors import NotFoundError, UnprocessableError
from assistant.job_states import UNFINISHED
from assistant.settings import Settings
from assistant.storage import Database, Job

log = logging.getLogger(__name__)
FILE_ID = re.compile(r"^file-[0-9a-f]{20}$")
# Folders of runs_dir pruned entry by entry (never wholesale), and files kept.
_KEEP_IN_RUNS = {"jobs", "evaluations", "worker.log", "worker-settings.yaml"}


def uploads_dir(settings: Settings) -> Path:
    return settings.data_dir / "uploads"


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex[:20]}"


def resolve_upload(settings: Settings, file_id: str) -> Path:
    """The uploaded file of `file_id`, checked to be a regular file inside the uploads folder."""
    if not isinstance(file_id, str) or not FILE_ID.fullmatch(file_id):
        raise UnprocessableError(
            f"data.file_id {file_id!r} is not a training file id (file-<20 hex>, as POST /v1/training/files returns)",
            param="data.file_id",
        )
    root = uploads_dir(settings).resolve()
    folder = root / file_id
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink()) if folder.is_dir() else []
    if not files or not files[0].resolve().is_relative_to(root):
        raise NotFoundError(f"no uploaded training file {file_id!r}", param="data.file_id")
    return files[0].resolve()


def _age_days(path: Path, now: float) -> float:
    """Days since the path or any direct child last changed."""
    stamps = [path.lstat().st_mtime]
    if path.is_dir() and not path.is_symlink():
        stamps += [child.lstat().st_mtime for child in path.iterdir()]
    return (now - max(stamps)) / 86_400


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _in_use(db: Database) -> tuple[set[str], set[str]]:
    """(file ids, job ids) of queued and running jobs."""
    with db.session() as session:
        rows = session.execute(select(Job.id, Job.params).where(Job.state.in_(UNFINISHED))).all()
    files = {str((params or {}).get("data", {}).get("file_id")) for _, params in rows}
    return files, {job_id for job_id, _ in rows}


def prune_expired(settings: Settings, db: Database, now: float | None = None) -> list[Path]:
    """Delete uploads and run directories older than `training.retention_days` that no active job uses."""
    days = settings.training.retention_days
    if days is None:
        return []
    now = time.time() if now is None else now
    files_in_use, jobs_in_use = _in_use(db)
    candidates: list[Path] = []
    uploads = uploads_dir(settings)
    if uploads.is_dir():
        candidates += [p for p in uploads.iterdir() if p.name not in files_in_use]
    runs = settings.runs_dir
    if runs.is_dir():
        candidates += [p for p in runs.iterdir() if p.name not in _KEEP_IN_RUNS]
        if (runs / "jobs").is_dir():
            candidates += [p for p in (runs / "jobs").iterdir() if p.name.split(".")[0] not in jobs_in_use]
        if (runs / "evaluations").is_dir():  # each run by its own age: a running one is written to as it runs
            candidates += list((runs / "evaluations").iterdir())
    removed = [p for p in candidates if _age_days(p, now) > days]
    for path in removed:
        _remove(path)
        log.info("retention: removed %s (older than %g days)", path, days)
    return removed
