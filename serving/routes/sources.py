"""Directory sources (admins only): `POST /v1/sources`, `GET /v1/sources`, `GET /v1/sources/{id}`,
`POST /v1/sources/{id}/sync` (`{"dry_run": true}` for the diff alone), `DELETE /v1/sources/{id}`
(`?delete_documents=true` also deletes the documents it synced). `{id}` may also be the source's name."""

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


@router.post("/v1/sources/{source_id}/sync")
async def sync_source(source_id: str, sources: SourcesDep, spec: SyncSpec | None = None) -> dict[str, Any]:
    report = await sources.sync(source_id, dry_run=spec.dry_run if spec else False)
    return {**sync_body(report), "source": source_body(sources.get(source_id))}


@router.delete("/v1/sources/{source_id}")
async def delete_source(
    source_id: str,
    sources: SourcesDep,
    delete_documents: Annotated[bool, Query(description="Also delete the documents this source synced.")] = False,
) -> dict[str, Any]:
    record, deleted = await sources.remove(source_id, delete_documents)
    return {"id": record.id, "object": "source.deleted", "deleted": True, "documents_deleted": deleted}
