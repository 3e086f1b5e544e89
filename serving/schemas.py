"""Request and response bodies of the REST API (OpenAI-compatible where OpenAI has a convention).

Contract: request models validate everything a client can get wrong (roles, empty content, sampling ranges) so that
services receive well-formed values; unknown OpenAI fields are accepted and ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from assistant.errors import InvalidRequestError
from training.request import MAX_UNIX_TIME, JobData, JobRequest  # noqa: F401 - the job's types (one home)

MAX_COLLECTIONS = 100
# Control characters (Unicode Cc) other than tab, newline and carriage return: NUL ends strings in C libraries and
# some databases, and the others are invisible in logs, file names and the console.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def control_character_problem(text: str) -> str | None:
    """Why `text` may not be stored (its first control character other than \\t \\n \\r), or None when it may."""
    found = _CONTROL.search(text)
    if found is None:
        return None
    return (
        f"control character U+{ord(found.group()):04X} at position {found.start()} is not allowed "
        "(only tab, newline and carriage return are)"
    )


def check_text(value: str, field: str) -> str:
    """`value`, or an InvalidRequestError (400) naming `field` when it holds a control character: the one check
    applied to stored text that does not come through a request model (services, multipart fields)."""
    problem = control_character_problem(value)
    if problem:
        raise InvalidRequestError(f"{field}: {problem}", param=field)
    return value


def _plain_text(value: str) -> str:
    problem = control_character_problem(value)
    if problem:
        raise ValueError(problem)  # pydantic names the field (the 400 says e.g. `messages.0.content: ...`)
    return value


PLAIN_TEXT = AfterValidator(_plain_text)
PlainText = Annotated[str, PLAIN_TEXT]
"""A request model's text field that is stored: no control characters but tab, newline and carriage return."""


def _distinct(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))  # duplicates would only grow the database query (its variable limit)


CollectionList = Annotated[
    list[Annotated[PlainText, Field(min_length=1, max_length=200)]],
    Field(min_length=1, max_length=MAX_COLLECTIONS),
    AfterValidator(_distinct),
]
"""A request's `collections`: 1-100 names (duplicates removed, order kept); [] is refused (it would mean none)."""


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[dict[str, Any]]

    @field_validator("content")
    @classmethod
    def _text_only(cls, value: str | list[dict[str, Any]]) -> str:
        if isinstance(value, list):  # OpenAI content parts: only text parts are supported
            texts = [part.get("text") for part in value if part.get("type") == "text"]
            if len(texts) != len(value):
                raise ValueError("only text content parts are supported")
            if not all(isinstance(text, str) for text in texts):
                raise ValueError("each text content part needs a string 'text'")
            value = "".join(str(text) for text in texts)
        return _plain_text(value)

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": str(self.content)}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI chat completion request, plus the platform's retrieval options as extra fields."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(..., min_length=1, description="The base model or an adapter (alias or name@vN).")
    messages: list[ChatMessage] = Field(..., min_length=1, description="The conversation, ending with a user turn.")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    max_completion_tokens: int | None = Field(None, ge=1, description="Alias of max_tokens (newer OpenAI name).")
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = Field(None, description="Up to 4 stop strings.")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="Sampling seed (reproducible sampling).")
    n: int = Field(1, ge=1, le=1, description="Only n=1 is supported.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # Platform extensions (extra body fields; with the openai client pass them in `extra_body`).
    use_retrieval: bool = Field(True, description="Ground the answer in retrieved documents (RAG).")
    collections: CollectionList | None = Field(
        None,
        description="Retrieve only from these collections (omit for every collection the key may read; [] is refused).",
    )
    top_k: int | None = Field(
        None, ge=1, le=50, description="Sources to put into the prompt (default retrieval.top_k)."
    )
    retrieval_mode: Literal["hybrid", "dense", "bm25"] = Field("hybrid", description="How to retrieve.")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        stops = [value] if isinstance(value, str) else value
        if stops is not None and (len(stops) > 4 or any(not s for s in stops)):
            raise ValueError("stop takes at most 4 non-empty strings")
        return stops

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if value[-1].role != "user":
            raise ValueError("the last message must have role 'user'")
        if not str(value[-1].content).strip():
            raise ValueError("the last user message is empty")
        return value


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "assistant"
    root: str | None = None
    parent: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class JobSpec(JobRequest):
    """The body of `POST /v1/training/jobs` (and of `assistant jobs submit`): `training.request.JobRequest`, the one
    request type of a job from this route to the runner, under its REST name."""
