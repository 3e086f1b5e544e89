"""The closed loop end to end through REST against the real server (vLLM on the tiny model, SQLite, FAISS) and a
real worker process: documents -> chat -> thumbs-down with corrections -> DPO job -> gate -> activation under
traffic -> the corrections gained log-probability margin -> a second version -> rollback restores the first."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.live_server import LiveServer

QUESTIONS = [
    "How do I reset the router?",
    "How many days of leave do employees get?",
    "When are invoices due?",
    "What happens when a payment is late?",
    "What does the router's light do during a reset?",
    "Does unused leave carry over?",
]
CORRECTION = "Please check the handbook section cited above; it states the rule precisely."
DPO_OPTIONS = {
    "max_steps": 12, "learning_rate": 0.01, "beta": 0.5, "per_device_train_batch_size": 2, "lora_r": 8,
    "lora_alpha": 16, "eval_split": 0.25, "logging_steps": 1, "near_duplicate_threshold": 1.0, "min_tokens": 1,
}  # fmt: skip


def _post(server: LiveServer, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", timeout=120, **kwargs)


def _wait_job(server: LiveServer, job_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{server.base_url}/v1/training/jobs/{job_id}").json()
        if job["state"] in {"succeeded", "failed", "cancelled"}:
            return job
        time.sleep(1)
    raise TimeoutError(f"job {job_id} did not finish: {job}")


@pytest.fixture(scope="module")
def worker(live_server: LiveServer) -> Iterator[None]:
    from serving.services.job_service import WorkerSupervisor

    supervisor = WorkerSupervisor(live_server.state.settings)
    supervisor.start()
    yield
    supervisor.stop()


@pytest.fixture(scope="module")
def rated(live_server: LiveServer) -> dict[str, Any]:
    """Documents uploaded, questions asked, every answer rated down with a correction."""
    from tests.serving.test_rag_api import DOCS

    files = [("files", (name, text.encode())) for name, text in DOCS.items()]
    assert _post(live_server, "/v1/documents", files=files, data={"collection": "loop"}).status_code == 200
    since = int(time.time()) - 1
    pairs = []
    for question in QUESTIONS:
        body = {
            "model": "tiny",
            "messages": [{"role": "user", "content": question}],
            "max_tokens": 8,
            "temperature": 0,
            "collections": ["loop"],
        }
        reply = _post(live_server, "/v1/chat/completions", json=body).json()
        feedback = {"response_id": reply["id"], "rating": -1, "correction": CORRECTION}
        made = _post(live_server, "/v1/feedback", json=feedback).json()["preference_pairs"]
        assert len(made) == 1
        pairs.append(made[0])
    stored = httpx.get(f"{live_server.base_url}/v1/preferences", params={"since": since, "limit": 100}).json()
    return {"since": since, "pairs": [p for p in stored["data"] if p["id"] in pairs]}


def _margins(model_dir: Path, adapter: Path | None, pairs: list[dict[str, Any]]) -> list[float]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.gate import completion_logprob

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    return [
        completion_logprob(model, tokenizer, p["prompt"], p["chosen"])
        - completion_logprob(model, tokenizer, p["prompt"], p["rejected"])
        for p in pairs
    ]


def _job(server: LiveServer, since: int, base_adapter: str | None = None) -> dict[str, Any]:
    spec = {
        "method": "dpo",
        "name": "loop",
        "data": {"source": "preferences", "provenance": "feedback", "since": since},
        "base_adapter": base_adapter,
        "hyperparameters": DPO_OPTIONS,
    }
    created = _post(server, "/v1/training/jobs", json=spec)
    assert created.status_code == 201, created.text
    job = _wait_job(server, created.json()["id"])
    assert job["state"] == "succeeded", f"{job['error']}\n" + "\n".join(job["log_tail"])
    return job


def _answer(server: LiveServer, model: str, question: str = QUESTIONS[0]) -> str:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 10,
        "temperature": 0,
        "collections": ["loop"],
    }
    response = _post(server, "/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def test_feedback_trains_gates_activates_and_rolls_back(
    live_server: LiveServer, worker: None, rated: dict[str, Any], tiny_model_dir: Path
) -> None:
    before = _margins(tiny_model_dir, None, rated["pairs"])
    first = _job(live_server, rated["since"])
    assert first["metrics"]["adapter"] == "loop@v1"
    gate = first["metrics"]["gate"]
    assert gate["baseline"] == "base" and "pairs" in gate["candidate"]

    # activate while chat traffic flows: no request fails
    failures: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            body = {"model": "loop", "messages": [{"role": "user", "content": QUESTIONS[1]}], "max_tokens": 4}
            status = httpx.post(f"{live_server.base_url}/v1/chat/completions", json=body, timeout=60).status_code
            if status != 200:
                failures.append(status)

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for thread in threads:
        thread.start()
    activated = _post(live_server, "/v1/adapters/loop/activate", json={"version": 1, "force": True})
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join()
    assert activated.status_code == 200 and activated.json()["status"] == "active"
    assert failures == []

    adapters = httpx.get(f"{live_server.base_url}/v1/adapters").json()
    v1 = next(a for a in adapters["data"] if a["id"] == "loop@v1")
    assert v1["gate"] is not None and v1["lineage"]["method"] == "dpo"
    after = _margins(tiny_model_dir, Path(v1["path"]), rated["pairs"])
    assert sum(after) / len(after) > sum(before) / len(before)

    v1_answer = _answer(live_server, "loop")
    second = _job(live_server, rated["since"], base_adapter="loop@v1")
    assert second["metrics"]["adapter"] == "loop@v2"
    assert second["metrics"]["gate"]["baseline"] == "loop@v1"
    assert _post(live_server, "/v1/adapters/loop/activate", json={"version": 2, "force": True}).status_code == 200
    assert _answer(live_server, "loop") == _answer(live_server, "loop@v2")
    rolled = _post(live_server, "/v1/adapters/loop/rollback")
    assert rolled.status_code == 200 and rolled.json()["version"] == 1
    assert _answer(live_server, "loop") == v1_answer


def test_job_on_empty_selection_is_refused(live_server: LiveServer) -> None:
    spec = {"method": "dpo", "name": "loop", "data": {"source": "preferences", "since": 4_000_000_000}}
    response = _post(live_server, "/v1/training/jobs", json=spec)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "empty_dataset"


def test_unknown_job_and_base_adapter(live_server: LiveServer, rated: dict[str, Any]) -> None:
    assert httpx.get(f"{live_server.base_url}/v1/training/jobs/job-nope").status_code == 404
    spec = {"method": "dpo", "data": {"source": "preferences"}, "base_adapter": "missing@v3"}
    assert _post(live_server, "/v1/training/jobs", json=spec).status_code == 404
