"""Reward model scoring: `POST /v1/rewards/score` (admins only)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from serving.access import Access, allow
from serving.deps import RewardsDep
from serving.rest_format import reward_scores_body

router = APIRouter(tags=["rewards"], dependencies=[allow(Access.ADMIN)])


class Turn(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(..., max_length=32_000)


class RewardItem(BaseModel):
    prompt: str | None = Field(None, max_length=32_000, description="A user question (rendered as served).")
    messages: list[Turn] | None = Field(None, max_length=64, description="A conversation ending with a user turn.")
    rendered_prompt: str | None = Field(None, max_length=64_000, description="The exact prompt text, verbatim.")
    answer: str = Field(..., max_length=32_000, description="The answer to score.")


class RewardRequest(BaseModel):
    model: str | None = Field(None, max_length=200, description="Reward model name[@vN] (default: newest).")
    items: list[RewardItem] = Field(..., min_length=1, max_length=64)


@router.post("/v1/rewards/score")
async def score_answers(body: RewardRequest, rewards: RewardsDep) -> dict[str, Any]:
    items = [item.model_dump(exclude_none=True) for item in body.items]
    for item in items:
        if "messages" in item:
            item["messages"] = [dict(turn) for turn in item["messages"]]
    return reward_scores_body(await rewards.score(body.model, items))
