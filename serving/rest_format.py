"""The REST JSON of the platform's own endpoints, made at the edge from the services' domain values.

Contract: one function per response body; the routes and the CLI (`assistant jobs ...`, `adapters ...`) print these,
so both show the same JSON. Jobs: `job_body` (`training.job`, with `log_tail` when the record has one),
`job_list_body`, `upload_body` (`file`). Timestamps are Unix seconds (int) or null.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from serving.services.jobs import JobRecord, UploadedFile


def job_body(job: JobRecord) -> dict[str, Any]:
    """The `training.job` object; `log_tail` only for a record read with its log (GET one job)."""
    body = {
        "id": job.id,
        "object": "training.job",
        "method": job.method,
        "state": job.state,
        "progress": job.progress,
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


def list_body(data: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """An OpenAI-style `list` envelope, with any extra top-level fields (`counts`, `active`)."""
    return {"object": "list", **extra, "data": data}


def _utc_ts(value: datetime | None) -> int | None:
    """Unix seconds; a naive datetime (SQLite drops the zone) is read as UTC."""
    return int(value.replace(tzinfo=value.tzinfo or UTC).timestamp()) if value else None
