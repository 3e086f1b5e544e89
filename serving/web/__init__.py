"""The web console: a single-page app served by the API's own FastAPI app (no CDN, no node build).

Contract: `install_web(app)` serves the console at `/` (index.html), its assets under `/static/` (the ES modules and
CSS shipped inside this package: one route per file, so nothing outside that list can ever be served) and
`/web/training-defaults`, the training options the job form shows as defaults (read from `training.config`, the one
home of those defaults). All are public (`serving.access`): the page holds no data; it signs in with a key kept in the
browser's session storage and calls the `/v1` API with it, which decides what the key may see.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse

from serving.access import Access, allow

STATIC_DIR = Path(__file__).parent / "static"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css"}
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


def install_web(app: FastAPI) -> None:
    app.include_router(router)
