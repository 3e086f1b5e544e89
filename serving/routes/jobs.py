"""Training jobs: `POST /v1/training/files`, `POST /v1/training/jobs`, `GET /v1/training/jobs[/{id}]`,
`POST /v1/training/jobs/{id}/cancel`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import JSONResponse

from serving.access import Access, allow
from serving.deps import StateDep, require
from serving.rest_format import job_body, job_list_body, upload_body
from serving.schemas import JobSpec

router = APIRouter(tags=["training"], dependencies=[allow(Access.ADMIN)])


@router.post("/v1/training/files")
async def upload_training_file(
    state: StateDep,
    file: Annotated[UploadFile, File(description="Training data: .jsonl, .json or .csv in any supported format.")],
) -> dict[str, Any]:
    upload = require(state.jobs, "job service").save_upload(file.filename or "data.jsonl", await file.read())
    return upload_body(upload)


@router.post("/v1/training/jobs", status_code=201)
async def create_job(spec: JobSpec, state: StateDep) -> JSONResponse:
    job = require(state.jobs, "job service").create(spec)
    return JSONResponse(job_body(job), status_code=201)


@router.get("/v1/training/jobs")
async def list_jobs(state: StateDep, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    return job_list_body(require(state.jobs, "job service").list(limit))


@router.get("/v1/training/jobs/{job_id}")
async def get_job(job_id: str, state: StateDep) -> dict[str, Any]:
    return job_body(require(state.jobs, "job service").get(job_id))


@router.post("/v1/training/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, state: StateDep) -> dict[str, Any]:
    return job_body(require(state.jobs, "job service").cancel(job_id))
