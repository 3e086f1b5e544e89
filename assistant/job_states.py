"""Training job states and the job's files: the one home of both.

Contract: a `Job` row's `state` is a `JobState`. A job is created `queued`; a worker claims it (`running`); it ends
`succeeded`, `failed` or `cancelled` (`FINAL`). Cancelling a queued job makes it `cancelled` at once; cancelling a
running one makes it `cancelling`, and the worker that runs it stops at its next progress report and writes
`cancelled` (or the monitor fails it when that worker is gone). `WORKER_WRITABLE` are the states in which the worker
holding a job may still update it; `UNFINISHED` are the states whose uploaded files retention keeps.
`job_log_path(runs_dir, job_id)` is the log file of a job's training subprocess.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
WORKER_WRITABLE = (JobState.RUNNING, JobState.CANCELLING)
UNFINISHED = (JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING)


def job_log_path(runs_dir: Path, job_id: str) -> Path:
    """The log of a job's training subprocess, under the runs directory."""
    return Path(runs_dir) / "jobs" / f"{job_id}.log"
