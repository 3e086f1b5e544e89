"""Feedback and preference pairs: `POST /v1/feedback`, `POST /v1/preferences` (import), `GET /v1/preferences`.

Feedback is for any key, on responses that key created; preference pairs (import and listing) are admin-only, since a
pair keeps the rendered prompt with the retrieved sources of any collection.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, UploadFile
from pydantic import BaseModel, Field

from assistant.errors import InvalidRequestError
from serving.access import Access, allow
from serving.deps import PrincipalDep, StateDep, require
from serving.rest_format import feedback_body, import_body, pair_page_body
from serving.schemas import MAX_UNIX_TIME

router = APIRouter(tags=["feedback"])


class FeedbackRequest(BaseModel):
    response_id: str = Field(..., min_length=1, description="The `id` of a chat completion.")
    rating: Literal[1, -1] = Field(..., description="+1 (good) or -1 (bad).")
    correction: str | None = Field(None, max_length=32_000, description="The answer it should have given.")
    comment: str | None = Field(None, max_length=4_000)


@router.post("/v1/feedback", dependencies=[allow(Access.MEMBER)])
async def submit_feedback(body: FeedbackRequest, state: StateDep, principal: PrincipalDep) -> dict[str, Any]:
    service = require(state.feedback, "feedback")
    return feedback_body(service.submit(body.response_id, body.rating, body.correction, body.comment, principal))


@router.post("/v1/preferences", dependencies=[allow(Access.ADMIN)])
async def import_preferences(
    state: StateDep,
    file: Annotated[UploadFile, File(description="JSONL, JSON or CSV preference pairs (any format training reads).")],
) -> dict[str, Any]:
    importer = require(state.preference_importer, "preference import")
    name = Path(file.filename or "pairs.jsonl").name
    suffix = Path(name).suffix.lower()
    if suffix not in {".json", ".jsonl", ".csv"}:
        raise InvalidRequestError(f"{name}: use a .jsonl, .json or .csv file", param="file")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(await file.read())
        return import_body(importer.import_file(path, name))


@router.get("/v1/preferences", dependencies=[allow(Access.ADMIN)])
async def list_preferences(
    state: StateDep,
    provenance: Annotated[Literal["imported", "feedback"] | None, Query()] = None,
    since: Annotated[
        int | None, Query(ge=0, le=MAX_UNIX_TIME, description="Unix time: only pairs created at or after it.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    store = require(state.preferences, "preferences")
    return pair_page_body(store.list(provenance, since, limit, offset))
