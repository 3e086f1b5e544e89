"""The REST JSON of the platform's own endpoints, made at the edge from the services' domain values.

Contract: one function per response body; the routes and the CLI (`assistant jobs ...`, `adapters ...`) print these,
so both show the same JSON. Jobs: `job_body` (`training.job`, with `log_tail` when the record has one),
`job_list_body`, `upload_body` (`file`). Adapters: `adapter_body` (`adapter`, `id` = `NAME@vN`),
`adapter_list_body` (with `active`: name -> the active version's id). Feedback: `feedback_body` (`feedback`),
`pair_body` (`preference_pair`), `pair_page_body` (with `counts`: total and per provenance), `import_body`
(`preference_import`). Keys: `api_key_body` (`api_key`, never the secret), `issued_key_body` (the secret under
`key`, shown once). Audit: `audit_body` (`audit_event`). Documents: `document_body` (`document`; `parse_report` and
`chunk_list` when read alone), `document_list_body`, `document_deleted_body`, `inline_upload_body` (the per-file
results of an upload ingested before the response), `upload_task_body` (`upload`, a background upload). Retrieval:
`retrieve_body`. Chats: `chat_body` (`chat`), `chat_page_body` (with `total`), `me_body`. Evaluations:
`evaluation_body` (`evaluation`; lists leave out `report`), `evaluation_list_body`. Rewards: `reward_scores_body`.
Timestamps are Unix seconds (int) or null.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from assistant.adapter_refs import AdapterStatus
from ingest.directory_sources import SourceRecord, SyncReport
from serving.services.audit_service import AuditEntry
from serving.services.feedback_service import FeedbackReceipt, ImportReport, PairPage, PairRecord
from serving.services.job_service import JobRecord, UploadedFile
from serving.services.key_service import IssuedKey, StoredKey
from training.registry import AdapterRecord

if TYPE_CHECKING:  # the records below are only read here; importing their services would slow every CLI command
    from assistant.retrieval import Hit
    from serving.principal import Principal
    from serving.services.answer_eval_service import EvaluationRun
    from serving.services.chat_history_service import ChatPage, StoredChat
    from serving.services.document_service import ChunkRecord, DocumentRecord, InlineUpload, UploadTask
    from serving.services.reward_service import RewardScores


def job_body(job: JobRecord) -> dict[str, Any]:
    """The `training.job` object; `log_tail` only for a record read with its log (GET one job)."""
    body = {
        "id": job.id,
        "object": "training.job",
        "method": job.method,
        "state": job.state,
        "progress": job.progress,
        "phase": job.phase,  # training.progress.PHASES; None while queued
        "phase_progress": job.phase_progress,  # done, total, eta_s, elapsed_s, budget_left_s, phases seen
        "params": job.params,
        "metrics": job.metrics,
        "error": job.error,
        "worker": job.worker,
        "created_at": _utc_ts(job.created_at),
        "started_at": _utc_ts(job.started_at),
        "finished_at": _utc_ts(job.finished_at),
    }
    if job.log_tail is not None:
        body["log_tail"] = job.log_tail
    return body


def job_list_body(jobs: Sequence[JobRecord]) -> dict[str, Any]:
    return list_body([job_body(job) for job in jobs])


def upload_body(upload: UploadedFile) -> dict[str, Any]:
    return {"id": upload.id, "object": "file", "filename": upload.filename, "bytes": upload.bytes}


def adapter_body(adapter: AdapterRecord) -> dict[str, Any]:
    return {
        "id": adapter.identity,
        "object": "adapter",
        "name": adapter.name,
        "version": adapter.version,
        "status": adapter.status,
        "method": adapter.method,
        "kind": adapter.kind,
        "base_model": adapter.base_model,
        "parent_id": adapter.parent_id,
        "job_id": adapter.job_id,
        "path": str(adapter.path),
        "lineage": adapter.lineage,
        "metrics": adapter.metrics,
        "gate": adapter.gate,
        "created_at": _ts(adapter.created_at),
        "activated_at": _ts(adapter.activated_at),
    }


def adapter_list_body(adapters: Sequence[AdapterRecord]) -> dict[str, Any]:
    """All versions, and the active version of each name (`active`: name -> `NAME@vN`)."""
    active = {a.name: a.identity for a in adapters if a.status == AdapterStatus.ACTIVE}
    return list_body([adapter_body(a) for a in adapters], active=active)


def feedback_body(receipt: FeedbackReceipt) -> dict[str, Any]:
    return {
        "id": receipt.id,
        "object": "feedback",
        "response_id": receipt.response_id,
        "rating": receipt.rating,
        "preference_pairs": receipt.preference_pairs,
    }


def pair_body(pair: PairRecord) -> dict[str, Any]:
    return {
        "id": pair.id,
        "object": "preference_pair",
        "provenance": pair.provenance,
        "source": pair.source,
        "prompt": pair.prompt,
        "chosen": pair.chosen,
        "rejected": pair.rejected,
        "collections": pair.collections,
        "created_at": _ts(pair.created_at),
    }


def pair_page_body(page: PairPage) -> dict[str, Any]:
    counts = {"total": page.total, **page.counts}
    return list_body([pair_body(pair) for pair in page.pairs], counts=counts)


def import_body(report: ImportReport) -> dict[str, Any]:
    return {
        "object": "preference_import",
        "source": report.source,
        "records": report.records,
        "stored": report.stored,
        "duplicates": report.duplicates,
    }


def source_body(source: SourceRecord) -> dict[str, Any]:
    """A `source` (a directory kept in sync with a collection); `counts` are the last sync's."""
    return {
        "id": source.id,
        "object": "source",
        "name": source.name,
        "path": source.path,
        "collection": source.collection,
        "delete": source.delete_policy,
        "interval_s": source.interval_s,
        "status": source.status,
        "syncing": source.syncing,
        "counts": source.counts,
        "errors": source.errors,
        "last_error": source.last_error,
        "last_sync_at": _utc_ts(source.last_sync_at),
        "created_at": _utc_ts(source.created_at),
    }


def source_list_body(sources: Sequence[SourceRecord]) -> dict[str, Any]:
    return list_body([source_body(source) for source in sources])


def sync_body(report: SyncReport) -> dict[str, Any]:
    """A `source.sync`: what a sync did (`dry_run`: would do), file paths relative to the source folder."""
    return {
        "object": "source.sync",
        "source_id": report.source_id,
        "dry_run": report.dry_run,
        "counts": report.counts(),
        "added": report.added,
        "changed": report.changed,
        "deleted": report.deleted,
        "kept": report.kept,
        "unchanged": len(report.unchanged),
        "failed": report.failed,
        "seconds": round(report.seconds, 3),
    }


def document_body(document: DocumentRecord) -> dict[str, Any]:
    """A `document`; one read alone (GET) adds `parse_report` and, when its chunks were read, `chunk_list`."""
    body: dict[str, Any] = {
        "id": document.id,
        "object": "document",
        "collection": document.collection,
        "source": document.source,
        "title": document.title,
        "mime_type": document.mime_type,
        "size_bytes": document.size_bytes,
        "status": document.status,
        "error": document.error,
        "chunks": document.chunks,
        "created_at": _ts(document.created_at),
        "updated_at": _ts(document.updated_at),
    }
    if document.detailed:
        body["parse_report"] = document.parse_report  # pages, method per page, tables, warnings (None before)
    if document.chunk_list is not None:
        body["chunk_list"] = [chunk_body(chunk) for chunk in document.chunk_list]
    return body


def chunk_body(chunk: ChunkRecord) -> dict[str, Any]:
    return {
        "id": chunk.id,
        "ordinal": chunk.ordinal,
        "text": chunk.text,
        "page": chunk.page,
        "section": chunk.section,
        "char_start": chunk.char_start,
        "char_end": chunk.char_end,
        "tokens": chunk.tokens,
    }


def document_list_body(documents: Sequence[DocumentRecord]) -> dict[str, Any]:
    return list_body([document_body(document) for document in documents])


def document_deleted_body(document_id: str, chunks: int) -> dict[str, Any]:
    return {"id": document_id, "object": "document.deleted", "deleted": True, "chunks": chunks}


def inline_upload_body(upload: InlineUpload) -> dict[str, Any]:
    """An upload ingested before the response: one result per file (`ingest.results.FileResult`), in order."""
    return list_body([result.to_dict() for result in upload.results], collection=upload.collection)


def upload_task_body(task: UploadTask) -> dict[str, Any]:
    """An `upload` (a background upload): its state, progress (share of files done), files and results so far."""
    return {
        "id": task.id,
        "object": "upload",
        "collection": task.collection,
        "state": task.state,
        "progress": task.progress,
        "files": task.files,
        "results": [result.to_dict() for result in task.results],
    }


def retrieve_body(query: str, mode: str, hits: Sequence[Hit]) -> dict[str, Any]:
    """`POST /v1/retrieve`: the hits in rank order, with every score the search computed."""
    return list_body([hit.to_dict() for hit in hits], query=query, mode=mode)


def chat_body(chat: StoredChat) -> dict[str, Any]:
    """A stored `chat` (`created` in Unix seconds)."""
    return {
        "id": chat.id,
        "object": "chat",
        "created": _ts(chat.created_at),
        "model": chat.model,
        "title": chat.title,
        "messages": chat.messages,
        "answer": chat.answer,
        "citations": chat.citations,
        "trace_id": chat.trace_id,  # the chat's trace (serving.tracing): a thumbs-down leads to its spans
    }


def chat_page_body(page: ChatPage) -> dict[str, Any]:
    return list_body([chat_body(chat) for chat in page.chats], total=page.total)


def me_body(principal: Principal, quota: dict[str, Any]) -> dict[str, Any]:
    """`GET /v1/me`: the calling key (name, role, readable collections, whether a key was checked) and its quota."""
    return {**principal.to_dict(), "quota": quota}


def reward_scores_body(scored: RewardScores) -> dict[str, Any]:
    """`POST /v1/rewards/score`: one `reward` per item, in order, and the reward model that scored them."""
    rewards = [{"object": "reward", "index": i, "score": score} for i, score in enumerate(scored.scores)]
    return list_body(rewards, model=scored.model)


def evaluation_body(run: EvaluationRun, with_report: bool = True) -> dict[str, Any]:
    """An `evaluation`: status, progress, running metrics and curve, files, and (`with_report`) the report (null
    until the run has succeeded). Timestamps in Unix seconds."""
    body: dict[str, Any] = {
        "id": run.id,
        "object": "evaluation",
        "status": run.status,
        "params": run.params,
        "total": run.total,
        "done": run.done,
        "progress": run.progress,
        "metrics": run.metrics,
        "curve": run.curve,
        "report": run.report,
        "files": run.files,
        "error": run.error,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
    }
    if not with_report:
        del body["report"]
    return body


def evaluation_list_body(runs: Sequence[EvaluationRun]) -> dict[str, Any]:
    """The runs, newest first, without their reports (`GET /v1/evaluations/{id}` has them)."""
    return list_body([evaluation_body(run, with_report=False) for run in runs])


def list_body(data: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """An OpenAI-style `list` envelope, with any extra top-level fields (`counts`, `active`)."""
    return {"object": "list", **extra, "data": data}


def _ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


def _utc_ts(value: datetime | None) -> int | None:
    """Unix seconds; a naive datetime (SQLite drops the zone) is read as UTC."""
    return int(value.replace(tzinfo=value.tzinfo or UTC).timestamp()) if value else None


def api_key_body(key: StoredKey, now: datetime | None = None) -> dict[str, Any]:
    """An `api_key` (never its secret; `prefix` is its first characters, to recognise it)."""
    now = now or datetime.now(UTC)
    status = "revoked" if key.revoked_at else ("expired" if key.expires_at and key.expires_at <= now else "active")
    return {
        "id": key.id,
        "object": "api_key",
        "name": key.name,
        "owner": key.owner,
        "role": key.role,
        "collections": key.collections,
        "prefix": key.prefix,
        "status": status,
        "tokens_per_day": key.tokens_per_day,
        "requests_per_minute": key.requests_per_minute,
        "created_at": _ts(key.created_at),
        "last_used_at": _ts(key.last_used_at),
        "expires_at": _ts(key.expires_at),
        "rotated_at": _ts(key.rotated_at),
        "revoked_at": _ts(key.revoked_at),
    }


def issued_key_body(issued: IssuedKey) -> dict[str, Any]:
    """A key just created or rotated: its `api_key` object and, this once, the secret under `key`."""
    return {**api_key_body(issued.key), "key": issued.secret}


def audit_body(entry: AuditEntry) -> dict[str, Any]:
    """One `audit_event`; `at` in Unix seconds (float, to the microsecond)."""
    return {
        "id": entry.id,
        "object": "audit_event",
        "at": entry.at.timestamp() if entry.at else None,
        "actor": entry.actor,
        "actor_id": entry.actor_id,
        "role": entry.role,
        "action": entry.action,
        "target": entry.target,
        "outcome": entry.outcome,
        "status": entry.status,
        "detail": entry.detail,
        "request_id": entry.request_id,
    }
