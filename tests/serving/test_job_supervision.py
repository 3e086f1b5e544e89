"""Job state changes are compare-and-set (a job the monitor failed stays failed), and the worker process is supervised
(restarted with backoff after it dies, its state in `status()` / `/health`)."""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from assistant.parts import Parts
from assistant.settings import Settings
from assistant.storage import Database, Job
from serving.services.job_service import JobMonitor, JobService, WorkerSupervisor
from training.worker import JobWorker


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        training={"heartbeat_timeout_s": 30, "worker_restart_backoff_s": 0.4, "worker_restart_backoff_max_s": 5},
    )


@pytest.fixture
def db(settings: Settings) -> Database:
    database = Database(settings.resolved_database_url)
    database.migrate()
    return database


def _queued(db: Database) -> str:
    with db.session() as session:
        job = Job(kind="dpo", params={"method": "dpo"})
        session.add(job)
        session.flush()
        return job.id


def _job(db: Database, job_id: str) -> Job:
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_a_job_the_monitor_failed_stays_failed(settings: Settings, db: Database) -> None:
    worker = JobWorker(Parts(settings), worker_id="elsewhere:1")  # another host: only heartbeats decide
    job_id = _queued(db)
    assert worker.claim() == job_id
    with db.session() as session:  # the worker went silent
        session.get(Job, job_id).heartbeat_at = datetime.now(UTC) - timedelta(minutes=5)  # type: ignore[union-attr]
    assert JobMonitor(settings, db).fail_orphans() == [job_id]
    failed = _job(db, job_id)
    assert failed.state == "failed" and "interrupted" in (failed.error or "")

    assert worker.update(job_id, progress=0.5, heartbeat_at=datetime.now(UTC)) == "failed"  # told to stop
    worker._finish(job_id, "succeeded", metrics={"loss": 0.1})  # the late success report
    after = _job(db, job_id)
    assert (after.state, after.error, after.progress, after.metrics) == ("failed", failed.error, failed.progress, {})


def test_the_monitor_does_not_fail_a_job_that_reported_meanwhile(settings: Settings, db: Database) -> None:
    worker = JobWorker(Parts(settings), worker_id="elsewhere:1")
    job_id = _queued(db)
    worker.claim()
    stale = datetime.now(UTC) - timedelta(minutes=5)
    with db.session() as session:
        session.get(Job, job_id).heartbeat_at = stale  # type: ignore[union-attr]
    observed = _job(db, job_id)
    assert worker.update(job_id, heartbeat_at=datetime.now(UTC)) == "running"  # the beat lands after the read
    monitor = JobMonitor(settings, db)
    assert not monitor._fail_if_unchanged(job_id, observed.state, observed.heartbeat_at, "stale")
    assert _job(db, job_id).state == "running"
    worker._finish(job_id, "succeeded", metrics={"loss": 0.1})
    assert _job(db, job_id).state == "succeeded"
    assert monitor.fail_orphans() == [] and _job(db, job_id).state == "succeeded"


def test_cancel_is_compare_and_set(settings: Settings, db: Database) -> None:
    jobs = JobService(settings, db)
    queued = _queued(db)
    assert jobs.cancel(queued).state == "cancelled"
    running = _queued(db)
    worker = JobWorker(Parts(settings), worker_id="elsewhere:1")
    worker.claim()
    assert jobs.cancel(running).state == "cancelling"
    assert worker.update(running, progress=0.2) == "cancelling"
    worker._finish(running, "cancelled", error="cancelled while training")
    with db.session() as session:
        assert session.scalar(select(Job.state).where(Job.id == running)) == "cancelled"


def _wait_for(condition: object, timeout: float = 30.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_dead_worker_is_restarted_with_backoff(settings: Settings) -> None:
    supervisor = WorkerSupervisor(settings, command=[sys.executable, "-c", "import time; time.sleep(120)"])
    supervisor.start()
    try:
        first = supervisor.status()
        assert first["running"] and first["restarts"] == 0 and first["last_exit_code"] is None
        os.kill(first["pid"], signal.SIGKILL)
        waited_once = _wait_for(lambda: supervisor.status()["restarts"] == 1 and supervisor.status()["running"])
        second = supervisor.status()
        assert second["pid"] != first["pid"] and second["last_exit_code"] == -signal.SIGKILL
        os.kill(second["pid"], signal.SIGKILL)  # a quick second death: the backoff doubles
        waited_twice = _wait_for(lambda: supervisor.status()["restarts"] == 2 and supervisor.status()["running"])
        assert waited_once >= 0.4 and waited_twice >= 0.8, (waited_once, waited_twice)
    finally:
        supervisor.stop()
    stopped = supervisor.status()
    assert not stopped["running"] and stopped["restarts"] == 2
    time.sleep(1.0)
    assert not supervisor.status()["running"]  # a deliberate stop is not restarted


def test_real_worker_process_is_restarted(settings: Settings, db: Database) -> None:
    """The default command (`python -m training.worker`) comes back after kill -9."""
    supervisor = WorkerSupervisor(settings)
    supervisor.start()
    try:
        pid = supervisor.status()["pid"]
        time.sleep(1.0)
        os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: supervisor.status()["restarts"] == 1 and supervisor.status()["running"])
        assert supervisor.status()["pid"] != pid and supervisor.status()["last_exit_code"] == -signal.SIGKILL
    finally:
        supervisor.stop()
