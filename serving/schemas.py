"""Request and response bodies of the REST API (OpenAI-compatible where OpenAI has a convention).

Contract: request models validate everything a client can get wrong (roles, empty content, sampling ranges) so that
services receive well-formed values; unknown OpenAI fields are accepted and ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from serving.services.jobs import JobRequest, TrainingData
from training.methods import METHOD_NAMES
from training.uploads import FILE_ID

MAX_UNIX_TIME = 4_102_444_800  # 2100-01-01: bounds `since` so datetime conversion cannot overflow


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
        return value

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
    collections: list[str] | None = Field(
        None,
        min_length=1,
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


class JobData(BaseModel):
    """What a job trains on: stored preference pairs (since a point) or an uploaded dataset file."""

    source: Literal["preferences", "file", "feedback", "chats"] = Field(
        "preferences",
        description="preferences (dpo, reward), feedback = thumbs (kto) or rated prompts (grpo), "
        "chats = served prompts (grpo), file = an upload.",
    )
    provenance: Literal["feedback", "imported"] | None = Field(None, description="Only pairs of this provenance.")
    since: int | None = Field(None, ge=0, le=MAX_UNIX_TIME, description="Unix time: only pairs created at or after it.")
    file_id: str | None = Field(
        None, pattern=FILE_ID.pattern, description="For source=file: the id returned by POST /v1/training/files."
    )
    collection: str | None = Field(
        None,
        description="For sft/psft on question files (SQuAD or question/answer JSONL): build each example's sources "
        "with the server's retriever over this uploaded collection (RAFT).",
        max_length=200,
        pattern=r"^[\w.\-]+$",
    )


class JobSpec(BaseModel):
    """The body of `POST /v1/training/jobs` (and of `assistant jobs submit`); `request()` is the service's value."""

    method: Literal[METHOD_NAMES]  # type: ignore[valid-type]  # the rows of training.methods.METHODS
    name: str = Field("assistant", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="Adapter name.")
    data: JobData = Field(default_factory=JobData)  # type: ignore[arg-type]
    base_adapter: str | None = Field(None, description="Continue from this adapter (NAME or NAME@vN).")
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Training options from a per-method whitelist with bounds (training/job_options.py): "
        "learning_rate, num_train_epochs, max_steps, batch sizes, max_length, lora_r/alpha/dropout/target_modules, "
        "beta (dpo), eps_low/eps_high/psft_refresh_steps (psft), ...; anything else is refused (422).",
    )
    gate: bool = Field(True, description="Evaluate the candidate against the active version when it is trained.")

    def request(self) -> JobRequest:
        """The validated body as the job service's `JobRequest`."""
        body = self.model_dump(mode="json")
        return JobRequest(**{**body, "data": TrainingData(**body["data"])})
