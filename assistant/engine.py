"""The generation-engine contract shared by serving (which implements it) and training/eval (which may call it).

Contract: an engine takes an already rendered prompt string (the exact text the chat template produced, so it can be
stored and replayed), sampling options and an optional LoRA adapter, and yields incremental `GenerationChunk`s. A
request can be aborted by id at any time (client disconnect); adapters are registered at run time, each version under
its own engine identity (`AdapterRef.name`) so no cached state of another version is reused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class SamplingOptions:
    """Sampling parameters of one request (OpenAI semantics; temperature 0 = greedy)."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": list(self.stop),
            "seed": self.seed,
        }


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter as the engine sees it: a unique engine identity, a positive integer id and a PEFT directory."""

    name: str
    int_id: int
    path: str


@dataclass
class GenerationChunk:
    """One step of output: `text` is the new text since the previous chunk."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    token_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class EngineStats:
    running: int
    waiting: int


@runtime_checkable
class GenerationEngine(Protocol):
    """What the server needs from a generation backend."""

    model_name: str
    max_model_len: int

    async def start(self) -> None: ...

    def generate(
        self, request_id: str, prompt: str, options: SamplingOptions, adapter: AdapterRef | None = None
    ) -> AsyncIterator[GenerationChunk]: ...

    async def abort(self, request_id: str) -> None: ...

    async def add_adapter(self, adapter: AdapterRef) -> None: ...

    async def remove_adapter(self, adapter: AdapterRef) -> None: ...

    def count_tokens(self, text: str) -> int: ...

    def render_chat(self, messages: Sequence[dict[str, str]]) -> str: ...

    def stats(self) -> EngineStats: ...

    def dead_reason(self) -> str | None:
        """None while the engine can serve; why not once it has died (its process crashed, a step failed)."""
        ...

    async def shutdown(self) -> None: ...
