"""The audit log's HTTP side: the one recorder of state-changing requests, and `GET /v1/audit` (admins).

Contract:
- `AuditRecorder` (installed by the app factory around every route) records each POST/PUT/PATCH/DELETE request to a
  route of the app, except the read-only ones in `NOT_AUDITED` (chat completions, retrieval, reward scoring), as one
  `AuditEvent`: the actor (the key's name, resolved with `serving.auth.authenticate`, or '(no key)' / '(invalid
  key)'), the action (`ACTIONS`, else 'METHOD /path/template'), the target (the route's path parameters, else the
  ids the response names), the outcome and status, and `detail` (the request fields listed in `DETAIL_FIELDS`, e.g.
  an activation's `force`; the error message of a failure). Refused requests (401, 403) are recorded as 'refused'.
  The row is written before the last byte of the response is sent, so a client that got its answer finds the row.
  Secrets are never recorded: a key's secret is in no recorded field.
- `GET /v1/audit` lists events newest first, filtered by `actor`, `action` (exact or a family such as 'keys'),
  `outcome`, `since`/`until` (Unix seconds or ISO 8601), up to `limit`; `format=csv` or `jsonl` exports them.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import Response
from starlette.routing import Match, Route

from assistant.errors import AuthenticationError
from serving.access import Access, allow
from serving.auth import authenticate
from serving.deps import StateDep
from serving.middleware import current_request_id, header
from serving.rest_format import audit_body, list_body
from serving.services.audit_service import AuditEntry, AuditFilters, AuditLog
from serving.state import AppState

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
NOT_AUDITED = {
    ("POST", "/v1/chat/completions"),  # answers, not changes (counted by the quotas and the metrics)
    ("POST", "/v1/retrieve"),
    ("POST", "/v1/rewards/score"),
}
ACTIONS = {
    ("POST", "/v1/documents"): "documents.upload",
    ("DELETE", "/v1/documents/{document_id}"): "documents.delete",
    ("POST", "/v1/feedback"): "feedback.create",
    ("POST", "/v1/preferences"): "preferences.import",
    ("POST", "/v1/adapters/{name}/activate"): "adapters.activate",
    ("POST", "/v1/adapters/{name}/rollback"): "adapters.rollback",
    ("POST", "/v1/training/files"): "training.files.upload",
    ("POST", "/v1/training/jobs"): "training.jobs.create",
    ("POST", "/v1/training/jobs/{job_id}/cancel"): "training.jobs.cancel",
    ("POST", "/v1/evaluations"): "evaluations.create",
    ("POST", "/v1/sources"): "sources.create",
    ("POST", "/v1/sources/{source_id}/sync"): "sources.sync",
    ("DELETE", "/v1/sources/{source_id}"): "sources.delete",
    ("POST", "/v1/keys"): "keys.create",
    ("DELETE", "/v1/keys/{key_id}"): "keys.revoke",
    ("POST", "/v1/keys/{key_id}/rotate"): "keys.rotate",
}
DETAIL_FIELDS = {
    "adapters.activate": ("version", "force"),
    "training.jobs.create": ("method",),
    "evaluations.create": ("model", "collections"),
    "keys.create": ("name", "role", "collections", "expires_at", "tokens_per_day", "requests_per_minute"),
    "feedback.create": ("response_id", "rating"),
    "sources.create": ("path", "collection"),
    "sources.sync": ("dry_run",),
}
KEPT_BYTES = 64 * 1024  # JSON request/response bodies read for target and detail; larger ones are not parsed


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data) if 0 < len(data) <= KEPT_BYTES else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _response_ids(body: dict[str, Any]) -> list[str]:
    if isinstance(body.get("id"), str | int) and body.get("object") != "list":
        return [str(body["id"])]
    items = body.get("data")
    if not isinstance(items, list):
        return []
    ids = [item.get("document_id") or item.get("id") for item in items if isinstance(item, dict)]
    return [str(i) for i in ids if i]


class _Exchange:
    """What the recorder learns of one request while passing it through."""

    def __init__(self) -> None:
        self.request = bytearray()
        self.response = bytearray()
        self.status = 500
        self.request_id: str | None = None
        self.recorded = False
        self.length: int | None = None  # the response's declared Content-Length
        self.sent = 0


class AuditRecorder:
    """Pure ASGI middleware (module contract)."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    def _route(self, scope: Scope) -> tuple[str, dict[str, Any]] | None:
        for route in self.fastapi_app.routes:
            if isinstance(route, Route):
                match, child = route.matches(scope)
                if match is Match.FULL:
                    return route.path, dict(child.get("path_params", {}))
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "")
        found = self._route(scope) if scope["type"] == "http" and method in WRITE_METHODS else None
        state = getattr(self.fastapi_app.state, "assistant", None)
        if found is None or (method, found[0]) in NOT_AUDITED or not isinstance(state, AppState):
            await self.app(scope, receive, send)
            return
        path, params = found
        seen = _Exchange()
        is_json = (header(scope, b"content-type") or "").startswith("application/json")

        async def tee_receive() -> Message:
            message = await receive()
            if is_json and message["type"] == "http.request" and len(seen.request) <= KEPT_BYTES:
                seen.request += message.get("body", b"")
            return message

        async def tee_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen.status = int(message["status"])
                headers = {bytes(k).lower(): bytes(v).decode("latin-1") for k, v in message.get("headers", [])}
                seen.request_id = current_request_id() or headers.get(b"x-request-id")
                length = headers.get(b"content-length", "")
                seen.length = int(length) if length.isdigit() else None
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                seen.sent += len(body)
                if len(seen.response) <= KEPT_BYTES:
                    seen.response += body
                # Recorded before the last byte goes out: the client may see the response complete when its declared
                # length has arrived, before the closing empty message an inner middleware sends.
                if not message.get("more_body", False) or (seen.length is not None and seen.sent >= seen.length):
                    await self._record(state, scope, method, path, params, seen)
            await send(message)

        try:
            await self.app(scope, tee_receive, tee_send)
        except Exception:
            seen.status = 500
            await self._record(state, scope, method, path, params, seen)
            raise

    async def _record(
        self, state: AppState, scope: Scope, method: str, path: str, params: dict[str, Any], seen: _Exchange
    ) -> None:
        if seen.recorded:
            return
        seen.recorded = True
        entry = self._entry(state, scope, method, path, params, seen)
        try:
            await asyncio.to_thread(AuditLog(state.db).record, entry)
        except Exception:  # the action happened; a failed audit write is logged loudly, not turned into a 500
            log.exception("audit log write failed for %s %s by %s", method, path, entry.actor)

    @staticmethod
    def _entry(
        state: AppState, scope: Scope, method: str, path: str, params: dict[str, Any], seen: _Exchange
    ) -> AuditEntry:
        authorization = header(scope, b"authorization")
        try:
            principal = authenticate(state, authorization, header(scope, b"cookie"))  # or a console session
            actor, actor_id, role = principal.name, principal.owner, str(principal.role)
        except AuthenticationError:
            actor, actor_id, role = ("(invalid key)" if authorization else "(no key)"), None, None
        action = ACTIONS.get((method, path), f"{method} {path}")
        request, response = _json(bytes(seen.request)), _json(bytes(seen.response))
        detail = {name: request[name] for name in DETAIL_FIELDS.get(action, ()) if name in request}
        if seen.status >= 400:
            error = response.get("error")
            detail["error"] = str(error.get("message", ""))[:300] if isinstance(error, dict) else ""
        ids = [str(v) for v in params.values()] or (_response_ids(response) if seen.status < 400 else [])
        target = ",".join(ids) or None
        return AuditEntry(actor, action, seen.status, actor_id, role, target, detail, seen.request_id)


router = APIRouter(tags=["audit"], dependencies=[allow(Access.ADMIN)])
COLUMNS = ("id", "at", "actor", "actor_id", "role", "action", "target", "outcome", "status", "detail", "request_id")


@router.get("/v1/audit", response_model=None)
async def list_audit(
    state: StateDep,
    actor: Annotated[str | None, Query(max_length=200, description="A key's name, or '(no key)'.")] = None,
    action: Annotated[str | None, Query(max_length=100, description="'keys.create', or a family: 'keys'.")] = None,
    outcome: Annotated[Literal["ok", "refused", "error"] | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="Unix seconds or ISO 8601.")] = None,
    until: Annotated[datetime | None, Query(description="Unix seconds or ISO 8601.")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 100,
    format: Annotated[Literal["json", "csv", "jsonl"], Query()] = "json",
) -> dict[str, Any] | Response:
    filters = AuditFilters(actor, action, outcome, since, until)
    entries = await asyncio.to_thread(AuditLog(state.db).query, filters, limit)
    bodies = [audit_body(entry) for entry in entries]
    if format == "jsonl":
        text = "".join(json.dumps(body) + "\n" for body in bodies)
        return Response(text, media_type="application/x-ndjson", headers=_attachment("audit.jsonl"))
    if format == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for body in bodies:
            writer.writerow({**body, "detail": json.dumps(body["detail"])})
        return Response(out.getvalue(), media_type="text/csv", headers=_attachment("audit.csv"))
    return list_body(bodies)


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}
