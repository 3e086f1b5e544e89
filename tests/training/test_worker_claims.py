"""Job claiming under contention, on both engines (`db_url`): many queued jobs, two real worker processes claiming
at once through `JobWorker.claim()`: every job is claimed exactly once, by the worker its row names, oldest first per
worker. On PostgreSQL a job row locked by another worker's open claim is skipped (FOR UPDATE SKIP LOCKED), not waited
on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from assistant.parts import Parts
from assistant.settings import Settings
from assistant.storage import Database, Job
from training.worker import JobWorker

ROOT = Path(__file__).resolve().parents[2]
JOBS = 300


def _queue(db: Database, count: int) -> list[str]:
    start = datetime.now(UTC) - timedelta(hours=1)
    ids = [f"job-{i:04d}" for i in range(count)]
    with db.session() as session:
        for i, job_id in enumerate(ids):  # distinct, increasing creation times: "oldest" is well defined
            session.add(Job(id=job_id, kind="sft", params={}, created_at=start + timedelta(seconds=i)))
    return ids


def _start_worker(url: str, name: str, folder: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "tests.fixtures.claim_worker", url, name, str(folder)]
    return subprocess.Popen(command, cwd=ROOT, env=env)


def test_two_worker_processes_never_claim_a_job_twice(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url)
    db.migrate()
    queued = _queue(db, JOBS)
    workers = {name: _start_worker(db_url, name, tmp_path) for name in ("w1", "w2")}
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"{name}.ready").exists() for name in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()
    for process in workers.values():
        assert process.wait(timeout=120) == 0
    results = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in workers}
    claimed = {name: result["claimed"] for name, result in results.items()}
    everything = claimed["w1"] + claimed["w2"]
    assert len(everything) == len(set(everything)) == JOBS  # nothing twice, nothing left out
    assert sorted(everything) == queued
    assert claimed["w1"] and claimed["w2"], claimed  # both really took part
    for jobs in claimed.values():  # each worker takes the oldest available job: its own sequence ascends
        assert jobs == sorted(jobs)
    with db.session() as session:
        rows = session.execute(select(Job.id, Job.state, Job.worker)).all()
    assert {row.state for row in rows} == {"running"}
    assert {row.id: row.worker for row in rows} == {j: name for name, jobs in claimed.items() for j in jobs}
    db.dispose()


@pytest.mark.postgres
def test_claim_skips_a_job_locked_by_another_claim(postgres_url: str, tmp_path: Path) -> None:
    """Another worker holds the oldest job's row lock mid-claim: `claim()` takes the next job at once."""
    db = Database(postgres_url)
    db.migrate()
    first, second, _ = _queue(db, 3)
    other = Database(postgres_url)
    with other.engine.connect() as holder:
        holder.execute(select(Job.id).where(Job.id == first).with_for_update())  # an open claim on the oldest job
        result: list[str | None] = []
        claimer = threading.Thread(
            target=lambda: result.append(
                JobWorker(Parts(Settings(data_dir=tmp_path, database_url=postgres_url))).claim()
            )
        )
        claimer.start()
        claimer.join(timeout=10)
        blocked = claimer.is_alive()
        holder.rollback()
    claimer.join(timeout=10)
    assert not blocked, "claim() waited on the locked row instead of skipping it"
    assert result == [second]
    with db.session() as session:
        assert session.get(Job, first).state == "queued"  # type: ignore[union-attr]
    db.dispose()
    other.dispose()


def test_claimed_jobs_heartbeats_and_orphans(db_url: str, tmp_path: Path) -> None:
    """Claim, heartbeat and the server's orphan check on each engine (the PostgreSQL test server runs in UTC+14, so a
    timestamp read back in the server's zone instead of UTC would make a fresh heartbeat look hours old)."""
    from serving.services.job_service import JobMonitor

    db = Database(db_url)
    db.migrate()
    alive, gone, silent = _queue(db, 3)
    settings = Settings(data_dir=tmp_path, database_url=db_url)
    parts = Parts(settings)
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    workers = {
        alive: JobWorker(parts, worker_id=f"{socket.gethostname()}:{os.getpid()}"),
        gone: JobWorker(parts, worker_id=f"{socket.gethostname()}:{dead_pid.pid}"),
        silent: JobWorker(parts, worker_id="another-machine:1"),
    }
    for job_id, worker in workers.items():
        assert worker.claim() == job_id
        assert worker.update(job_id, heartbeat_at=datetime.now(UTC)) == "running"
    workers[silent].update(silent, heartbeat_at=datetime.now(UTC) - timedelta(hours=1))
    assert sorted(JobMonitor(settings, db).fail_orphans()) == sorted([gone, silent])
    with db.session() as session:
        states = {job.id: job.state for job in session.scalars(select(Job))}
    assert states == {alive: "running", gone: "failed", silent: "failed"}
    db.dispose()
