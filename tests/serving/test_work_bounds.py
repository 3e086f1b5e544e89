"""Bounds on the work a key can start (issue 26, point 7): evaluations run one at a time (429 beside) and their
questions take generation slots; reward inputs longer than the model are cut, not an error; loaded reward models are
bounded; metric labels are resolved identities, never the request's text."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.live_server import LiveServer
from tests.fixtures.teams import ADMIN_KEY, bearer


def _chat(server: LiveServer, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 2, "use_retrieval": False}
    return httpx.post(f"{server.base_url}/v1/chat/completions", json=body, headers=bearer(ADMIN_KEY), timeout=120)


def test_metric_labels_are_resolved_identities(team_server: LiveServer) -> None:
    for model in ("team@1", "team@v0001", "team:v1", "team@v1"):
        assert _chat(team_server, model).status_code == 200, model
    text = httpx.get(f"{team_server.base_url}/metrics", headers=bearer(ADMIN_KEY), timeout=30).text
    labels = {line.split('model="')[1].split('"')[0] for line in text.splitlines() if 'model="' in line}
    assert "team@v1" in labels
    assert not labels & {"team@1", "team@v0001", "team:v1"}, labels


def _questions(count: int) -> bytes:
    rows = [{"question": f"What is item {i}?", "answers": [f"item {i}"]} for i in range(count)]
    return "\n".join(json.dumps(row) for row in rows).encode()


def test_one_evaluation_at_a_time_and_its_questions_take_slots(team_server: LiveServer) -> None:
    admission = team_server.state.admission
    seen_running: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # the evaluation's questions show up as running generations
        while not stop.is_set():
            seen_running.append(admission.running)
            stop.wait(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    base = f"{team_server.base_url}/v1/evaluations"
    files = {"file": ("q.jsonl", _questions(6))}
    first = httpx.post(base, files=files, data={"collection": "eng"}, headers=bearer(ADMIN_KEY), timeout=60)
    assert first.status_code == 202, first.text
    second = httpx.post(base, files=files, data={"collection": "eng"}, headers=bearer(ADMIN_KEY), timeout=60)
    assert second.status_code == 429 and "max_concurrent_evaluations" in second.text
    assert int(second.headers["retry-after"]) > 0
    for _ in range(600):
        state = httpx.get(f"{base}/{first.json()['id']}", headers=bearer(ADMIN_KEY), timeout=30).json()
        if state["status"] != "running":
            break
        stop.wait(0.2)
    stop.set()
    watcher.join(5)
    assert state["status"] == "succeeded", state
    assert max(seen_running) >= 1
    third = httpx.post(base, files=files, data={"collection": "eng"}, headers=bearer(ADMIN_KEY), timeout=60)
    assert third.status_code == 202, third.text


def test_reward_inputs_longer_than_the_model_are_cut(tiny_model_dir: Path) -> None:
    from training.modeling import load_tokenizer
    from training.reward import load_reward_base, score_texts

    tokenizer = load_tokenizer(tiny_model_dir)
    model = load_reward_base(tiny_model_dir, tokenizer.pad_token_id)
    longest = model.config.max_position_embeddings
    text = " ".join(f"word{i}" for i in range(3 * longest))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > longest
    import torch

    model.eval()
    with torch.no_grad():  # independently: the model on the last `longest` tokens
        window = torch.tensor([ids[-longest:]])
        expected = model(input_ids=window, attention_mask=torch.ones_like(window)).logits[0, 0].item()
    (score,) = score_texts(model, tokenizer, [text])
    assert score == pytest.approx(expected, abs=1e-4)


def test_loaded_reward_models_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.reward
    from assistant.parts import Parts
    from assistant.settings import Settings
    from serving.services.reward_service import CACHED_SCORERS, RewardService

    loads: list[str] = []

    class CountingScorer:  # stands in for the model load: this test is about which scorers stay cached
        def __init__(self, base: Any, path: Any) -> None:
            loads.append(str(path))

    monkeypatch.setattr(training.reward, "RewardScorer", CountingScorer)
    monkeypatch.setattr("assistant.model_files.resolve_lm", lambda settings: tmp_path)
    service = RewardService(Parts(Settings(data_dir=tmp_path)))
    records = [type("Record", (), {"id": f"ad-{i}", "path": f"/adapters/r{i}"})() for i in range(CACHED_SCORERS + 2)]
    for record in records + records[-CACHED_SCORERS:]:
        service._scorer(record)
    assert len(service._scorers) == CACHED_SCORERS
    assert len(loads) == len(records)  # the most recent ones were reused, not loaded again
    service._scorer(records[0])
    assert len(loads) == len(records) + 1 and len(service._scorers) == CACHED_SCORERS
