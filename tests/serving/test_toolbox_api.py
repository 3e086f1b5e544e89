"""The toolbox over REST and jobs: `POST /v1/rewards/score` on the live server with a trained reward model (scores
equal an independent scorer's), and a KTO job trained by the worker from stored thumbs (refused when there are none)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from assistant.errors import UnprocessableError
from assistant.parts import Parts
from assistant.settings import Settings
from assistant.storage import ChatRecord, Database, Feedback, Job
from serving.schemas import JobSpec
from serving.services.job_service import JobService
from tests.fixtures.live_server import LiveServer
from tests.training.conftest import FAST_OPTIONS, TOPICS
from training.job_options import allowed_options
from training.runs import TrainingRequest, run_training

ANSWERS = [a for _, a in TOPICS]


# What the API accepts of the fast test options (the rest, such as save_steps, is the server's to decide).
API_OPTIONS = {key: value for key, value in FAST_OPTIONS.items() if key in allowed_options("kto")}


def test_reward_scoring_endpoint(live_server: LiveServer, tmp_path: Path) -> None:
    from assistant.prompts import build_rag_messages
    from training.reward import RewardScorer

    url = f"{live_server.base_url}/v1/rewards/score"
    item = {"prompt": "How long is the warranty?", "answer": "Two years [1]."}
    assert httpx.post(url, json={"model": "no-such-rm", "items": [item]}, timeout=60).status_code == 404
    settings = live_server.state.settings
    pairs = [{"prompt": q, "chosen": a + " [1]", "rejected": ANSWERS[(i + 3) % 8]} for i, (q, a) in enumerate(TOPICS)]
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(pairs))
    outcome = run_training(settings, TrainingRequest("reward", [data], name="api-rm", options=FAST_OPTIONS))
    assert outcome.adapter is not None and outcome.adapter.kind == "reward"
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    body = {"model": "api-rm@v1", "items": [item, {"messages": messages, "answer": "Paris."}]}
    response = httpx.post(url, json=body, timeout=120)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["model"] == "api-rm@v1" and [d["index"] for d in result["data"]] == [0, 1]
    scorer = RewardScorer(Path(settings.models.lm), outcome.adapter.path)
    rendered = [scorer.tokenizer.apply_chat_template(build_rag_messages(m, None), tokenize=False,
                                                     add_generation_prompt=True)
                for m in ([{"role": "user", "content": item["prompt"]}], messages)]  # fmt: skip
    expected = scorer.score(rendered, [item["answer"], "Paris."])
    assert [d["score"] for d in result["data"]] == pytest.approx(expected, abs=1e-4)
    bad = httpx.post(url, json={"model": "api-rm", "items": [{"answer": "x"}]}, timeout=60)
    assert bad.status_code == 422 and "needs rendered_prompt, messages or prompt" in bad.text


def store_thumbs(db: Database, up: int, down: int) -> None:
    with db.session() as session:
        for i in range(up + down):
            q, a = TOPICS[i % len(TOPICS)]
            answer = a if i < up else ANSWERS[(i + 3) % len(ANSWERS)]
            prompt = f"<|im_start|>user\n{q} ({i})<|im_end|>\n<|im_start|>assistant\n"
            session.add(ChatRecord(id=f"chat-{i}", model="tiny", messages=[], prompt=prompt, answer=answer))
            session.flush()
            session.add(Feedback(chat_id=f"chat-{i}", rating=1 if i < up else -1))


def test_kto_job_from_stored_thumbs(tiny_model_dir: Path, tmp_path: Path) -> None:
    from training.worker import JobWorker

    settings = Settings(data_dir=tmp_path / "data", models={"lm": str(tiny_model_dir)})  # type: ignore[arg-type]
    db = Database(settings.resolved_database_url)
    db.migrate()
    service = JobService(settings, db)
    spec = {"method": "kto", "name": "thumbs", "data": {"source": "feedback"}, "gate": False,
            "hyperparameters": {**API_OPTIONS, "max_steps": 2}}  # fmt: skip
    with pytest.raises(UnprocessableError, match="no stored feedback"):
        service.create(JobSpec.model_validate(spec))
    with pytest.raises(UnprocessableError, match=r"read data\.source in"):
        service.create(JobSpec.model_validate({**spec, "method": "classify"}))
    store_thumbs(db, up=6, down=3)
    job = service.create(JobSpec.model_validate(spec))
    assert JobWorker(Parts(settings)).run_once()
    with db.session() as session:
        row = session.get(Job, job.id)
        assert row is not None and row.state == "succeeded", row.error
        assert row.metrics["adapter"] == "thumbs@v1"
    thumbs = (settings.runs_dir / "jobs" / job.id / "feedback.jsonl").read_text().splitlines()
    assert len(thumbs) == 9 and sum(json.loads(t)["label"] for t in thumbs) == 6
