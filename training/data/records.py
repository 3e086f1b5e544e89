"""The internal example forms every data format is normalised into.

Contract: a `ChatExample` is an OpenAI-style conversation (roles system/user/assistant) ending with an assistant turn,
optionally with retrieved `sources` that belong to its last user turn; a `PreferenceExample` is a prompt conversation
ending with a user turn plus a chosen and a rejected completion (plain strings), or, for pairs collected from served
chats, the exact `rendered_prompt` text the server built (then used verbatim). `origin` says where a record came
from (`file#index`) so errors and reports can point at it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from assistant.errors import UnprocessableError
from assistant.prompts import Source

Message = dict[str, str]
ROLES = ("system", "user", "assistant")


class DataValidationError(UnprocessableError):
    """A training record is malformed; the message names the file, the record index and the field."""

    def __init__(self, origin: str, field: str, problem: str) -> None:
        super().__init__(f"{origin}: field '{field}' {problem}", param=field, code="invalid_training_record")
        self.origin = origin
        self.field = field


class EmptyDatasetError(UnprocessableError):
    """No examples are left to train on (after parsing or selection)."""


@dataclass(frozen=True)
class ChatExample:
    """A conversation to fine-tune on; the loss covers the assistant turns."""

    messages: tuple[Message, ...]
    sources: tuple[Source, ...] | None = None
    origin: str = ""

    def text(self) -> str:
        """All contents joined (used for dedup and quality checks)."""
        return "\n".join(m["content"] for m in self.messages)

    def answer(self) -> str:
        return self.messages[-1]["content"]


@dataclass(frozen=True)
class PreferenceExample:
    """A prompt conversation with a preferred and a dispreferred completion."""

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    sources: tuple[Source, ...] | None = None
    origin: str = ""
    rendered_prompt: str | None = None  # the exact prompt text the server built (feedback pairs); used verbatim

    def text(self) -> str:
        return "\n".join([*(m["content"] for m in self.prompt), self.chosen, self.rejected])

    def answer(self) -> str:
        return self.chosen


Example = ChatExample | PreferenceExample


def check_conversation(messages: Sequence[Message], origin: str, field: str, last_role: str) -> None:
    """Roles are known and the conversation ends with `last_role`; raise `DataValidationError` otherwise."""
    if not messages:
        raise DataValidationError(origin, field, "is an empty conversation")
    for i, message in enumerate(messages):
        if message["role"] not in ROLES:
            raise DataValidationError(origin, f"{field}[{i}].role", f"has unknown role {message['role']!r}")
    if messages[-1]["role"] != last_role:
        raise DataValidationError(origin, field, f"must end with a '{last_role}' turn, not '{messages[-1]['role']}'")
