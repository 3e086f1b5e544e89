"""Quotas per key on a real server (transformers engine on the tiny model, SQLite): tokens per UTC day and requests
per minute, refused with 429 + `Retry-After` in OpenAI's error shape, the remainder in `GET /v1/me`. The count is
checked against the `usage` the server's own responses report. Across two replicas: tests/serving/test_keys.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.live_server import LiveServer
from tests.fixtures.teams import bearer
from tests.serving.conftest import tiny_settings

ADMIN = "sk-quota-admin-0123456789"
ASK = {"model": "tiny", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from serving.app import create_app

    keys = [{"key": ADMIN, "name": "ops", "role": "admin"}]
    settings = tiny_settings(tmp_path_factory.mktemp("quotas"), tiny_model_dir, server={"api_keys": keys})
    settings.engine.backend = "transformers"
    live = LiveServer(create_app(settings)).start()
    yield live
    live.stop()


def _key(server: LiveServer, **limits: Any) -> str:
    spec = {"name": f"quota-{time.monotonic_ns()}", **limits}
    response = httpx.post(f"{server.base_url}/v1/keys", json=spec, headers=bearer(ADMIN))
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def _chat(server: LiveServer, key: str, **extra: Any) -> httpx.Response:
    return httpx.post(f"{server.base_url}/v1/chat/completions", json={**ASK, **extra}, headers=bearer(key), timeout=120)


def _quota(server: LiveServer, key: str) -> dict[str, Any]:
    quota: dict[str, Any] = httpx.get(f"{server.base_url}/v1/me", headers=bearer(key)).json()["quota"]
    return quota


def _seconds_to_utc_midnight() -> float:
    return 86_400 - time.time() % 86_400


def test_a_spent_daily_token_quota_is_429_with_retry_after_and_other_keys_go_on(server: LiveServer) -> None:
    small, other = _key(server, tokens_per_day=60), _key(server)
    spent = 0
    for _ in range(20):
        response = _chat(server, small)
        if response.status_code != 200:
            break
        spent += response.json()["usage"]["total_tokens"]
        assert _quota(server, small)["tokens_per_day"]["used"] == spent  # the count is the usage the server reported
    assert 60 <= spent < 60 + 60, spent  # refused once spent; the last admitted request may pass the limit
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["type"] == "tokens" and error["code"] == "rate_limit_exceeded" and "tokens_per_day" in error["message"]
    assert abs(int(response.headers["Retry-After"]) - _seconds_to_utc_midnight()) <= 5
    assert _quota(server, small)["tokens_per_day"] == {
        "limit": 60, "used": spent, "remaining": 0, "resets_in_s": pytest.approx(_seconds_to_utc_midnight(), abs=5)
    }  # fmt: skip
    assert _chat(server, other).status_code == 200  # other keys unaffected
    assert _quota(server, other) == {"tokens_per_day": None, "requests_per_minute": None}
    assert httpx.get(f"{server.base_url}/v1/models", headers=bearer(small)).status_code == 200  # only chats spend


def test_streamed_answers_are_counted(server: LiveServer) -> None:
    key = _key(server, tokens_per_day=100_000)
    body = {**ASK, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body, headers=bearer(key)) as stream:
        assert stream.status_code == 200
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: {")]
    usage = next(e["usage"] for e in events if e.get("usage"))
    assert _quota(server, key)["tokens_per_day"]["used"] == usage["total_tokens"] > 0


def test_requests_per_minute(server: LiveServer) -> None:
    if 60 - time.time() % 60 < 15:  # all three requests within one minute
        time.sleep(60 - time.time() % 60 + 0.1)
    key = _key(server, requests_per_minute=2)
    assert [_chat(server, key, max_tokens=1).status_code for _ in range(2)] == [200, 200]
    assert _quota(server, key)["requests_per_minute"]["remaining"] == 0
    refused = _chat(server, key, max_tokens=1)
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert _quota(server, key)["requests_per_minute"]["used"] == 2  # a refused request is not counted


@pytest.fixture(scope="module")
def signed_in_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose console users sign in through OpenID Connect; group `small` has a daily token quota."""
    from serving.app import create_app

    oidc = {
        "issuer": "https://idp.example.com",
        "client_id": "assistant-console",
        "redirect_url": "http://127.0.0.1/auth/callback",
        "groups": {"small": {"tokens_per_day": 60, "requests_per_minute": 100}, "free": {}},
    }
    keys = [{"key": ADMIN, "name": "ops", "role": "admin"}]
    settings = tiny_settings(tmp_path_factory.mktemp("user-quotas"), tiny_model_dir, server={"api_keys": keys})
    settings = settings.model_copy(update={"oidc": type(settings).model_validate({"oidc": oidc}).oidc})
    settings.engine.backend = "transformers"
    live = LiveServer(create_app(settings)).start()
    yield live
    live.stop()


def _session(server: LiveServer, sub: str, groups: list[str]) -> dict[str, str]:
    """The session cookie the callback would set for this user (sealed with the server's own secret)."""
    from serving.services.oidc_service import SESSION_COOKIE, OIDCSignIn, map_groups

    sign_in = OIDCSignIn.of(server.state.settings)
    grant = map_groups(server.state.settings.oidc, groups)
    assert grant is not None
    data = {"sub": sub, "email": f"{sub}@example.com", "role": str(grant.role), "collections": None}
    data.update(tokens_per_day=grant.tokens_per_day, requests_per_minute=grant.requests_per_minute)
    return {"Cookie": f"{SESSION_COOKIE}={sign_in.seal.seal('session', data, 600)}"}


def test_a_signed_in_users_daily_quota_is_429_and_other_users_go_on(signed_in_server: LiveServer) -> None:
    base = signed_in_server.base_url
    small, free = _session(signed_in_server, "u-small", ["small"]), _session(signed_in_server, "u-free", ["free"])
    both = _session(signed_in_server, "u-both", ["small", "free"])  # the most generous group wins: unlimited
    spent = 0
    for _ in range(20):
        response = httpx.post(f"{base}/v1/chat/completions", json=ASK, headers=small, timeout=120)
        if response.status_code != 200:
            break
        spent += response.json()["usage"]["total_tokens"]
    assert 60 <= spent < 120 and response.status_code == 429, (spent, response.text)
    assert "u-small@example.com" in response.json()["error"]["message"] and int(response.headers["Retry-After"]) > 0
    me = httpx.get(f"{base}/v1/me", headers=small).json()
    assert me["quota"]["tokens_per_day"]["used"] == spent and me["quota"]["tokens_per_day"]["remaining"] == 0
    again = _session(signed_in_server, "u-small", ["small"])  # a new session of the same user shares the count
    assert httpx.post(f"{base}/v1/chat/completions", json=ASK, headers=again, timeout=120).status_code == 429
    for other in (free, both):
        assert httpx.post(f"{base}/v1/chat/completions", json=ASK, headers=other, timeout=120).status_code == 200
        assert httpx.get(f"{base}/v1/me", headers=other).json()["quota"]["tokens_per_day"] is None
