"""Documents: `POST /v1/documents` (multipart upload), `GET /v1/documents`, `GET/DELETE /v1/documents/{id}`,
`GET /v1/documents/uploads/{id}` (background upload status)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse

from assistant.errors import NotFoundError, PermissionDeniedError
from serving.access import Access, allow
from serving.deps import DocumentsDep, PrincipalDep
from serving.rest_format import (
    document_body,
    document_deleted_body,
    document_list_body,
    inline_upload_body,
    upload_task_body,
)
from serving.schemas import check_text
from serving.services.document_service import UploadTask

router = APIRouter(tags=["documents"], dependencies=[allow(Access.MEMBER)])


@router.post("/v1/documents")
async def upload_documents(
    documents: DocumentsDep,
    principal: PrincipalDep,
    files: Annotated[list[UploadFile], File(description="One or more files (PDF, DOCX, HTML, MD, TXT, CSV, JSON).")],
    collection: Annotated[str, Form(min_length=1, max_length=200, pattern=r"^[\w.\-]+$")] = "default",
) -> JSONResponse:
    principal.check_collections([collection])
    for upload in files:  # a file name is stored and shown: no control characters (serving.schemas.check_text)
        check_text(upload.filename or "upload", "files.filename")
    payload = [(upload.filename or "upload", upload.file) for upload in files]  # read (or spooled) by the service
    outcome = await documents.upload(payload, collection)
    if isinstance(outcome, UploadTask):  # accepted, ingested in the background: poll its status
        return JSONResponse(upload_task_body(outcome), status_code=202)
    return JSONResponse(inline_upload_body(outcome))


@router.get("/v1/documents")
async def list_documents(
    documents: DocumentsDep,
    principal: PrincipalDep,
    collection: Annotated[str | None, Query(description="Only this collection.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    return document_list_body(documents.list(principal, collection, limit, offset))


@router.get("/v1/documents/uploads/{upload_id}")
async def upload_status(upload_id: str, documents: DocumentsDep, principal: PrincipalDep) -> dict[str, Any]:
    task = documents.upload_status(upload_id)
    if not principal.can_read(task.collection):  # same answer as an unknown id: nothing is confirmed
        raise NotFoundError(f"upload {upload_id} does not exist for this API key", param="upload_id")
    return upload_task_body(task)


@router.get("/v1/documents/{document_id}")
async def get_document(document_id: str, documents: DocumentsDep, principal: PrincipalDep) -> dict[str, Any]:
    with _unknown_outside_scope(document_id):
        return document_body(documents.get(document_id, principal))


@router.delete("/v1/documents/{document_id}")
async def delete_document(document_id: str, documents: DocumentsDep, principal: PrincipalDep) -> dict[str, Any]:
    with _unknown_outside_scope(document_id):
        chunks = await documents.delete(document_id, principal)
    return document_deleted_body(document_id, chunks)


@contextmanager
def _unknown_outside_scope(document_id: str) -> Iterator[None]:
    """A document id of a collection the key may not read answers like an unknown id (its existence and collection
    are not confirmed); naming such a collection outright stays a 403."""
    try:
        yield
    except PermissionDeniedError:
        raise NotFoundError(f"document {document_id} does not exist", param="document_id") from None
