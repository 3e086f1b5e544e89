"""Training jobs over REST: queue, inspect, cancel; the worker process beside the server; the job monitor.

Contract:
- `JobService.create(spec)` validates a job (method, data, base adapter) and queues it (a `Job` row in 'queued');
  a job whose data selects nothing is refused (422) before it is queued. Training itself never runs in the server:
  a worker process (`training.worker`, started by `WorkerSupervisor` or by `assistant worker`) claims queued jobs.
- `get(id)` returns state, progress, metrics so far and the tail of the job's log; `cancel(id)` cancels a queued job
  at once and asks a running one to stop ('cancelling'; the worker stops at the next step and registers nothing).
- `JobMonitor` runs in the server: a 'running' job whose worker is gone (process dead, or no heartbeat for
  `training.heartbeat_timeout_s`) is marked failed with the reason, so no job stays 'running' forever after a crash
  or a restart; with `training.auto_activate`, a finished job whose candidate passed the gate is activated.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from assistant.errors import ConflictError, NotFoundError, UnprocessableError
from assistant.settings import Settings
from assistant.storage import Adapter, Database, Job, PreferencePair
from assistant.storage.queries import preference_filters
from training.data.feedback import JOB_SOURCES, check_stored_source

log = logging.getLogger(__name__)
FINAL_STATES = ("succeeded", "failed", "cancelled")
MAX_UNIX_TIME = 4_102_444_800  # 2100-01-01: bounds `since` so datetime conversion cannot overflow


class JobData(BaseModel):
    """What a job trains on: stored preference pairs (since a point) or an uploaded dataset file."""

    source: Literal["preferences", "file", "feedback", "chats"] = Field(
        "preferences",
        description="preferences (dpo, reward), feedback = thumbs (kto) or rated prompts (grpo), "
        "chats = served prompts (grpo), file = an upload.",
    )
    provenance: Literal["feedback", "imported"] | None = Field(None, description="Only pairs of this provenance.")
    since: int | None = Field(None, ge=0, le=MAX_UNIX_TIME, description="Unix time: only pairs created at or after it.")
    file_id: str | None = Field(None, description="For source=file: the id returned by POST /v1/training/files.")


class JobSpec(BaseModel):
    method: Literal["sft", "dpo", "psft", "kto", "reward", "grpo", "classify", "sweep"]
    name: str = Field("assistant", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="Adapter name.")
    data: JobData = Field(default_factory=JobData)  # type: ignore[arg-type]
    base_adapter: str | None = Field(None, description="Continue from this adapter (NAME or NAME@vN).")
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="Training options (lr, max_steps, ...).")
    gate: bool = Field(True, description="Evaluate the candidate against the active version when it is trained.")


def job_dict(job: Job, log_tail: list[str] | None = None) -> dict[str, Any]:
    body = {
        "id": job.id,
        "object": "training.job",
        "method": job.kind,
        "state": job.state,
        "progress": job.progress,
        "params": job.params,
        "metrics": job.metrics,
        "error": job.error,
        "worker": job.worker,
        "created_at": _ts(job.created_at),
        "started_at": _ts(job.started_at),
        "finished_at": _ts(job.finished_at),
    }
    if log_tail is not None:
        body["log_tail"] = log_tail
    return body


def _ts(value: datetime | None) -> int | None:
    return int(value.replace(tzinfo=value.tzinfo or UTC).timestamp()) if value else None


def job_log_path(settings: Settings, job_id: str) -> Path:
    return settings.runs_dir / "jobs" / f"{job_id}.log"


def uploads_dir(settings: Settings) -> Path:
    return settings.data_dir / "uploads"


class JobService:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def save_upload(self, name: str, data: bytes) -> dict[str, Any]:
        """Store a dataset file for jobs (`data.source=file`); returns its id."""
        suffix = Path(name).suffix.lower()
        if suffix not in {".json", ".jsonl", ".csv"}:
            raise UnprocessableError(f"{name}: training data must be .json, .jsonl or .csv", param="file")
        if not data.strip():
            raise UnprocessableError(f"{name} is empty", param="file")
        file_id = f"file-{uuid.uuid4().hex[:20]}"
        folder = uploads_dir(self.settings) / file_id
        folder.mkdir(parents=True)
        (folder / Path(name).name).write_bytes(data)
        return {"id": file_id, "object": "file", "filename": Path(name).name, "bytes": len(data)}

    def create(self, spec: JobSpec) -> dict[str, Any]:
        self._check_data(spec)
        if spec.base_adapter:
            self._check_adapter(spec.base_adapter)
        with self.db.session() as session:
            job = Job(kind=spec.method, params=spec.model_dump(mode="json"))
            session.add(job)
            session.flush()
            return job_dict(job)

    def _check_data(self, spec: JobSpec) -> None:
        data = spec.data
        if spec.method in JOB_SOURCES and data.source not in ("file", "preferences"):
            return check_stored_source(self.db, spec.method, data.source, data.since)
        if data.source in ("feedback", "chats"):
            raise UnprocessableError(f"`{spec.method}` jobs do not read data.source={data.source}", param="data.source")
        if data.source == "file":
            if not data.file_id or not self.upload_path(data.file_id):
                raise NotFoundError(f"no uploaded training file {data.file_id!r}", param="data.file_id")
            return
        if spec.method not in ("dpo", "reward"):
            raise UnprocessableError(
                "stored preference pairs train DPO jobs; for sft/psft upload a dataset "
                "(POST /v1/training/files) and use data.source=file",
                param="data.source",
            )
        if self.count_pairs(data) == 0:
            raise UnprocessableError(
                f"no stored preference pairs match (provenance={data.provenance}, since={data.since}): collect "
                "feedback or import pairs (POST /v1/preferences) first",
                param="data",
                code="empty_dataset",
            )

    def upload_path(self, file_id: str) -> Path | None:
        folder = uploads_dir(self.settings) / Path(file_id).name
        files = sorted(folder.glob("*")) if folder.is_dir() else []
        return files[0] if files else None

    def count_pairs(self, data: JobData) -> int:
        query = select(func.count(PreferencePair.id)).where(*preference_filters(data.provenance, data.since))
        with self.db.session() as session:
            return int(session.scalar(query) or 0)

    def _check_adapter(self, ref: str) -> None:
        name, _, version = ref.partition("@v")
        query = select(Adapter.id).where(Adapter.name == name)
        if version.isdigit():
            query = query.where(Adapter.version == int(version))
        with self.db.session() as session:
            if session.scalar(query) is None:
                raise NotFoundError(f"no adapter {ref!r} to continue from", param="base_adapter")

    def get(self, job_id: str, tail: int = 40) -> dict[str, Any]:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFoundError(f"no training job {job_id}", param="job_id")
            return job_dict(job, self._log_tail(job_id, tail))

    def _log_tail(self, job_id: str, lines: int) -> list[str]:
        path = job_log_path(self.settings, job_id)
        return path.read_text(errors="replace").splitlines()[-lines:] if path.is_file() else []

    def list(self, limit: int = 50) -> dict[str, Any]:
        with self.db.session() as session:
            jobs = session.scalars(select(Job).order_by(Job.created_at.desc()).limit(limit)).all()
            return {"object": "list", "data": [job_dict(job) for job in jobs]}

    def cancel(self, job_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFoundError(f"no training job {job_id}", param="job_id")
            if job.state in FINAL_STATES:
                raise ConflictError(f"job {job_id} is already {job.state}")
            if job.state == "queued":
                job.state, job.finished_at, job.error = "cancelled", datetime.now(UTC), "cancelled before it started"
            else:
                job.state = "cancelling"
            session.flush()
            return job_dict(job)


def worker_alive(worker: str | None) -> bool:
    """Whether the worker `host:pid` still runs (always True for a worker on another host: heartbeats decide)."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


class JobMonitor:
    """Fails orphaned jobs and auto-activates passing candidates (a background task of the server)."""

    def __init__(self, settings: Settings, db: Database, activate: Any = None, interval: float = 2.0) -> None:
        self.settings = settings
        self.db = db
        self.activate = activate
        self.interval = interval
        self._seen_finished: set[str] = set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.fail_orphans)
                await self.auto_activate()
            except Exception:  # the monitor must survive a bad row or a busy database
                log.exception("job monitor pass failed")
            await asyncio.sleep(self.interval)

    def fail_orphans(self) -> list[str]:
        stale_before = datetime.now(UTC).replace(tzinfo=None) - timedelta(
            seconds=self.settings.training.heartbeat_timeout_s
        )
        failed = []
        with self.db.session() as session:
            for job in session.scalars(select(Job).where(Job.state.in_(("running", "cancelling")))):
                beat = job.heartbeat_at.replace(tzinfo=None) if job.heartbeat_at else None
                if worker_alive(job.worker) and beat is not None and beat >= stale_before:
                    continue
                job.state = "failed"
                job.finished_at = datetime.now(UTC)
                job.error = (
                    f"interrupted: the worker {job.worker} stopped (killed, crashed or the server restarted) "
                    f"at {job.progress:.0%}; nothing was registered; start the job again"
                )
                failed.append(job.id)
        for job_id in failed:
            log.warning("job %s marked failed: its worker is gone", job_id)
        return failed

    async def auto_activate(self) -> None:
        if not self.settings.training.auto_activate or self.activate is None:
            return
        with self.db.session() as session:
            rows = session.execute(
                select(Job.id, Adapter.name, Adapter.version, Adapter.gate)
                .join(Adapter, Adapter.job_id == Job.id)
                .where(Job.state == "succeeded", Adapter.status == "candidate")
            ).all()
        for job_id, name, version, gate in rows:
            if job_id in self._seen_finished:
                continue
            self._seen_finished.add(job_id)
            if gate and gate.get("passed"):
                log.info("auto-activating %s@v%d (gate passed)", name, version)
                await self.activate(name, version, False)


class WorkerSupervisor:
    """Starts one job worker process beside the server and stops it with the server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import yaml

        # The worker gets exactly the server's settings: written out as YAML, passed with --config.
        config = self.settings.runs_dir / "worker-settings.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(self.settings.model_dump(mode="json"), sort_keys=False))
        command = [sys.executable, "-m", "training.worker", "--config", str(config)]
        log_file = self.settings.runs_dir / "worker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
        with log_file.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        log.info("job worker started (pid %d, log %s)", self.process.pid, log_file)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
