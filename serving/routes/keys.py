"""API keys through the API (admins): `POST /v1/keys`, `GET /v1/keys`, `DELETE /v1/keys/{id}`,
`POST /v1/keys/{id}/rotate`.

Contract: creating or rotating answers the secret once (under `key`); the database keeps only its sha256 digest
(`serving.services.key_service`). Revoking is immediate on this server and reaches every replica within
`server.key_sync_s`. Keys from the settings file are the bootstrap and are not listed or changed here.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from assistant.errors import ServiceUnavailableError
from serving.access import Access, allow
from serving.auth import key_store
from serving.deps import PrincipalDep, StateDep
from serving.rest_format import api_key_body, issued_key_body, list_body
from serving.schemas import PLAIN_TEXT
from serving.services.key_service import KeySpec, KeyStore
from serving.state import AppState

router = APIRouter(tags=["keys"], dependencies=[allow(Access.ADMIN)])

# The length constraints and the control-character check on one plain `str` (nesting the `PlainText` alias would drop
# the constraints: an empty name passed).
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), PLAIN_TEXT]


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Who or what holds the key (shown in lists, logs and the audit log).")
    role: Literal["admin", "member"] = Field("member", description="'member' or 'admin' (see server.api_keys).")
    collections: list[Name] | None = Field(
        None, max_length=1000, description="Collections a member key may read and write; omit for all."
    )
    expires_at: datetime | None = Field(None, description="When the key stops working (Unix seconds or ISO 8601).")
    tokens_per_day: int | None = Field(
        None, ge=1, le=10**12, description="Prompt + completion tokens the key may spend per UTC day."
    )
    requests_per_minute: int | None = Field(None, ge=1, le=10**6, description="Chat requests per minute.")

    @model_validator(mode="after")
    def _scope(self) -> CreateKeyRequest:
        if self.collections is not None and not self.collections:
            raise ValueError("collections: [] would allow no collection; omit it (all) or name at least one")
        if self.role == "admin" and self.collections is not None:
            raise ValueError("collections: an admin key reads every collection; omit collections")
        return self


def _store(state: AppState) -> KeyStore:
    store = key_store(state)
    if store is None:
        raise ServiceUnavailableError("the key store is not ready yet; retry shortly")
    return store


@router.post("/v1/keys", status_code=201)
async def create_key(body: CreateKeyRequest, state: StateDep, principal: PrincipalDep) -> dict[str, Any]:
    spec = KeySpec(**body.model_dump())
    return issued_key_body(await asyncio.to_thread(_store(state).create, spec, principal.name))


@router.get("/v1/keys")
async def list_keys(state: StateDep) -> dict[str, Any]:
    keys = await asyncio.to_thread(_store(state).list)
    return list_body([api_key_body(key) for key in keys])


@router.delete("/v1/keys/{key_id}")
async def revoke_key(key_id: str, state: StateDep) -> dict[str, Any]:
    return api_key_body(await asyncio.to_thread(_store(state).revoke, key_id))


@router.post("/v1/keys/{key_id}/rotate")
async def rotate_key(key_id: str, state: StateDep) -> dict[str, Any]:
    return issued_key_body(await asyncio.to_thread(_store(state).rotate, key_id))
