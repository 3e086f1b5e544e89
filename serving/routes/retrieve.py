"""`POST /v1/retrieve`: the chunks a query retrieves, with their scores (debugging and evaluation)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from serving.access import Access, allow
from serving.deps import PrincipalDep, RetrievalDep
from serving.rest_format import retrieve_body
from serving.schemas import CollectionList

router = APIRouter(tags=["retrieval"], dependencies=[allow(Access.MEMBER)])


class RetrieveRequest(BaseModel):
    query: str = Field(..., min_length=1, max_length=8000, description="What to search for.")
    k: int | None = Field(None, ge=1, le=100, description="Hits to return (default retrieval.top_k).")
    collections: CollectionList | None = Field(
        None, description="Only these collections (omit for all the key may read; [] is refused)."
    )
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"


@router.post("/v1/retrieve")
async def retrieve(body: RetrieveRequest, retrieval: RetrievalDep, principal: PrincipalDep) -> dict[str, Any]:
    collections = retrieval.scope(body.collections, principal)
    hits = await retrieval.search(body.query, body.k, collections, body.mode, principal)
    return retrieve_body(body.query, body.mode, hits)
