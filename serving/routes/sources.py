"""Directory sources (admins only): `POST /v1/sources`, `GET /v1/sources`, `GET /v1/sources/{id}`,
`POST /v1/sources/{id}/sync`, `DELETE /v1/sources/{id}` (`?delete_documents=true` also deletes the documents it
synced). `{id}` may also be the source's name.

A sync answers 202 at once with `{"object": "source.sync", "source_id", "status": "syncing", "dry_run": false,
"source"}` (and a Location header) and runs in the background; `GET /v1/sources/{id}` follows it (`syncing`, then
`status` ok/partial/failed with the sync's `counts`, `errors` and `last_error`). A second sync of a source while one
runs, on any replica, is refused with 409. `?wait=true` runs it inside the request and answers 200 with its report
(`source.sync` with the file lists, and the source); `{"dry_run": true}` answers 200 with the diff alone."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from serving.access import Access, allow
from serving.deps import SourcesDep
from serving.rest_format import source_body, source_list_body, sync_body

router = APIRouter(tags=["sources"], dependencies=[allow(Access.ADMIN)])


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=2000, description="A directory on the server (absolute path).")
    collection: str = Field("default", min_length=1, max_length=200, pattern=r"^[\w.\-]+$")
    name: str | None = Field(
        None, min_length=1, max_length=100, pattern=r"^[\w.\-]+$", description="Default: the folder's name."
    )
    delete: Literal["mirror", "keep"] = Field(
        "mirror", description="A file deleted from the folder: 'mirror' deletes its document, 'keep' keeps it."
    )
    interval_s: float | None = Field(
        None, ge=10, le=30 * 86400, description="Sync every this many seconds (after the first sync); none = off."
    )


class SyncSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(False, description="Return the diff without changing anything.")


@router.post("/v1/sources", status_code=201)
async def create_source(spec: SourceSpec, sources: SourcesDep) -> JSONResponse:
    record, preview = await sources.create(spec.path, spec.collection, spec.name, spec.delete, spec.interval_s)
    return JSONResponse({**source_body(record), "preview": sync_body(preview)}, status_code=201)


@router.get("/v1/sources")
async def list_sources(sources: SourcesDep) -> dict[str, Any]:
    return source_list_body(sources.records())


@router.get("/v1/sources/{source_id}")
async def get_source(source_id: str, sources: SourcesDep) -> dict[str, Any]:
    return source_body(sources.get(source_id))


@router.post(
    "/v1/sources/{source_id}/sync",
    status_code=202,
    responses={200: {"description": "With `wait=true` or `dry_run`: the sync's report and the source."}},
)
async def sync_source(
    source_id: str,
    sources: SourcesDep,
    spec: SyncSpec | None = None,
    wait: Annotated[bool, Query(description="Run the sync inside the request and answer with its report.")] = False,
) -> JSONResponse:
    dry_run = spec.dry_run if spec else False
    if dry_run or wait:
        report = await sources.sync(source_id, dry_run=dry_run)
        return JSONResponse({**sync_body(report), "source": source_body(sources.get(source_id))})
    claimed = await sources.start_sync(source_id)
    body = {"object": "source.sync", "source_id": claimed.id, "status": "syncing", "dry_run": False}
    location = {"Location": f"/v1/sources/{claimed.id}"}
    return JSONResponse({**body, "source": source_body(claimed)}, status_code=202, headers=location)


@router.delete("/v1/sources/{source_id}")
async def delete_source(
    source_id: str,
    sources: SourcesDep,
    delete_documents: Annotated[bool, Query(description="Also delete the documents this source synced.")] = False,
) -> dict[str, Any]:
    record, deleted = await sources.remove(source_id, delete_documents)
    return {"id": record.id, "object": "source.deleted", "deleted": True, "documents_deleted": deleted}
