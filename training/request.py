"""The one request type of a training job, from the REST route to the runner.

Contract: `JobRequest` is the validated body of `POST /v1/training/jobs` (`serving.schemas.JobSpec` is this class
under its REST name) and of `assistant jobs submit`. The job service checks it against the method table and the
server's limits and stores it as the job's `params` with `model_dump(mode="json")`; the worker reads it back with
`JobRequest.model_validate(params)` (a row written by an older version gets the defaults of the fields it lacks), so
every field is typed on both sides. `JobData` says what the job trains on. Nothing here reads or writes anything.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from training.methods import METHOD_NAMES
from training.uploads import FILE_ID

MAX_UNIX_TIME = 4_102_444_800  # 2100-01-01: bounds `since` so datetime conversion cannot overflow


class JobData(BaseModel):
    """What a job trains on: stored preference pairs (since a point) or an uploaded dataset file."""

    source: Literal["preferences", "file", "feedback", "chats", "collection"] = Field(
        "preferences",
        description="preferences (dpo, reward), feedback = thumbs (kto) or rated prompts (grpo), "
        "chats = served prompts (grpo), file = an upload, collection = questions generated from the chunks of "
        "`collection` (sft, psft: documents with no question set).",
    )
    provenance: Literal["feedback", "imported"] | None = Field(None, description="Only pairs of this provenance.")
    since: int | None = Field(None, ge=0, le=MAX_UNIX_TIME, description="Unix time: only pairs created at or after it.")
    file_id: str | None = Field(
        None, pattern=FILE_ID.pattern, description="For source=file: the id returned by POST /v1/training/files."
    )
    generator: Literal["rules", "model"] = Field(
        "rules",
        description="For source=collection: who writes the questions about the answer spans the rules pick: 'rules' "
        "(the sentence turned into a question; fast) or 'model' (the base model writes it; slower).",
    )
    collection: str | None = Field(
        None,
        description="For sft/psft on question files (SQuAD or question/answer JSONL): build each example's sources "
        "with the server's retriever over this uploaded collection (RAFT). For source=collection: the collection "
        "whose chunks the questions are generated from (required).",
        max_length=200,
        pattern=r"^[\w.\-]+$",
    )


class JobRequest(BaseModel):
    """A training job as asked for (see the module contract)."""

    method: Literal[METHOD_NAMES]  # type: ignore[valid-type]  # the rows of training.methods.METHODS
    name: str = Field("assistant", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="Adapter name.")
    data: JobData = Field(default_factory=JobData)  # type: ignore[arg-type]
    base_adapter: str | None = Field(None, description="Continue from this adapter (NAME or NAME@vN).")
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Training options from a per-method whitelist with bounds (training/job_options.py): "
        "learning_rate, num_train_epochs, max_steps, batch sizes, max_length, lora_r/alpha/dropout/target_modules, "
        "beta (dpo), eps_low/eps_high/psft_refresh_steps (psft), max_minutes (the whole job's budget), ...; anything "
        "else is refused (422).",
    )
    gate: bool = Field(True, description="Evaluate the candidate against the active version when it is trained.")
