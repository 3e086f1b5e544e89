"""Scoring answers with a registered reward model: the service behind `POST /v1/rewards/score`.

Contract: `RewardService(parts).score(model, items)` resolves `model` (a reward adapter's name, name@vN /
name:vN or id; None = the newest adapter of kind `reward`), loads it once (`training.reward.RewardScorer`, cached
per adapter id, on this process's CPU/GPU) and returns `RewardScores`: the model's `name@vN` and one score per item,
in order (the JSON is made in `serving.rest_format`). An item's prompt is given as
`rendered_prompt` (used verbatim: the text the server built), `messages` (a conversation ending with a user turn) or
`prompt` (one user question); the last two are rendered like served chats without retrieval (serving template,
chat template with the generation prompt). 404 when no such reward model exists; 422 for an adapter that is not a
reward model or an item without a prompt.
Bounds: at most `server.max_concurrent_scoring` requests score at once, up to `WAITING` more wait, beyond that 429;
each scoring request also holds a generation slot (`serving.admission`) while it runs, since it takes the same CPU
or GPU the engine does. At most `CACHED_SCORERS` reward models stay loaded (least recently used goes first). Inputs
longer than the model's context are cut from the left (`training.reward.score_texts`).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from assistant.chat_template import render_prompt
from assistant.errors import NotFoundError, RateLimitedError, UnprocessableError
from assistant.parts import Parts
from assistant.storage import Adapter
from serving.admission import Admission

CACHED_SCORERS = 2
WAITING = 4


@dataclass(frozen=True)
class RewardScores:
    model: str  # the reward model that scored, as name@vN
    scores: list[float]  # one per item, in the order given


class RewardService:
    def __init__(self, parts: Parts, admission: Admission | None = None) -> None:
        self.parts = parts
        self.settings = parts.settings
        self.db = parts.db
        self.admission = admission
        self._scorers: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._slots = asyncio.Semaphore(self.settings.server.max_concurrent_scoring)
        self._admitted = 0  # scoring or waiting for a slot

    def _record(self, model: str | None) -> Any:
        from training.registry import AdapterRegistry

        registry = AdapterRegistry.of(self.parts)
        if model is None:
            with self.db.session() as session:
                row = session.scalars(
                    select(Adapter).where(Adapter.kind == "reward").order_by(Adapter.created_at.desc())
                ).first()
                if row is None:
                    raise NotFoundError("no reward model is registered: train one (method: reward)", param="model")
                model = row.id
        try:
            record = registry.resolve(model)
        except NotFoundError as exc:
            raise NotFoundError(f"no reward model {model!r} in the registry", param="model") from exc
        if record.kind != "reward":
            raise UnprocessableError(f"{model!r} is a {record.kind} adapter, not a reward model", param="model")
        return record

    def _scorer(self, record: Any) -> Any:
        with self._lock:
            if record.id not in self._scorers:
                from assistant.model_files import resolve_lm
                from training.reward import RewardScorer

                try:
                    self._scorers[record.id] = RewardScorer(resolve_lm(self.settings), record.path)
                except Exception as exc:  # damaged files, or an adapter registered as a reward model that is not one
                    raise UnprocessableError(
                        f"{record.name}@v{record.version} could not be loaded as a reward model: {exc}", param="model"
                    ) from exc
                while len(self._scorers) > CACHED_SCORERS:
                    self._scorers.popitem(last=False)
            self._scorers.move_to_end(record.id)
            return self._scorers[record.id]

    def render(self, scorer: Any, item: dict[str, Any], index: int) -> str:
        if item.get("rendered_prompt"):
            return str(item["rendered_prompt"])
        if item.get("messages"):
            history = list(item["messages"])
        elif item.get("prompt"):
            history = [{"role": "user", "content": item["prompt"]}]
        else:
            raise UnprocessableError(f"items[{index}] needs rendered_prompt, messages or prompt", param="items")
        if history[-1]["role"] != "user":
            raise UnprocessableError(f"items[{index}].messages must end with a user turn", param="items")
        from assistant.prompts import build_rag_messages

        messages = build_rag_messages(history, None)
        return render_prompt(scorer.tokenizer, messages)

    def score_sync(self, model: str | None, items: Sequence[dict[str, Any]]) -> RewardScores:
        record = self._record(model)
        scorer = self._scorer(record)
        prompts = [self.render(scorer, item, i) for i, item in enumerate(items)]
        scores = scorer.score(prompts, [str(item["answer"]) for item in items])
        return RewardScores(f"{record.name}@v{record.version}", list(scores))

    async def score(self, model: str | None, items: Sequence[dict[str, Any]]) -> RewardScores:
        limit = self.settings.server.max_concurrent_scoring
        if self._admitted >= limit + WAITING:
            raise RateLimitedError(
                f"reward scoring is at capacity ({limit} running, {WAITING} waiting; server.max_concurrent_scoring)",
                retry_after=5,
            )
        self._admitted += 1
        try:
            async with self._slots:
                lease = await self.admission.acquire() if self.admission is not None else None
                try:
                    return await asyncio.to_thread(self.score_sync, model, items)
                finally:
                    if lease is not None:
                        lease.release()
        finally:
            self._admitted -= 1
