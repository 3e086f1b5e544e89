"""Job faults: a worker killed mid-job, a server restarted mid-job, cancellation: clear states, nothing half-written."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from assistant.storage import Adapter, Database, Job
from tests.fixtures.live_server import LiveServer

LONG_DPO = {"max_steps": 400, "learning_rate": 1e-3, "per_device_train_batch_size": 1, "lora_r": 8,
            "logging_steps": 1, "near_duplicate_threshold": 1.0, "min_tokens": 1}  # fmt: skip


@pytest.fixture
def pairs(live_server: LiveServer, tmp_path: Path) -> None:
    lines = [
        f'{{"prompt": "Question {i}: what colour is item {i}?", "chosen": "Item {i} is blue, as the catalogue says.", '
        f'"rejected": "I think it might be some colour."}}'
        for i in range(8)
    ]
    response = httpx.post(
        f"{live_server.base_url}/v1/preferences",
        files={"file": ("faults.jsonl", "\n".join(lines).encode())},
        timeout=60,
    )
    assert response.status_code == 200


def _start_worker(server: LiveServer, tmp_path: Path) -> subprocess.Popen[bytes]:
    import yaml

    config = tmp_path / "worker.yaml"
    config.write_text(yaml.safe_dump(server.state.settings.model_dump(mode="json")))
    command = [sys.executable, "-m", "training.worker", "--config", str(config), "--poll", "0.2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _submit(server: LiveServer, name: str) -> str:
    spec = {
        "method": "dpo",
        "name": name,
        "data": {"source": "preferences", "provenance": "imported"},
        "hyperparameters": LONG_DPO,
        "gate": False,
    }
    response = httpx.post(f"{server.base_url}/v1/training/jobs", json=spec, timeout=60)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _wait(server: LiveServer, job_id: str, done: Any, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = httpx.get(f"{server.base_url}/v1/training/jobs/{job_id}", timeout=30).json()
        if done(job):
            return job
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} stuck: {job}")


def _registered(server: LiveServer, job_id: str) -> list[Adapter]:
    with server.state.db.session() as session:
        return list(session.scalars(select(Adapter).where(Adapter.job_id == job_id)))


def test_worker_killed_mid_job_fails_the_job(live_server: LiveServer, pairs: None, tmp_path: Path) -> None:
    worker = _start_worker(live_server, tmp_path)
    try:
        job_id = _submit(live_server, "faults-kill")
        _wait(live_server, job_id, lambda j: j["state"] == "running" and j["progress"] > 0)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        job = _wait(live_server, job_id, lambda j: j["state"] != "running", timeout=60)
    finally:
        worker.kill()
    assert job["state"] == "failed" and "interrupted" in job["error"]
    assert _registered(live_server, job_id) == []
    assert not (live_server.state.settings.adapters_dir / "faults-kill").exists()


def test_cancel_running_job_registers_nothing(live_server: LiveServer, pairs: None, tmp_path: Path) -> None:
    worker = _start_worker(live_server, tmp_path)
    try:
        job_id = _submit(live_server, "faults-cancel")
        _wait(live_server, job_id, lambda j: j["state"] == "running" and j["progress"] > 0)
        cancel = httpx.post(f"{live_server.base_url}/v1/training/jobs/{job_id}/cancel", timeout=30)
        assert cancel.status_code == 200 and cancel.json()["state"] == "cancelling"
        job = _wait(live_server, job_id, lambda j: j["state"] == "cancelled", timeout=120)
        again = httpx.post(f"{live_server.base_url}/v1/training/jobs/{job_id}/cancel", timeout=30)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    assert "nothing was registered" in job["error"]
    assert again.status_code == 409
    assert _registered(live_server, job_id) == []


def test_cancel_queued_job(live_server: LiveServer, pairs: None) -> None:
    job_id = _submit(live_server, "faults-queued")
    response = httpx.post(f"{live_server.base_url}/v1/training/jobs/{job_id}/cancel", timeout=30)
    assert response.json()["state"] == "cancelled"


def test_server_restart_fails_jobs_left_running(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A job whose worker died with the old server is failed when the new server starts, never left running."""
    from serving.app import create_app
    from tests.serving.conftest import tiny_settings

    settings = tiny_settings(tmp_path, tiny_model_dir)
    settings.engine.backend = "transformers"
    db = Database(settings.resolved_database_url)
    db.migrate()
    with db.session() as session:
        session.add(
            Job(
                id="job-orphan",
                kind="dpo",
                state="running",
                worker=f"{socket.gethostname()}:999999",
                params={},
                progress=0.4,
            )
        )
    server = LiveServer(create_app(settings)).start()
    try:
        job = httpx.get(f"{server.base_url}/v1/training/jobs/job-orphan", timeout=30).json()
    finally:
        server.stop()
    assert job["state"] == "failed" and "interrupted" in job["error"]


def test_a_rank_above_the_engines_is_refused_over_rest(live_server: LiveServer) -> None:
    """A chat adapter the engine could not load is refused at creation, naming both the option and the setting."""
    limit = live_server.state.settings.engine.max_lora_rank
    spec = {"method": "sft", "name": "too-wide", "data": {"source": "preferences"}, "gate": False}
    before = httpx.get(f"{live_server.base_url}/v1/training/jobs", timeout=30).json()["data"]
    cases = (
        ({"lora_r": limit * 2}, "lora_r"),
        ({"lora_r": limit, "sweep_lora_ranks": [4, limit * 4]}, "sweep_lora_ranks"),
    )
    for options, key in cases:
        body = {**spec, "method": "sweep" if key.startswith("sweep") else "sft", "hyperparameters": options}
        if key.startswith("sweep"):
            body["data"] = {"source": "file", "file_id": _upload_pairs(live_server)}
        response = httpx.post(f"{live_server.base_url}/v1/training/jobs", json=body, timeout=30)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["param"] == f"hyperparameters.{key}" and key in error["message"]
        assert f"engine.max_lora_rank ({limit})" in error["message"]
    after = httpx.get(f"{live_server.base_url}/v1/training/jobs", timeout=30).json()["data"]
    assert len(after) == len(before)  # nothing queued


def _upload_pairs(server: LiveServer) -> str:
    lines = "".join(f'{{"prompt": "Q{i}?", "completion": "A{i}."}}\n' for i in range(4))
    upload = httpx.post(f"{server.base_url}/v1/training/files", files={"file": ("r.jsonl", lines)}, timeout=30)
    assert upload.status_code == 200, upload.text
    return str(upload.json()["id"])
