"""The REST API against a real server (uvicorn, vLLM on the tiny model, SQLite) with the official openai client."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import select

from assistant.storage import Adapter, ChatRecord
from tests.fixtures.live_server import LiveServer

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
# Plain chats: the server is shared, and documents other test files upload could turn these into the fixed
# "I don't know" answer of a grounded chat; these tests are about the OpenAI surface and adapters, not retrieval.
PLAIN = {"use_retrieval": False}


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.base_url}/v1", api_key="unused", max_retries=0)


def test_health_is_ready(live_server: LiveServer) -> None:
    body = httpx.get(f"{live_server.base_url}/health").json()
    assert body["status"] == "ready"
    assert httpx.get(f"{live_server.base_url}/health/live").status_code == 200


def test_models_lists_base(client: openai.OpenAI) -> None:
    assert "tiny" in [model.id for model in client.models.list()]


def test_chat_completion_non_streaming(client: openai.OpenAI, live_server: LiveServer) -> None:
    response = client.chat.completions.create(
        model="tiny", messages=QUESTION, max_tokens=12, temperature=0, extra_body=PLAIN
    )
    choice = response.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    assert response.usage is not None and 0 < response.usage.completion_tokens <= 12
    with live_server.state.db.session() as session:
        record = session.get(ChatRecord, response.id)
    assert record is not None and record.answer == choice.message.content
    assert record.prompt.endswith("<|im_start|>assistant\n") and record.sampling["max_tokens"] == 12


def test_chat_completion_streaming_matches_non_streaming(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(
        model="tiny", messages=QUESTION, max_tokens=12, temperature=0, extra_body=PLAIN
    )
    stream = client.chat.completions.create(
        model="tiny",
        messages=QUESTION,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=PLAIN,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in {"stop", "length"}
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == full.usage.total_tokens


def test_adapter_by_name_changes_output(client: openai.OpenAI, live_server: LiveServer, tiny_adapter_dir: Path) -> None:
    with live_server.state.db.session() as session:
        session.add(Adapter(name="support", version=1, path=str(tiny_adapter_dir), base_model="tiny", status="active"))
    base = client.chat.completions.create(
        model="tiny", messages=QUESTION, max_tokens=12, temperature=0, extra_body=PLAIN
    )
    tuned = client.chat.completions.create(
        model="support", messages=QUESTION, max_tokens=12, temperature=0, extra_body=PLAIN
    )
    exact = client.chat.completions.create(
        model="support@v1", messages=QUESTION, max_tokens=12, temperature=0, extra_body=PLAIN
    )
    assert tuned.choices[0].message.content != base.choices[0].message.content
    assert exact.choices[0].message.content == tuned.choices[0].message.content
    assert {"support", "support@v1"} <= {model.id for model in client.models.list()}


BAD_REQUESTS = [
    ("malformed json", b'{"model": "tiny", "messages": [', 400, None),
    ("unknown model", {"model": "no-such-model", "messages": QUESTION}, 404, "model"),
    ("empty messages", {"model": "tiny", "messages": []}, 400, "messages"),
    ("empty content", {"model": "tiny", "messages": [{"role": "user", "content": "  "}]}, 400, "messages"),
    ("max_tokens beyond context", {"model": "tiny", "messages": QUESTION, "max_tokens": 100_000}, 400, "max_tokens"),
    ("negative max_tokens", {"model": "tiny", "messages": QUESTION, "max_tokens": -1}, 400, "max_tokens"),
    ("temperature out of range", {"model": "tiny", "messages": QUESTION, "temperature": 7}, 400, "temperature"),
    ("unknown role", {"model": "tiny", "messages": [{"role": "robot", "content": "hi"}]}, 400, None),
    ("oversized message", {"model": "tiny", "messages": [{"role": "user", "content": "x" * 40_000}]}, 400, None),
    ("missing model", {"messages": QUESTION}, 400, "model"),
]


@pytest.mark.parametrize(("case", "body", "status", "param"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_gets_openai_shaped_4xx(
    live_server: LiveServer, case: str, body: object, status: int, param: str | None
) -> None:
    url = f"{live_server.base_url}/v1/chat/completions"
    if isinstance(body, bytes):
        response = httpx.post(url, content=body, headers={"content-type": "application/json"})
    else:
        response = httpx.post(url, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"]
    if param:
        assert error["param"] is not None and error["param"].startswith(param)
    # the server keeps serving after every bad request
    ok = httpx.post(url, json={"model": "tiny", "messages": QUESTION, "max_tokens": 2})
    assert ok.status_code == 200


def test_openai_client_raises_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=QUESTION)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=10**6)


def test_records_are_queryable(live_server: LiveServer) -> None:
    with live_server.state.db.session() as session:
        assert session.scalars(select(ChatRecord)).first() is not None
