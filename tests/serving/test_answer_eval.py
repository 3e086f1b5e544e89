"""Answer evaluation: scoring by hand, and the REST job end to end on the real server (tiny model, MiniLM, FAISS)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistant.answer_metrics import best_exact_match, best_f1, strip_citations
from assistant.prompts import NO_SOURCES_ANSWER
from assistant.qa_sets import QAItem
from serving.services.answer_eval_service import score_reply, summarize
from tests.fixtures.live_server import LiveServer
from tests.fixtures.squad_eval import DOCS, QUESTIONS, squad_v2_bytes

ROUTER = QAItem("r", "How long?", ("ten seconds",))
SOURCES = ["Invoices are due in thirty days.", "Hold the reset button for ten seconds."]


def test_a_reply_is_scored_without_its_markers_against_the_source_it_cites() -> None:
    result = score_reply(ROUTER, "Hold it ten seconds [2].", SOURCES, 1.5)
    # tokens [hold, it, ten, seconds] vs gold [ten, seconds]: P = 2/4, R = 1 -> F1 = 2/3
    assert result.exact_match == 0.0 and result.f1 == pytest.approx(2 / 3) and result.contains == 1.0
    assert result.cited == [2] and result.citation_correct == 1.0
    assert result.grounding == pytest.approx(3 / 4)  # "it" is not in source [2]
    wrong = score_reply(ROUTER, "ten seconds [1]", SOURCES, 1.0)
    assert wrong.exact_match == 1.0 and wrong.citation_correct == 0.0 and wrong.grounding == 0.0
    unmarked = score_reply(ROUTER, "ten seconds", SOURCES, 1.0)  # no marker: every shown source counts as cited
    assert unmarked.cited == [] and unmarked.citation_correct == 1.0 and unmarked.grounding == 1.0


def test_abstentions_score_zero_on_answerable_and_count_on_unanswerable() -> None:
    unanswerable = QAItem("u", "Who?", (), unanswerable=True)
    results = [
        score_reply(ROUTER, "I don't know.", SOURCES, 1.0),  # abstained on an answerable question
        score_reply(ROUTER, "ten seconds [2]", SOURCES, 3.0),
        score_reply(unanswerable, NO_SOURCES_ANSWER, [], 0.1, "no_relevant_sources"),
        score_reply(unanswerable, "Ada Lovelace [1]", SOURCES, 2.0),
    ]
    metrics = summarize(results)
    assert (metrics["answerable"], metrics["unanswerable"]) == (2, 2)
    assert metrics["exact_match"] == 0.5 and metrics["f1"] == 0.5
    assert metrics["answered_with_sources"] == 1 and metrics["citation_accuracy"] == 1.0
    # abstained on q1 (answerable) and q3 (unanswerable): precision 1/2; unanswerable q3, q4: recall 1/2
    assert metrics["abstention"] == {"abstentions": 2, "unanswerable": 2, "precision": 0.5, "recall": 0.5}
    assert metrics["latency_s"]["p50"] == 1.0 and metrics["latency_s"]["p95"] == 3.0  # sorted 0.1 1 2 3


def test_a_run_a_restart_interrupted_is_marked_failed(tmp_path: Path) -> None:
    from assistant.settings import Settings
    from serving.services.answer_eval_service import EvaluationService

    settings = Settings(data_dir=tmp_path)
    folder = settings.runs_dir / "evaluations" / "eval-x"
    folder.mkdir(parents=True)
    (folder / "evaluation.json").write_text(json.dumps({"id": "eval-x", "status": "running", "error": None}))
    service = EvaluationService(settings, chat=None)  # type: ignore[arg-type]  # the chat service is not used here
    run = service.get("eval-x")
    assert run.status == "failed" and run.error is not None and "interrupted" in run.error
    assert [run.id for run in service.list_runs()] == ["eval-x"]


# ---------------------------------------------------------------- through REST


def _wait(server: LiveServer, run_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = httpx.get(f"{server.base_url}/v1/evaluations/{run_id}", timeout=30).json()
        if state["status"] in ("succeeded", "failed", "cancelled"):
            return state
        time.sleep(0.5)
    raise TimeoutError(run_id)


@pytest.fixture(scope="module")
def eval_docs(live_server: LiveServer) -> None:
    files = [("files", (name, text.encode())) for name, text in DOCS.items()]
    response = httpx.post(
        f"{live_server.base_url}/v1/documents", files=files, data={"collection": "evalkb"}, timeout=120
    )
    assert response.status_code == 200, response.text


def test_rest_evaluation_runs_the_chat_path_and_reports(live_server: LiveServer, eval_docs: None) -> None:
    from assistant.storage import ChatRecord

    base = live_server.base_url
    started = httpx.post(
        f"{base}/v1/evaluations",
        files={"file": ("dev-v2.json", squad_v2_bytes())},
        data={"collection": "evalkb"},
        timeout=60,
    )
    assert started.status_code == 202, started.text
    assert started.json()["total"] == len(QUESTIONS)
    state = _wait(live_server, started.json()["id"])
    assert state["status"] == "succeeded", state["error"]
    report = state["report"]
    results = {r["id"]: r for r in report["results"]}
    assert set(results) == {q[0] for q in QUESTIONS} and state["done"] == len(QUESTIONS) and state["progress"] == 1.0

    # the off-topic unanswerable question gets the fixed answer, and that counts as a right abstention
    assert results["q-football"]["reply"] == NO_SOURCES_ANSWER and results["q-football"]["abstained"]
    assert report["metrics"]["abstention"]["recall"] == 1.0
    # each answerable question went through retrieval, and every reply is a stored chat answer (the exact chat path)
    with live_server.state.db.session() as session:
        stored = {row.answer for row in session.query(ChatRecord).all()}
    for qid, question, answers, _ in QUESTIONS[:3]:
        r = results[qid]
        assert r["retrieval"] == "rag" and r["reply"] in stored and r["question"] == question
        expected = 0.0 if r["abstained"] else best_f1(strip_citations(r["reply"]), answers)
        assert r["f1"] == pytest.approx(expected)
    # aggregates are the means of the per-question scores, computed here independently
    answerable = [results[q[0]] for q in QUESTIONS[:3]]
    assert report["metrics"]["f1"] == pytest.approx(sum(r["f1"] for r in answerable) / 3)
    assert report["metrics"]["exact_match"] == pytest.approx(
        sum(0.0 if r["abstained"] else best_exact_match(strip_citations(r["reply"]), r["answers"]) for r in answerable)
        / 3
    )
    assert [p["answered"] for p in report["curve"]] == [1, 2, 3]
    assert report["curve"][-1]["f1"] == pytest.approx(report["metrics"]["f1"])
    assert report["metrics"]["latency_s"]["p95"] >= report["metrics"]["latency_s"]["p50"] > 0

    png = httpx.get(f"{base}/v1/evaluations/{state['id']}/files/curves", timeout=30)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    markdown = httpx.get(f"{base}/v1/evaluations/{state['id']}/files/markdown", timeout=30).text
    assert "| F1 |" in markdown
    listed = httpx.get(f"{base}/v1/evaluations", timeout=30).json()["data"]
    assert state["id"] in {run["id"] for run in listed}


def test_rest_evaluation_refuses_bad_input_before_running(live_server: LiveServer, eval_docs: None) -> None:
    base = live_server.base_url
    jsonl = b'{"question": "How long?", "answer": "ten seconds"}\n'
    bad_model = httpx.post(
        f"{base}/v1/evaluations", files={"file": ("qa.jsonl", jsonl)}, data={"model": "nope"}, timeout=30
    )
    assert bad_model.status_code == 404
    bad_collection = httpx.post(
        f"{base}/v1/evaluations", files={"file": ("qa.jsonl", jsonl)}, data={"collection": "missing"}, timeout=30
    )
    assert bad_collection.status_code == 404
    bad_file = httpx.post(f"{base}/v1/evaluations", files={"file": ("qa.jsonl", b'{"answer": "x"}\n')}, timeout=30)
    assert bad_file.status_code == 422
    assert httpx.get(f"{base}/v1/evaluations/eval-missing", timeout=30).status_code == 404
