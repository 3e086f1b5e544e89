"""`GET /v1/models`: the base model and the adapter versions this key may name, in OpenAI's list format.

An admin sees every servable version (and each alias); a member sees the base model and the active versions it may
use (`serving.catalog`): a listing never offers a model that a chat naming it would refuse.
"""

from __future__ import annotations

from fastapi import APIRouter

from serving.access import Access, allow
from serving.catalog import engine_identity
from serving.deps import PrincipalDep, StateDep
from serving.schemas import ModelCard, ModelList

router = APIRouter(tags=["models"], dependencies=[allow(Access.MEMBER)])


@router.get("/v1/models", response_model=ModelList)
async def list_models(state: StateDep, principal: PrincipalDep) -> ModelList:
    catalog = state.catalog
    cards = [ModelCard(id=catalog.base_name, created=catalog.created, root=catalog.base_name)]
    seen_aliases: set[str] = set()
    for row in catalog.adapters():
        if not catalog.may_use(row, principal):
            continue
        created = int(row.created_at.timestamp())
        if row.name not in seen_aliases:
            seen_aliases.add(row.name)
            cards.append(ModelCard(id=row.name, created=created, root=catalog.base_name, parent=catalog.base_name))
        cards.append(ModelCard(id=engine_identity(row), created=created, root=catalog.base_name, parent=row.name))
    return ModelList(data=cards)
