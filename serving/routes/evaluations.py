"""Answer evaluation runs: `POST /v1/evaluations` (multipart: a SQuAD or QA JSONL file), `GET /v1/evaluations`,
`GET /v1/evaluations/{id}` (status, progress, running metrics and curve, then the report) and
`GET /v1/evaluations/{id}/files/{kind}` (the report as `json` or `markdown`, the `curves` PNG)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from serving.access import Access, allow
from serving.deps import EvaluationsDep, PrincipalDep
from serving.rest_format import evaluation_body, evaluation_list_body

router = APIRouter(tags=["evaluations"], dependencies=[allow(Access.ADMIN)])
MEDIA = {"json": "application/json", "markdown": "text/markdown", "curves": "image/png"}


@router.post("/v1/evaluations", status_code=202)
async def start_evaluation(
    evaluations: EvaluationsDep,
    principal: PrincipalDep,
    file: Annotated[UploadFile, File(description="SQuAD v1.1/v2.0 JSON, or JSONL of {question, answers|answer}.")],
    model: Annotated[str | None, Form(description="Base model or adapter (default: the base model).")] = None,
    collection: Annotated[
        str | None, Form(max_length=200, pattern=r"^[\w.\-]+$", description="Collection to search.")
    ] = None,
    limit: Annotated[int | None, Form(ge=1, description="Only the first N questions.")] = None,
) -> JSONResponse:
    run = evaluations.start(file.filename or "questions.jsonl", await file.read(), model, collection, limit, principal)
    return JSONResponse(evaluation_body(run, with_report=False), status_code=202)


@router.get("/v1/evaluations")
async def list_evaluations(
    evaluations: EvaluationsDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, Any]:
    return evaluation_list_body(evaluations.list_runs(limit))


@router.get("/v1/evaluations/{evaluation_id}")
async def get_evaluation(
    evaluation_id: str,
    evaluations: EvaluationsDep,
    results: Annotated[bool, Query(description="Include the per-question results in the report.")] = True,
) -> dict[str, Any]:
    return evaluation_body(evaluations.get(evaluation_id, with_results=results))


@router.get("/v1/evaluations/{evaluation_id}/files/{kind}")
async def get_evaluation_file(
    evaluation_id: str, kind: Literal["json", "markdown", "curves"], evaluations: EvaluationsDep
) -> FileResponse:
    return FileResponse(evaluations.file(evaluation_id, kind), media_type=MEDIA[kind])
