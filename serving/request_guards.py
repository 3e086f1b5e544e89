"""ASGI guards that decide before a request body is read: who is calling, from which site, with how many uploads.

Contract (installed by `serving.middleware.install_guards`, inside the Host check and the body limit):
- `AuthFirst`: for every route not declared public (`serving.access`), the credentials are checked
  (`serving.auth.authenticate`) before the app reads a byte of the body: a missing or wrong key is 401 and an admin
  route called with a member key 403, answered at once, so an unauthenticated caller cannot make the server receive
  and spool uploads. Upload routes (multipart) are also bounded in flight: `server.max_uploads_in_flight_per_key` per
  key and `server.max_uploads_in_flight` in total (429 with `Retry-After`); with `server.max_upload_mb` per request
  that bounds the bytes being received. The route's own dependency still resolves the principal it uses.
- `CrossSiteGuard`: a state-changing request (anything but GET/HEAD/OPTIONS) that a browser sends from another site is
  refused (403): `Sec-Fetch-Site: cross-site|same-site`, or an `Origin` that is neither this server's own (its Host
  header) nor one of `server.cors_origins`, or the opaque `Origin: null`. And a state-changing request a browser
  sends without an `Authorization` header (the open mode, where no key is needed) must be JSON or carry
  `X-Requested-With`, which a plain cross-site form or a body-less POST cannot without a CORS preflight, which the
  server does not grant them. Non-browser clients (curl, SDKs) send neither `Origin` nor `Sec-Fetch-*` and are
  unaffected.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.routing import Match

from assistant.errors import AuthenticationError
from assistant.settings import Settings
from serving.access import Access, route_access
from serving.auth import MISSING_KEY, authenticate
from serving.middleware import ASGIApp, Receive, Scope, Send, header, is_upload_route, send_error

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _RouteLevels:
    """The declared access level and upload-ness of the route a request goes to (None: no route matches)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._table: list[tuple[Any, Access, bool]] | None = None

    def lookup(self, scope: Scope) -> tuple[Access, bool] | None:
        if self._table is None:  # routes are complete once requests arrive
            self._table = [(route, *self._describe(route)) for route in self.app.routes]
        for route, level, upload in self._table:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return level, upload
        return None

    def _describe(self, route: Any) -> tuple[Access, bool]:
        levels = route_access(route, self.app)
        return (levels[0] if len(levels) == 1 else Access.ADMIN), is_upload_route(route)


class AuthFirst:
    """Credentials and upload slots before the body (see the module contract)."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.routes = _RouteLevels(fastapi_app)
        self.per_key = settings.server.max_uploads_in_flight_per_key
        self.total = settings.server.max_uploads_in_flight
        self.in_flight: Counter[str] = Counter()
        fastapi_app.state.upload_guard = self  # what tests and operators read: uploads in flight per owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = getattr(self.fastapi_app.state, "assistant", None)
        found = self.routes.lookup(scope) if scope["type"] == "http" and state is not None else None
        if found is None or found[0] is Access.PUBLIC or state is None:
            await self.app(scope, receive, send)
            return
        level, upload = found
        try:
            credentials = header(scope, b"authorization"), header(scope, b"cookie")  # a console session: the cookie
            principal = await asyncio.to_thread(authenticate, state, *credentials)
        except AuthenticationError as exc:
            message, challenge = exc.message or MISSING_KEY, [(b"www-authenticate", b"Bearer")]
            await send_error(send, 401, message, error_type="authentication_error", extra_headers=challenge)
            return
        if level is Access.ADMIN and not principal.is_admin:
            message = "this route needs an admin API key (this key's role is member)"
            await send_error(send, 403, message, error_type="permission_error")
            return
        if not upload:
            await self.app(scope, receive, send)
            return
        owner = principal.owner
        if self.in_flight[owner] >= self.per_key or sum(self.in_flight.values()) >= self.total:
            which = "this key's" if self.in_flight[owner] >= self.per_key else "the server's"
            message = f"{which} uploads in flight are at their limit (server.max_uploads_in_flight*); retry shortly"
            await send_error(send, 429, message, error_type="rate_limit_error", extra_headers=[(b"retry-after", b"2")])
            return
        self.in_flight[owner] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight[owner] -= 1
            if self.in_flight[owner] <= 0:
                del self.in_flight[owner]


def _origin_of(value: str) -> str:
    parts = urlsplit(value.strip().lower())
    return f"{parts.scheme}://{parts.netloc}"


class CrossSiteGuard:
    """Refuses state-changing requests a browser sends from another site (see the module contract)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.trusted = {_origin_of(origin) for origin in settings.server.cors_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method", "GET") not in SAFE_METHODS:
            reason = self.refusal(scope)
            if reason is not None:
                await send_error(send, 403, reason, error_type="permission_error")
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> str | None:
        site = (header(scope, b"sec-fetch-site") or "").lower()
        origin = header(scope, b"origin")
        trusted = origin is not None and _origin_of(origin) in self.trusted
        if site in ("cross-site", "same-site") and not trusted:
            return (
                f"cross-site requests may not change anything here (Sec-Fetch-Site: {site}); add the page's origin "
                "to server.cors_origins"
            )
        if origin is not None and not trusted and not self._own(origin, scope):
            return f"requests from the origin {origin!r} may not change anything here; add it to server.cors_origins"
        browser = origin is not None or bool(site) or header(scope, b"cookie") is not None
        if browser and header(scope, b"authorization") is None and not self._deliberate(scope):
            return "a browser request that changes something must be JSON or carry the header X-Requested-With"
        return None

    @staticmethod
    def _own(origin: str, scope: Scope) -> bool:
        if origin.strip().lower() == "null":
            return False
        return urlsplit(origin.strip().lower()).netloc == (header(scope, b"host") or "").strip().lower()

    @staticmethod
    def _deliberate(scope: Scope) -> bool:
        content_type = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
        return content_type == "application/json" or header(scope, b"x-requested-with") is not None
