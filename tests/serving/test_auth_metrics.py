"""API keys and Prometheus metrics, on a real server running the transformers engine on the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fixtures.live_server import LiveServer
from tests.serving.conftest import tiny_settings

KEY = "sk-test-0123456789"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def keyed_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from serving.app import create_app

    settings = tiny_settings(
        tmp_path_factory.mktemp("keyed"),
        tiny_model_dir,
        server={
            "api_keys": [
                {"key": KEY, "name": "tests", "role": "admin"},
                {"key": "sk-other-key-000", "collections": ["hr"]},
            ]
        },
    )
    settings.engine.backend = "transformers"
    server = LiveServer(create_app(settings)).start()
    yield server
    server.stop()


def test_health_needs_no_key(keyed_server: LiveServer) -> None:
    assert httpx.get(f"{keyed_server.base_url}/health").status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer wrong-key-123", "Basic " + KEY, "Bearer"])
def test_missing_or_wrong_key_is_401(keyed_server: LiveServer, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/metrics")):
        response = httpx.request(method, f"{keyed_server.base_url}{path}", headers=headers, json={})
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"]["type"] == "authentication_error"


def test_right_key_works_with_the_openai_client(keyed_server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{keyed_server.base_url}/v1", api_key=KEY, max_retries=0)
    reply = client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=4, temperature=0)
    assert reply.choices[0].message.content
    bad = openai.OpenAI(base_url=f"{keyed_server.base_url}/v1", api_key="sk-nope-nope-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_metrics_report_requests_and_generation(keyed_server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{keyed_server.base_url}/v1", api_key=KEY, max_retries=0)
    client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=6, temperature=0)
    text = httpx.get(f"{keyed_server.base_url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'assistant_http_requests_total{method="POST",route="/v1/chat/completions",status="200"}' in text
    assert "assistant_time_to_first_token_seconds_count" in text
    assert 'assistant_generated_tokens_total{model="tiny"}' in text
    assert "assistant_engine_running_requests" in text


def test_key_limited_to_collections(keyed_server: LiveServer) -> None:
    base = keyed_server.base_url
    admin = {"Authorization": f"Bearer {KEY}"}
    hr_only = {"Authorization": "Bearer sk-other-key-000"}
    for collection, text in (("kb", "The router resets with a ten second press."), ("hr", "Leave is twenty days.")):
        files = [("files", (f"{collection}.txt", text.encode()))]
        response = httpx.post(f"{base}/v1/documents", files=files, data={"collection": collection}, headers=admin)
        assert response.status_code == 200, response.text
    denied = httpx.post(f"{base}/v1/retrieve", json={"query": "router", "collections": ["kb"]}, headers=hr_only)
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"
    chat = {"model": "tiny", "messages": QUESTION, "max_tokens": 2, "collections": ["kb"]}
    assert httpx.post(f"{base}/v1/chat/completions", json=chat, headers=hr_only).status_code == 403
    upload = httpx.post(
        f"{base}/v1/documents", files=[("files", ("x.txt", b"hello there"))], data={"collection": "kb"}, headers=hr_only
    )
    assert upload.status_code == 403
    hits = httpx.post(f"{base}/v1/retrieve", json={"query": "router reset"}, headers=hr_only).json()["data"]
    assert hits and {h["collection"] for h in hits} == {"hr"}
    listing = httpx.get(f"{base}/v1/documents", headers=hr_only).json()["data"]
    assert {d["collection"] for d in listing} == {"hr"}
