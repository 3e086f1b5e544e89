"""The web console: a single-page app served by the API's own FastAPI app (no CDN, no node build).

Contract: `install_web(app)` serves the console at `/` (index.html), its assets under `/static/` (the ES modules and
CSS shipped inside this package: one route per file, so nothing outside that list can ever be served) and
`/web/training-defaults`, the training options the job form shows as defaults (read from `training.config`, the one
home of those defaults), and the API docs at `/docs` (Swagger UI from the vendored copy under `static/vendor/`, no
CDN; the app is built with `docs_url=None` and `redoc_url=None`). All are public (`serving.access`): the page holds no
data; it signs in with a key kept in the browser's session storage and calls the `/v1` API with it, which decides what
the key may see.

`install_web` also installs `SecurityHeaders`, an ASGI middleware that gives every response (API, console, assets)
a Content-Security-Policy (scripts and styles from this origin only, no plugins, no <base>, never framed),
`X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`, unless the response set its own (the docs
page allows its one inline script by its hash).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.access import Access, allow

STATIC_DIR = Path(__file__).parent / "static"
MEDIA_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".png": "image/png"}
# The console needs nothing beyond its own origin: ES modules, one stylesheet (no inline style), fetch to /v1.
_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def _csp(policy: dict[str, str]) -> str:
    return "; ".join(f"{directive} {sources}" for directive, sources in policy.items())


SECURITY_HEADERS = {
    "Content-Security-Policy": _csp(_POLICY),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
# The job form's fields (the main hyperparameters); every other option keeps its default unless given as JSON.
FORM_OPTIONS = (
    "learning_rate", "max_steps", "num_train_epochs", "per_device_train_batch_size", "lora_r", "lora_alpha", "beta",
    "logging_steps", "eval_split",
)  # fmt: skip

router = APIRouter(include_in_schema=False, dependencies=[allow(Access.PUBLIC)])


@router.get("/")
async def index() -> FileResponse:
    # no-cache: a new install's console is picked up on the next visit
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs")
async def api_docs(request: Request) -> HTMLResponse:
    """Swagger UI from the vendored files; its CSP allows exactly the page's one inline script (the init call)."""
    app = request.app
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} - API docs",
        swagger_js_url="/static/vendor/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui.css",
        swagger_favicon_url="/static/vendor/swagger-favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},  # its default badge would fetch from validator.swagger.io
    )
    html = bytes(page.body).decode()
    hashes = " ".join(f"'sha256-{_sha256(script)}'" for script in _INLINE_SCRIPT.findall(html))
    csp = _csp({**_POLICY, "script-src": f"'self' {hashes}"})
    return HTMLResponse(html, headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"})


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


@router.get("/web/training-defaults")
async def training_defaults() -> dict[str, dict[str, Any]]:
    return _training_defaults()


@functools.cache
def _training_defaults() -> dict[str, dict[str, Any]]:
    """{method: {option: default}} for the form's options (project defaults over TRL's)."""
    from training.config import PROJECT_DEFAULTS
    from training.methods import METHOD_NAMES, config_class

    out: dict[str, dict[str, Any]] = {}
    for method in METHOD_NAMES:  # the console's method list is this mapping's keys
        config = config_class(method)
        fields = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
        values = {**fields, **PROJECT_DEFAULTS}
        out[method] = {name: values[name] for name in FORM_OPTIONS if name in fields}
    return out


def _asset_route(path: Path) -> None:
    media_type = MEDIA_TYPES[path.suffix]

    async def asset() -> FileResponse:
        # no-cache: the browser revalidates (ETag), so an upgraded install is picked up at once
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})

    router.add_api_route(f"/static/{path.relative_to(STATIC_DIR).as_posix()}", asset, methods=["GET"])


for _path in sorted(STATIC_DIR.rglob("*")):  # once, at import: the assets are fixed files of the package
    if _path.suffix in MEDIA_TYPES:
        _asset_route(_path)


class SecurityHeaders:
    """ASGI middleware: `SECURITY_HEADERS` on every HTTP response that does not set its own value of one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_web(app: FastAPI) -> None:
    app.include_router(router)
    app.add_middleware(SecurityHeaders)  # added last, so outermost: refusals by the guards carry the headers too
