"""Console sign-in through the company's OpenID provider (`serving.services.oidc_service`); every route here is public.

Contract: `GET /auth/config` tells the console whether sign-in is configured (`{"oidc": bool, "login_url"}`).
`GET /auth/login` redirects to the provider (state, nonce and PKCE verifier kept in a sealed cookie for ten minutes),
`GET /auth/callback` finishes the sign-in, sets the session cookie (HttpOnly, SameSite=Lax, Secure when the request
came over TLS or the redirect URL is https) and redirects to the console; a refused sign-in is a small HTML page with
its status (401 bad answer or token, 403 no mapped group, 503 provider unreachable). `POST /auth/logout` clears the
cookie. Each finished or refused callback leaves one `auth.sign_in` audit row. Login and callback are routes only
where `oidc` is configured (`sign_in_router`); elsewhere they are 404.
"""

from __future__ import annotations

import asyncio
import html
import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from assistant.errors import AssistantError, AuthenticationError, NotFoundError
from serving.access import Access, allow
from serving.deps import StateDep
from serving.middleware import current_request_id
from serving.principal import Principal
from serving.services.audit_service import AuditEntry, AuditLog
from serving.services.oidc_service import LOGIN_COOKIE, LOGIN_TTL_S, SESSION_COOKIE, OIDCSignIn
from serving.state import AppState

log = logging.getLogger(__name__)

router = APIRouter(prefix="/auth", tags=["sign-in"], dependencies=[allow(Access.PUBLIC)])
# login and callback exist only where `oidc` is configured (serving.app includes them then)
sign_in_router = APIRouter(prefix="/auth", tags=["sign-in"], dependencies=[allow(Access.PUBLIC)])


def _sign_in(state: StateDep) -> OIDCSignIn:
    found = state.extras.get("oidc")
    if not isinstance(found, OIDCSignIn):
        raise NotFoundError("sign-in with an identity provider is not configured on this server (the `oidc` section)")
    return found


async def _audit(state: AppState, status: int, who: Principal | None, detail: dict[str, object]) -> None:
    """One `auth.sign_in` row per finished or refused sign-in (a GET, so the recorder of writes does not see it)."""
    actor, actor_id, role = (who.name, who.owner, str(who.role)) if who else ("(identity provider)", None, None)
    entry = AuditEntry(actor, "auth.sign_in", status, actor_id, role, None, detail, current_request_id())
    try:
        await asyncio.to_thread(AuditLog(state.db).record, entry)
    except Exception:  # the sign-in happened; a failed audit write is logged loudly, not turned into a 500
        log.exception("audit log write failed for the sign-in of %s", actor)


def _secure(request: Request, sign_in: OIDCSignIn) -> bool:
    return request.url.scheme == "https" or sign_in.config.redirect_url.startswith("https://")


def _refusal_page(error: AssistantError) -> HTMLResponse:
    message = html.escape(error.message or "sign-in refused")
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Sign-in refused</title></head>"
        f"<body><main><h1>Sign-in refused</h1><p id='reason'>{message}</p>"
        "<p><a href='/'>Back to the console</a></p></main></body></html>"
    )
    return HTMLResponse(body, status_code=error.status_code)


@router.get("/config")
async def sign_in_config(state: StateDep) -> dict[str, object]:
    configured = isinstance(state.extras.get("oidc"), OIDCSignIn)
    return {"object": "sign_in_config", "oidc": configured, "login_url": "/auth/login" if configured else None}


@sign_in_router.get("/login")
async def login(request: Request, state: StateDep) -> Response:
    sign_in = _sign_in(state)
    try:
        url, pending = await sign_in.start()
    except AssistantError as exc:
        return _refusal_page(exc)
    response = RedirectResponse(url, status_code=303)
    secure = _secure(request, sign_in)
    response.set_cookie(
        LOGIN_COOKIE, pending, max_age=LOGIN_TTL_S, path="/auth", httponly=True, samesite="lax", secure=secure
    )
    return response


@sign_in_router.get("/callback")
async def callback(request: Request, state: StateDep, code: str = "", error: str = "") -> Response:
    sign_in = _sign_in(state)
    returned_state = request.query_params.get("state", "")  # `state` names the app state here
    try:
        if error:
            detail = request.query_params.get("error_description") or error
            raise AuthenticationError(f"the identity provider did not sign you in ({detail})")
        cookie, principal = await sign_in.finish(code, returned_state, request.cookies.get(LOGIN_COOKIE))
    except AssistantError as exc:
        await _audit(state, exc.status_code, None, {"error": (exc.message or "")[:300]})
        page = _refusal_page(exc)
        page.delete_cookie(LOGIN_COOKIE, path="/auth")
        return page
    await _audit(state, 303, principal, {"collections": sorted(principal.collections or []) or None})
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path="/auth")
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(sign_in.session_ttl_s),
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request, sign_in),
    )
    return response


@router.post("/logout")
async def logout() -> JSONResponse:
    response = JSONResponse({"object": "sign_out", "signed_out": True})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
