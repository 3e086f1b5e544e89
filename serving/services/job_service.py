"""Training jobs over REST: queue, inspect, cancel; the worker process beside the server; the job monitor.

Contract:
- `JobService` returns domain values (`JobRecord`, `UploadedFile`); their REST JSON is made in `serving.rest_format`.
  `JobService.of(parts)` is how the server and the CLI build it.
- `JobService.create(request)` validates a `training.request.JobRequest` (method, data, base adapter, options; a
  chat adapter's `lora_r`/`sweep_lora_ranks`, when given, at most `engine.max_lora_rank`) and queues it (a `Job` row
  in 'queued', its `params` the request's `model_dump`, validated back by the worker); a job whose data selects
  nothing is refused (422) before it is queued. Training itself never runs in the server: a worker process
  (`training.worker`, started by `WorkerSupervisor` or by `assistant worker`) claims queued jobs.
- `get(id)` returns state, progress, metrics so far and the tail of the job's log; `cancel(id)` cancels a queued job
  at once and asks a running one to stop ('cancelling'; the worker stops at the next step and registers nothing).
- `JobMonitor` runs in the server: a 'running' job whose worker is gone (process dead, or no heartbeat for
  `training.heartbeat_timeout_s`) is marked failed with the reason, so no job stays 'running' forever after a crash
  or a restart; with `training.auto_activate`, a finished job whose candidate passed the gate is activated.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from assistant.adapter_refs import AdapterStatus, parse_adapter_ref
from assistant.durable import write_atomic
from assistant.errors import ConflictError, NotFoundError, UnprocessableError
from assistant.job_states import FINAL, WORKER_WRITABLE, JobState, job_log_path
from assistant.parts import Parts
from assistant.settings import Settings
from assistant.storage import Adapter, Database, Document, Job, PreferencePair
from assistant.storage.queries import preference_filters
from training.data.feedback_data import STORED, check_stored_source
from training.job_options import check_job_options
from training.methods import METHODS
from training.request import JobData, JobRequest
from training.uploads import new_file_id, resolve_upload, uploads_dir

log = logging.getLogger(__name__)
WATCH_INTERVAL_S = 0.5  # how often the supervisor looks at its worker process
STABLE_AFTER_S = 60.0  # a worker that ran this long before dying restarts after the base backoff again


@dataclass(frozen=True)
class JobRecord:
    """A training job as stored (a detached copy of its row); `log_tail` only where asked for."""

    id: str
    method: str
    state: str
    progress: float
    phase: str | None
    phase_progress: dict[str, Any] | None
    params: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    log_tail: list[str] | None = None

    @classmethod
    def from_row(cls, job: Job, log_tail: list[str] | None = None) -> JobRecord:
        return cls(
            job.id,
            job.kind,
            job.state,
            job.progress,
            job.phase,
            job.phase_progress,
            job.params,
            job.metrics,
            job.error,
            job.worker,
            job.created_at,
            job.started_at,
            job.finished_at,
            log_tail,
        )


@dataclass(frozen=True)
class UploadedFile:
    """A stored training data file: its id (for `TrainingData.file_id`), its safe name and size."""

    id: str
    filename: str
    bytes: int


class JobService:
    """Queues, lists, shows and cancels training jobs (see the module contract); returns `JobRecord`s."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    @classmethod
    def of(cls, parts: Parts) -> JobService:
        """The job service over `parts.settings` and `parts.db` (the server and the CLI build it so)."""
        return cls(parts.settings, parts.db)

    def save_upload(self, name: str, data: bytes) -> UploadedFile:
        """Store a dataset file for jobs (`data.source=file`); returns its id."""
        suffix = Path(name).suffix.lower()
        if suffix not in {".json", ".jsonl", ".csv"}:
            raise UnprocessableError(f"{name}: training data must be .json, .jsonl or .csv", param="file")
        if not data.strip():
            raise UnprocessableError(f"{name} is empty", param="file")
        file_id = new_file_id()
        folder = uploads_dir(self.settings) / file_id
        folder.mkdir(parents=True)
        safe_name = (re.sub(r"[^A-Za-z0-9_-]", "_", Path(name).stem)[:100] or "data") + suffix  # never '..' or '/'
        (folder / safe_name).write_bytes(data)
        return UploadedFile(file_id, safe_name, len(data))

    def create(self, spec: JobRequest) -> JobRecord:
        check_job_options(spec.method, spec.hyperparameters)
        self._check_rank(spec)
        self._check_data(spec)
        if spec.base_adapter:
            self._check_adapter(spec.base_adapter)
        with self.db.session() as session:
            job = Job(kind=spec.method, params=spec.model_dump(mode="json"))  # the worker validates it back
            session.add(job)
            session.flush()
            return JobRecord.from_row(job)

    def _check_rank(self, spec: JobRequest) -> None:
        """A chat adapter of a rank the engine cannot load would pass training and the gate, then fail every request
        that names it: refuse it before it is queued (reward models are scored in the worker, never served)."""
        if METHODS[spec.method].kind != "lm":
            return
        limit = self.settings.engine.max_lora_rank
        options = spec.hyperparameters  # a rank left out gets min(default, limit) in the worker (fitted_rank)
        ranks = [("lora_r", options["lora_r"])] if "lora_r" in options else []
        ranks += [("sweep_lora_ranks", r) for r in options.get("sweep_lora_ranks", [])]
        for key, rank in ranks:
            if rank > limit:
                raise UnprocessableError(
                    f"hyperparameters.{key} {rank} is larger than engine.max_lora_rank ({limit}), the largest rank the "
                    f"server loads: lower {key} or raise engine.max_lora_rank in the settings",
                    param=f"hyperparameters.{key}",
                    code="out_of_bounds",
                )

    def _check_data(self, spec: JobRequest) -> None:
        """The data source must be one the method reads (its `training.methods.METHODS` row) and select something."""
        data, sources = spec.data, METHODS[spec.method].sources
        if data.source not in sources:
            hint = ": upload a dataset (POST /v1/training/files) and use data.source=file" if "file" in sources else ""
            raise UnprocessableError(
                f"`{spec.method}` jobs read data.source in {sources}, not {data.source!r}{hint}", param="data.source"
            )
        if data.source in STORED:
            return check_stored_source(self.db, spec.method, data.source, data.since)
        if data.source == "file":
            if not data.file_id:
                raise UnprocessableError("data.source=file needs data.file_id", param="data.file_id")
            resolve_upload(self.settings, data.file_id)
            if data.collection is not None and not self._has_collection(data.collection):
                raise NotFoundError(f"no documents in collection {data.collection!r}", param="data.collection")
            return
        if data.source == "collection":  # questions generated from the collection's chunks (training.data.collection)
            if not data.collection:
                raise UnprocessableError("data.source=collection needs data.collection", param="data.collection")
            if not self._has_collection(data.collection):
                raise NotFoundError(f"no documents in collection {data.collection!r}", param="data.collection")
            return
        if self.count_pairs(data) == 0:  # sft/psft train on the preferred side (the corrections) of the pairs
            raise UnprocessableError(
                f"no stored preference pairs match (provenance={data.provenance}, since={data.since}): collect "
                "feedback or import pairs (POST /v1/preferences) first",
                param="data",
                code="empty_dataset",
            )

    def _has_collection(self, name: str) -> bool:
        with self.db.session() as session:
            return session.scalar(select(Document.id).where(Document.collection == name).limit(1)) is not None

    def count_pairs(self, data: JobData) -> int:
        query = select(func.count(PreferencePair.id)).where(*preference_filters(data.provenance, data.since))
        with self.db.session() as session:
            return int(session.scalar(query) or 0)

    def _check_adapter(self, ref: str) -> None:
        parsed = parse_adapter_ref(ref)
        if parsed is None:
            raise NotFoundError(f"no adapter {ref!r} to continue from", param="base_adapter")
        query = select(Adapter.id).where(Adapter.name == parsed.name)
        if parsed.version is not None:
            query = query.where(Adapter.version == parsed.version)
        with self.db.session() as session:
            if session.scalar(query) is None:
                raise NotFoundError(f"no adapter {ref!r} to continue from", param="base_adapter")

    def get(self, job_id: str, tail: int = 40) -> JobRecord:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFoundError(f"no training job {job_id}", param="job_id")
            return JobRecord.from_row(job, self._log_tail(job_id, tail))

    def _log_tail(self, job_id: str, lines: int) -> list[str]:
        path = job_log_path(self.settings.runs_dir, job_id)
        return path.read_text(errors="replace").splitlines()[-lines:] if path.is_file() else []

    def list(self, limit: int = 50) -> builtins.list[JobRecord]:
        """The newest `limit` jobs, newest first."""
        with self.db.session() as session:
            jobs = session.scalars(select(Job).order_by(Job.created_at.desc()).limit(limit)).all()
            return [JobRecord.from_row(job) for job in jobs]

    def cancel(self, job_id: str) -> JobRecord:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFoundError(f"no training job {job_id}", param="job_id")
            if job.state in FINAL:
                raise ConflictError(f"job {job_id} is already {job.state}")
            if job.state == JobState.QUEUED:
                values: dict[str, Any] = {"state": JobState.CANCELLED, "finished_at": datetime.now(UTC)}
                values["error"] = "cancelled before it started"
            else:
                values = {"state": JobState.CANCELLING}
            # compare-and-set: a worker that claimed or finished the job meanwhile is not overwritten
            changed = session.execute(update(Job).where(Job.id == job_id, Job.state == job.state).values(**values))
            if getattr(changed, "rowcount", 0) != 1:
                raise ConflictError(f"job {job_id} changed state while being cancelled; look at it and retry")
            session.refresh(job)
            return JobRecord.from_row(job)


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
        """Fail 'running'/'cancelling' jobs whose worker is gone or silent; returns their ids.

        Compare-and-set: a job is failed only if its state and heartbeat are still the ones this pass read, so a
        worker that reported (or finished) in the meantime is not overwritten.
        """
        stale_before = datetime.now(UTC).replace(tzinfo=None) - timedelta(
            seconds=self.settings.training.heartbeat_timeout_s
        )
        with self.db.session() as session:
            rows = session.execute(
                select(Job.id, Job.state, Job.worker, Job.heartbeat_at, Job.progress).where(
                    Job.state.in_(WORKER_WRITABLE)
                )
            ).all()
        failed = []
        for job_id, state, worker, heartbeat_at, progress in rows:
            beat = heartbeat_at.replace(tzinfo=None) if heartbeat_at else None
            if worker_alive(worker) and beat is not None and beat >= stale_before:
                continue
            error = (
                f"interrupted: the worker {worker} stopped (killed, crashed or the server restarted) "
                f"at {progress:.0%}; nothing was registered; start the job again"
            )
            if self._fail_if_unchanged(job_id, state, heartbeat_at, error):
                failed.append(job_id)
        for job_id in failed:
            log.warning("job %s marked failed: its worker is gone", job_id)
        return failed

    def _fail_if_unchanged(self, job_id: str, state: str, heartbeat_at: datetime | None, error: str) -> bool:
        beat = Job.heartbeat_at.is_(None) if heartbeat_at is None else Job.heartbeat_at == heartbeat_at
        with self.db.session() as session:
            changed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == state, beat)
                .values(state=JobState.FAILED, finished_at=datetime.now(UTC), error=error)
            )
        return bool(getattr(changed, "rowcount", 0) == 1)

    async def auto_activate(self) -> None:
        if not self.settings.training.auto_activate or self.activate is None:
            return
        with self.db.session() as session:
            rows = session.execute(
                select(Job.id, Adapter.name, Adapter.version, Adapter.gate)
                .join(Adapter, Adapter.job_id == Job.id)
                .where(Job.state == JobState.SUCCEEDED, Adapter.status == AdapterStatus.CANDIDATE)
            ).all()
        for job_id, name, version, gate in rows:
            if job_id in self._seen_finished:
                continue
            self._seen_finished.add(job_id)
            if gate and gate.get("passed"):
                log.info("auto-activating %s@v%d (gate passed)", name, version)
                await self.activate(name, version, False)


class WorkerSupervisor:
    """Runs one job worker process beside the server: restarted with backoff when it dies, stopped with the server.

    A watcher thread polls the process; when it exits (crash, OOM kill, kill -9) while the server still runs, the
    exit code is recorded and the worker is started again after `training.worker_restart_backoff_s`, doubling per
    consecutive quick death up to `training.worker_restart_backoff_max_s` (a worker that ran for a minute resets
    the backoff). The job it was running is failed by the `JobMonitor` (its pid is gone). `status()` is what
    `/health` shows.
    """

    def __init__(self, settings: Settings, command: list[str] | None = None) -> None:
        self.settings = settings
        self.command = command  # None: `python -m training.worker --config <the server's settings>`
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.last_exit_code: int | None = None
        self._started_at = 0.0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._launch()
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
            self._watcher.start()

    def _launch(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            command = self.command or self._worker_command()
            log_file = self.settings.runs_dir / "worker.log"
            log_file.parent.mkdir(parents=True, exist_ok=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
            with log_file.open("ab") as out:
                self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
            self._started_at = time.monotonic()
        log.info("job worker started (pid %d, log %s)", self.process.pid, log_file)

    def _worker_command(self) -> list[str]:
        import yaml

        # The worker gets the server's settings, written out as YAML and passed with --config; API keys only as
        # sha256 digests (`Settings.safe_dump`), so no key reaches the disk in plain text.
        config = self.settings.runs_dir / "worker-settings.yaml"
        # Mode 0600: the settings may hold a database URL with its password.
        write_atomic(config, yaml.safe_dump(self.settings.safe_dump(), sort_keys=False), mode=0o600)
        return [sys.executable, "-m", "training.worker", "--config", str(config)]

    def _watch(self) -> None:
        quick_deaths = 0
        options = self.settings.training
        while not self._stopping.wait(WATCH_INTERVAL_S):
            process = self.process
            if process is None or process.poll() is None:
                continue
            self.last_exit_code = process.returncode
            quick_deaths = 0 if time.monotonic() - self._started_at > STABLE_AFTER_S else quick_deaths + 1
            delay = min(
                options.worker_restart_backoff_s * 2 ** max(quick_deaths - 1, 0), options.worker_restart_backoff_max_s
            )
            log.error("job worker pid %d exited with %s; restarting in %.1f s", process.pid, process.returncode, delay)
            if self._stopping.wait(delay):
                return
            self.restarts += 1
            try:
                self._launch()
            except OSError:
                log.exception("the job worker could not be restarted; retrying")

    def status(self) -> dict[str, Any]:
        """Whether the worker runs, its pid, how often it was restarted and its last exit code (for `/health`)."""
        process = self.process
        running = process is not None and process.poll() is None
        return {
            "running": running,
            "pid": process.pid if running and process is not None else None,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
        }

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
