"""Keys, exposure and request guards that need no model: settings validation, the loopback rule, the Host check, the
body limit counting received bytes (chunked too), and the worker's settings file holding no key in plain text."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from pydantic import ValidationError

from assistant.errors import ConfigError
from assistant.settings import Settings
from serving.access import Access, allow
from serving.error_handlers import install_error_handlers
from serving.middleware import check_exposure, host_of, install_guards
from serving.prometheus_metrics import Metrics, install_metrics

LONG_KEY = "sk-0123456789abcdef"


def _settings(**server: Any) -> Settings:
    return Settings(server=server)


def test_short_plain_keys_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(api_keys=[{"key": "short-key", "name": "ci"}])
    assert "at least 16" in str(caught.value) and "'ci'" in str(caught.value)


def test_keys_as_digests_match_and_validate() -> None:
    digest = hashlib.sha256(LONG_KEY.encode()).hexdigest()
    by_digest = _settings(api_keys=[{"key_sha256": digest.upper(), "role": "admin"}]).server.api_keys[0]
    by_plain = _settings(api_keys=[{"key": LONG_KEY, "role": "admin"}]).server.api_keys[0]
    assert by_digest.digest == by_plain.digest == digest
    with pytest.raises(ValidationError, match="sha256 hex digest"):
        _settings(api_keys=[{"key_sha256": "abc"}])
    with pytest.raises(ValidationError, match="exactly one"):
        _settings(api_keys=[{"key": LONG_KEY, "key_sha256": digest}])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"key": LONG_KEY, "collections": []}, "collections: \\[\\] would allow no collection"),
        ({"key": LONG_KEY, "role": "admin", "collections": ["hr"]}, "admin key reads every collection"),
        ({"key": LONG_KEY, "role": "owner"}, "role"),
    ],
)
def test_bad_key_entries(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _settings(api_keys=[entry])


def test_no_key_reaches_the_worker_settings_file(tmp_path: Path) -> None:
    from serving.services.job_service import WorkerSupervisor

    settings = Settings(data_dir=tmp_path, server={"api_keys": [{"key": LONG_KEY, "name": "ops", "role": "admin"}]})
    supervisor = WorkerSupervisor(settings)
    supervisor.start()
    supervisor.stop()
    written = (settings.runs_dir / "worker-settings.yaml").read_text()
    assert LONG_KEY not in written
    reloaded = Settings(**yaml.safe_load(written))  # the worker can still load it, with the same key identity
    assert reloaded.server.api_keys[0].digest == settings.server.api_keys[0].digest
    assert all(LONG_KEY not in p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("server", "refused"),
    [
        ({"host": "0.0.0.0"}, True),
        ({"host": "::"}, True),
        ({"host": "10.1.2.3"}, True),
        ({"host": "0.0.0.0", "allow_unauthenticated": True}, False),
        ({"host": "0.0.0.0", "api_keys": [{"key": LONG_KEY}]}, False),
        ({"host": "127.0.0.1"}, False),
        ({"host": "::1"}, False),
        ({"host": "localhost"}, False),
    ],
)
def test_open_only_on_loopback(server: dict[str, Any], refused: bool) -> None:
    settings = _settings(**server)
    if not refused:
        check_exposure(settings)
        return
    with pytest.raises(ConfigError) as caught:
        check_exposure(settings)
    assert "server.allow_unauthenticated" in caught.value.message and "server.api_keys" in caught.value.message


def test_create_app_refuses_an_open_public_bind() -> None:
    from serving.app import create_app

    with pytest.raises(ConfigError, match="allow_unauthenticated"):
        create_app(_settings(host="0.0.0.0"))


@pytest.mark.parametrize(
    ("header", "host"),
    [("127.0.0.1:8000", "127.0.0.1"), ("[::1]:8000", "::1"), ("Example.COM", "example.com"), ("::1", "::1")],
)
def test_host_of(header: str, host: str) -> None:
    assert host_of(header) == host


# ---------------------------------------------------------------- ASGI-level guards on a small app


def _guarded_app(**server: Any) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo", dependencies=[allow(Access.PUBLIC)])
    async def echo(body: dict[str, Any]) -> dict[str, int]:
        return {"keys": len(body)}

    install_metrics(app, Metrics())  # a BaseHTTPMiddleware inside the guards, as in the real app
    install_guards(app, Settings(server={"max_json_mb": 0.001, **server}))  # ~1 KB JSON limit
    return app


async def _call(app: FastAPI, body_parts: list[bytes], headers: dict[str, str]) -> tuple[int, bytes, int]:
    """Send a request whose body arrives in `body_parts` chunks; returns (status, body, chunks the app pulled)."""
    sent: list[dict[str, Any]] = []
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        index = pulled
        pulled += 1
        if index >= len(body_parts):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": body_parts[index], "more_body": index < len(body_parts) - 1}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "method": "POST", "path": "/echo", "headers": raw_headers, "query_string": b"",
             "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "root_path": ""}  # fmt: skip
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), pulled


JSON = {"content-type": "application/json", "host": "127.0.0.1"}


def test_chunked_body_over_the_limit_is_413_and_not_read_whole() -> None:
    parts = [b'{"a": "' + b"x" * 400] + [b"x" * 400] * 1000 + [b'"}']  # ~400 KB, no Content-Length
    status, body, pulled = asyncio.run(_call(_guarded_app(), parts, JSON))
    assert status == 413 and b"server.max_json_mb" in body and b'"invalid_request_error"' in body
    assert pulled <= 4  # stopped reading at the limit, not after 1000 chunks


def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    status, _, pulled = asyncio.run(_call(_guarded_app(), [b"{}"], {**JSON, "content-length": "5000000"}))
    assert status == 413 and pulled == 0


def test_small_chunked_body_passes() -> None:
    status, body, _ = asyncio.run(_call(_guarded_app(), [b'{"a": 1,', b' "b": 2}'], JSON))
    assert status == 200 and body == b'{"keys":2}'


@pytest.mark.parametrize(
    ("server", "host", "status"),
    [
        ({}, "127.0.0.1:8000", 200),
        ({}, "localhost", 200),
        ({}, "[::1]:8000", 200),
        ({}, "evil.example", 400),
        ({}, "", 400),
        ({"host": "10.0.0.5"}, "10.0.0.5:8000", 200),
        ({"allowed_hosts": ["*.corp.example"]}, "chat.corp.example", 200),
        ({"allowed_hosts": ["*.corp.example"]}, "corp.example.evil", 400),
        ({"allowed_hosts": ["*"]}, "anything.example", 200),
    ],
)
def test_host_header_is_checked(server: dict[str, Any], host: str, status: int) -> None:
    got, body, _ = asyncio.run(_call(_guarded_app(**server), [b"{}"], {**JSON, "host": host}))
    assert got == status, body
    if status == 400:
        assert b"server.allowed_hosts" in body


def test_cors_origins_are_used() -> None:
    app = _guarded_app(cors_origins=["https://app.example"])
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        for origin in ("https://app.example", "https://evil.example"):
            headers = [(b"host", b"127.0.0.1"), (b"origin", origin.encode()),
                       (b"access-control-request-method", b"POST")]  # fmt: skip
            scope = {"type": "http", "method": "OPTIONS", "path": "/echo", "headers": headers, "query_string": b"",
                     "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "root_path": ""}  # fmt: skip
            await app(scope, receive, send)

    asyncio.run(run())
    starts = [dict(m["headers"]) for m in sent if m["type"] == "http.response.start"]
    assert starts[0].get(b"access-control-allow-origin") == b"https://app.example"
    assert b"access-control-allow-origin" not in starts[1]
