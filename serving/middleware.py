"""Pure ASGI guards in front of every route: the Host header, CORS, and the size of the body actually received.

Contract:
- `check_exposure(settings, stored_keys)` raises `ConfigError` when the server would bind beyond loopback with no API
  keys (neither in the settings nor issued through `/v1/keys`), unless `server.allow_unauthenticated` says so on
  purpose (with no keys every caller is admin).
- `install_guards(app, settings)` adds, outermost first: the Host check (`server.allowed_hosts`; default localhost,
  127.0.0.1, ::1 and `server.host`; '*.example.com' patterns; ['*'] = any), CORS for `server.cors_origins`, and the
  body limit. The body limit counts the bytes the client really sends (a chunked body included), not the declared
  `Content-Length`: multipart routes (those with File/Form parameters) get `server.max_upload_mb`, every other request
  `server.max_json_mb`. Past the limit the client gets 413 at once and the app sees a disconnect (nothing more is
  read); a declared length over the limit is refused before anything is read. Every refusal is an OpenAI-shaped
  error body.
- `RequestId` (added outermost by the app factory, so every answer, a refusal too, has one) gives every request an id
  (the client's `X-Request-Id` if sane, else a new one), sends it back as `X-Request-Id` and keeps it in `REQUEST_ID`
  while the request runs; `configure_request_logs(settings)` adds it (and the current trace id) to every log
  record, as JSON lines when `server.log_json` is set.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeGuard

from fastapi import FastAPI, params
from fastapi.routing import APIRoute
from starlette.middleware.cors import CORSMiddleware

from assistant.errors import ConfigError
from assistant.settings import Settings
from serving.error_handlers import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
MB = 1024 * 1024


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, stored_keys: Callable[[], bool] = lambda: False) -> None:
    """Refuse to serve open (no keys) on a non-loopback address unless told to. `stored_keys()` says whether the
    database holds keys issued through `/v1/keys` (then keys are required even with none in the settings)."""
    server = settings.server
    if server.api_keys or server.allow_unauthenticated or is_loopback(server.host) or stored_keys():
        return
    raise ConfigError(
        f"server.host is {server.host!r} (reachable beyond this machine) and no server.api_keys are configured, so "
        "anyone who can reach the port would be admin. Configure server.api_keys (each with role admin or member), "
        "or set server.allow_unauthenticated: true to serve without keys on purpose."
    )


async def send_error(
    send: Send,
    status: int,
    message: str,
    param: str | None = None,
    *,
    error_type: str = "invalid_request_error",
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """An OpenAI-shaped error answered by a pure ASGI guard (before the app, so its exception handler is not there)."""
    body = json.dumps(error_body(message, error_type, param)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def is_upload_route(route: object) -> TypeGuard[APIRoute]:
    """A route that takes multipart form fields (file uploads): the large body limit and the upload slots apply."""
    return isinstance(route, APIRoute) and any(
        isinstance(f.field_info, params.Form) for f in route.dependant.body_params
    )


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def allowed_hosts(settings: Settings) -> list[str]:
    if settings.server.allowed_hosts is not None:
        return [h.lower() for h in settings.server.allowed_hosts]
    return sorted({"localhost", "127.0.0.1", "::1", settings.server.host.strip("[]").lower()})


def host_of(header: str) -> str:
    """The host part of a Host header ('[::1]:8000' -> '::1', 'example.com:80' -> 'example.com')."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class HostCheck:
    """400 for a Host header outside the allowed list (DNS-rebinding and host-header attacks)."""

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self.any = "*" in hosts
        self.exact = {h for h in hosts if not h.startswith("*.")}
        self.suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))

    def allowed(self, host: str) -> bool:
        return self.any or host in self.exact or (bool(host) and host.endswith(self.suffixes) and bool(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = host_of(header(scope, b"host") or "")
            if not self.allowed(host):
                message = f"the Host header {host!r} is not served here; add it to server.allowed_hosts"
                await send_error(send, 400, message)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Counts the body bytes actually received; JSON routes get a small limit, multipart upload routes a large one."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, json_limit: int, upload_limit: int) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.json_limit = json_limit
        self.upload_limit = upload_limit
        self._uploads: list[tuple[re.Pattern[str], set[str]]] | None = None

    def _upload_routes(self) -> list[tuple[re.Pattern[str], set[str]]]:
        if self._uploads is None:  # routes are complete once requests arrive
            self._uploads = [
                (route.path_regex, set(route.methods)) for route in self.fastapi_app.routes if is_upload_route(route)
            ]
        return self._uploads

    def limit_for(self, scope: Scope) -> tuple[int, str]:
        path, method = scope.get("path", ""), scope.get("method", "")
        if any(regex.match(path) and method in methods for regex, methods in self._upload_routes()):
            return self.upload_limit, "server.max_upload_mb"
        return self.json_limit, "server.max_json_mb"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit_for(scope)
        declared = header(scope, b"content-length") or ""
        if declared.isdigit() and int(declared) > limit:
            await send_error(send, 413, f"the request body is {int(declared)} bytes; the limit is {limit} ({setting})")
            return
        received, started, exceeded = 0, False, False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer 413 now and tell the app the client went away, so it stops reading; whatever it
                    # answers to that is dropped. (An exception raised here would be rewrapped by middleware.)
                    exceeded = True
                    if not started:
                        await send_error(send, 413, f"the request body exceeds {limit} bytes ({setting})")
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, tracked_send)


def install_guards(app: FastAPI, settings: Settings) -> None:
    """Body limit, credentials first, cross-site refusal, CORS and Host check, in that order inside-out (the Host
    check runs first; `serving.request_guards` has the credentials and cross-site guards)."""
    from serving.request_guards import AuthFirst, CrossSiteGuard

    server = settings.server
    json_limit, upload_limit = int(server.max_json_mb * MB), int(server.max_upload_mb * MB)
    app.add_middleware(BodyLimit, fastapi_app=app, json_limit=json_limit, upload_limit=upload_limit)
    app.add_middleware(AuthFirst, fastapi_app=app, settings=settings)  # no body is read before the key is checked
    app.add_middleware(CrossSiteGuard, settings=settings)
    if server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=server.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
        )
    app.add_middleware(HostCheck, hosts=allowed_hosts(settings))


# ---------------------------------------------------------------- request ids in the logs

REQUEST_ID: ContextVar[str | None] = ContextVar("assistant_request_id", default=None)
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def current_request_id() -> str | None:
    return REQUEST_ID.get()


class RequestId:
    """Gives each HTTP request an id: the client's `X-Request-Id` when it is a sane token (1-64 of letters, digits and
    `._:-`), else a new one; sent back as `X-Request-Id` and carried by every log record made while it runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = header(scope, b"x-request-id") or ""
        request_id = given if _VALID_ID.fullmatch(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if bytes(k).lower() != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (and the OpenTelemetry `trace_id`, when a span is current) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        from opentelemetry import trace

        record.request_id = REQUEST_ID.get()
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, trace_id (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "trace_id": getattr(record, "trace_id", None),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_request_logs(settings: Settings) -> None:
    """Every root handler gets the request-id filter; `server.log_json` makes them write JSON lines."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
        if settings.server.log_json:
            handler.setFormatter(JsonFormatter())
