"""Adapter registry: `GET /v1/adapters`, `POST /v1/adapters/{name}/activate`, `POST /v1/adapters/{name}/rollback`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from serving.access import Access, allow
from serving.deps import StateDep, require
from serving.rest_format import adapter_body, adapter_list_body

router = APIRouter(tags=["adapters"], dependencies=[allow(Access.ADMIN)])


class ActivateRequest(BaseModel):
    version: int | None = Field(None, ge=1, le=1_000_000, description="Version to activate (default: newest one).")
    force: bool = Field(False, description="Activate even if the evaluation gate found it worse.")


@router.get("/v1/adapters")
async def list_adapters(state: StateDep) -> dict[str, Any]:
    return adapter_list_body(require(state.adapters, "adapter registry").list())


@router.post("/v1/adapters/{name}/activate")
async def activate_adapter(name: str, state: StateDep, body: ActivateRequest | None = None) -> dict[str, Any]:
    body = body or ActivateRequest(version=None, force=False)
    adapter = await require(state.adapters, "adapter registry").activate(name, body.version, body.force)
    return adapter_body(adapter)


@router.post("/v1/adapters/{name}/rollback")
async def rollback_adapter(name: str, state: StateDep) -> dict[str, Any]:
    return adapter_body(await require(state.adapters, "adapter registry").rollback(name))
