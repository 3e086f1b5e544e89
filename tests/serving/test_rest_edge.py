"""The REST JSON is made at the edge (`serving.rest_format`): the CLI prints what the API returns for the same job,
and a queued job stores the whole validated request body as the parameters the worker reads."""

from __future__ import annotations

import json
from typing import Any

import httpx
from typer.testing import CliRunner

from cli.main import app
from serving.schemas import JobSpec
from tests.fixtures.live_server import LiveServer

PAIRS = "".join(
    json.dumps({"prompt": f"Q{i}?", "chosen": f"Answer {i}, with its source.", "rejected": "No idea."}) + "\n"
    for i in range(4)
)


def _cli(server: LiveServer, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(server.state.settings.data_dir)])
    assert result.exit_code == 0, result.output
    return result.stdout


def _queue(server: LiveServer) -> tuple[dict[str, Any], dict[str, Any]]:
    upload = httpx.post(f"{server.base_url}/v1/training/files", files={"file": ("edge.jsonl", PAIRS)}, timeout=30)
    assert upload.status_code == 200 and upload.json()["object"] == "file", upload.text
    spec = {"method": "dpo", "name": "edge-cli", "data": {"source": "file", "file_id": upload.json()["id"]},
            "hyperparameters": {"max_steps": 1}, "gate": False}  # fmt: skip
    created = httpx.post(f"{server.base_url}/v1/training/jobs", json=spec, timeout=30)
    assert created.status_code == 201, created.text
    return spec, created.json()


def test_cli_prints_the_rest_json_of_a_job(live_server: LiveServer) -> None:
    spec, created = _queue(live_server)
    job_id = created["id"]
    assert created["params"] == JobSpec.model_validate(spec).model_dump(mode="json")  # every field, defaults too
    assert created["params"]["data"] == {
        **spec["data"],
        "provenance": None,
        "since": None,
        "collection": None,
        "generator": "rules",
    }
    url = f"{live_server.base_url}/v1/training/jobs/{job_id}"
    assert json.loads(_cli(live_server, "jobs", "show", job_id)) == httpx.get(url, timeout=30).json()
    cancelled = json.loads(_cli(live_server, "jobs", "cancel", job_id))  # never left queued for another test's worker
    assert cancelled["state"] == "cancelled" and cancelled["object"] == "training.job" and "log_tail" not in cancelled
    assert httpx.get(url, timeout=30).json() == {**cancelled, "log_tail": []}
    listed = next(line for line in _cli(live_server, "jobs", "list").splitlines() if line.startswith(job_id))
    assert listed.split()[1:3] == ["dpo", "cancelled"]
    page = httpx.get(f"{live_server.base_url}/v1/training/jobs", timeout=30).json()
    assert page["object"] == "list" and {job["id"]: job for job in page["data"]}[job_id] == cancelled
