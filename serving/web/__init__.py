"""The web console: a single-page app served by the API's own FastAPI app (no CDN, no node build).

Contract: `install_web(app)` serves the console at `/` (index.html), its assets under `/static/` (HTML, ES modules and
CSS shipped inside this package) and `/web/training-defaults`, the training options the job form shows as defaults
(read from `training.config`, the one home of those defaults). None of these need an API key: the page holds no data;
it signs in with a key kept in the browser's session storage and calls the `/v1` API with it, which decides what the
key may see.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from serving.access import Access, allow, public

STATIC_DIR = Path(__file__).parent / "static"
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
    from training.config import CONFIG_CLASSES, PROJECT_DEFAULTS

    out: dict[str, dict[str, Any]] = {}
    for method, config in CONFIG_CLASSES.items():
        fields = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
        values = {**fields, **PROJECT_DEFAULTS}
        out[method] = {name: values[name] for name in FORM_OPTIONS if name in fields}
    return out


def install_web(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", public(StaticFiles(directory=STATIC_DIR)), name="static")
