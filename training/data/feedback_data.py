"""Training data for the toolbox methods read from what the server stored: thumbs (KTO) and served prompts (GRPO).

Contract:
- `thumbs_records(db, since)`: one record per rating on a stored chat, `{rendered_prompt, completion, label, id}`
  with the exact prompt the server rendered (retrieved sources included), the stored answer and label = rating > 0.
  A thumbs-down with a correction adds the correction as a thumbs-up example too. Empty answers are skipped.
- `prompt_records(db, since, rated_only)`: the distinct rendered prompts of stored chats (of rated chats only with
  `rated_only`), `{rendered_prompt}`, for online RL.
- `JOB_SOURCES` says which stored job data sources (`feedback`, `chats`) each method reads (the `sources` of its
  `training.methods.METHODS` row); `count_source(db, method, source, since)` counts what a job would get;
  `write_source(db, method, source, since, path)` writes it as JSON lines for the worker;
  `source_collections(db, method, source, since)` the collections those chats retrieved from (lineage `collections`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from assistant.storage import ChatRecord, Chunk, Database, Feedback
from assistant.storage.queries import utc_naive
from training.methods import METHODS

STORED = ("feedback", "chats")  # the sources read here; `preferences` are read by the worker, `file` is an upload
JOB_SOURCES: dict[str, tuple[str, ...]] = {n: m.sources for n, m in METHODS.items() if set(m.sources) & set(STORED)}


def thumbs_records(db: Database, since: int | None = None) -> list[dict[str, Any]]:
    query = select(Feedback, ChatRecord).join(ChatRecord, Feedback.chat_id == ChatRecord.id)
    if since is not None:
        query = query.where(Feedback.created_at >= utc_naive(since))
    records: list[dict[str, Any]] = []
    with db.session() as session:
        for feedback, chat in session.execute(query.order_by(Feedback.created_at, Feedback.id)).all():
            if chat.answer.strip():
                records.append({"rendered_prompt": chat.prompt, "completion": chat.answer,
                                "label": feedback.rating > 0, "id": feedback.id})  # fmt: skip
            if feedback.rating < 0 and feedback.correction and feedback.correction.strip() != chat.answer.strip():
                records.append({"rendered_prompt": chat.prompt, "completion": feedback.correction,
                                "label": True, "id": f"{feedback.id}:correction"})  # fmt: skip
    return records


def prompt_records(db: Database, since: int | None = None, rated_only: bool = False) -> list[dict[str, Any]]:
    query = select(ChatRecord.prompt, func.min(ChatRecord.created_at).label("first")).group_by(ChatRecord.prompt)
    if rated_only:
        query = query.join(Feedback, Feedback.chat_id == ChatRecord.id)
    if since is not None:
        query = query.where(ChatRecord.created_at >= utc_naive(since))
    with db.session() as session:
        rows = session.execute(query.order_by("first")).all()
    return [{"rendered_prompt": prompt} for prompt, _ in rows if prompt.strip()]


def source_records(db: Database, method: str, source: str, since: int | None) -> list[dict[str, Any]]:
    """KTO reads the thumbs; GRPO the prompts of stored chats (`feedback`: of rated chats only)."""
    if method == "grpo" and source in ("chats", "feedback"):
        return prompt_records(db, since, rated_only=source == "feedback")
    if method == "kto" and source == "feedback":
        return thumbs_records(db, since)
    raise ValueError(f"`{method}` jobs do not read the stored {source!r}")


def source_collections(db: Database, method: str, source: str, since: int | None) -> list[str] | None:
    """The collections the retrieved sources of the stored chats a job reads came from (KTO: the rated chats; GRPO:
    every chat, or the rated ones), sorted; None when a retrieved chunk is gone (unknown)."""
    query = select(ChatRecord.retrieved_chunk_ids)
    if source == "feedback":
        query = query.join(Feedback, Feedback.chat_id == ChatRecord.id)
    if since is not None:  # as `thumbs_records` (by the rating's time) and `prompt_records` (by the chat's) select
        stamp = Feedback.created_at if method == "kto" else ChatRecord.created_at
        query = query.where(stamp >= utc_naive(since))
    with db.session() as session:
        ids = {int(i) for row in session.scalars(query) for i in (row or [])}
        found = dict(session.execute(select(Chunk.id, Chunk.collection).where(Chunk.id.in_(ids))).tuples().all())
    return sorted(set(found.values())) if set(found) == ids else None


def count_source(db: Database, method: str, source: str, since: int | None) -> int:
    return len(source_records(db, method, source, since))


def write_source(db: Database, method: str, source: str, since: int | None, path: Path) -> int:
    records = source_records(db, method, source, since)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return len(records)


def check_stored_source(db: Database, method: str, source: str, since: int | None) -> None:
    """Refuse (422) a job whose method does not read `source`, or whose stored data is empty, before it is queued."""
    from assistant.errors import UnprocessableError

    if source not in JOB_SOURCES[method]:
        raise UnprocessableError(
            f"`{method}` jobs read data.source in {JOB_SOURCES[method]}, not {source!r}", param="data.source"
        )
    if count_source(db, method, source, since) == 0:
        raise UnprocessableError(
            f"no stored {source} match (since={since}): collect chats and feedback first",
            param="data",
            code="empty_dataset",
        )
