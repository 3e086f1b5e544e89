"""OpenAPI links between operations, so stateful clients and fuzzers (schemathesis) can chain real ids.

Contract: `install_links(app)` makes `app.openapi()` add, to each source operation's response, links naming the
operation that takes the id it returned (a chat completion's `id` -> `GET /v1/chats/{chat_id}`, a queued job's `id`
-> `GET /v1/training/jobs/{job_id}` and its cancel, an uploaded document's id -> `GET`/`DELETE
/v1/documents/{document_id}`). A link whose source or target route does not exist is left out.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

# (source method, source path, status, link name, target method, target path, {parameter: runtime expression})
LINKS: list[tuple[str, str, str, str, str, str, dict[str, str]]] = [
    ("POST", "/v1/chat/completions", "200", "GetChat", "GET", "/v1/chats/{chat_id}", {"chat_id": "$response.body#/id"}),
    ("GET", "/v1/chats", "200", "GetFirstChat", "GET", "/v1/chats/{chat_id}", {"chat_id": "$response.body#/data/0/id"}),
    ("POST", "/v1/documents", "200", "GetDocument", "GET", "/v1/documents/{document_id}",
     {"document_id": "$response.body#/data/0/document_id"}),
    ("POST", "/v1/documents", "200", "DeleteDocument", "DELETE", "/v1/documents/{document_id}",
     {"document_id": "$response.body#/data/0/document_id"}),
    ("GET", "/v1/documents", "200", "GetListedDocument", "GET", "/v1/documents/{document_id}",
     {"document_id": "$response.body#/data/0/id"}),
    ("POST", "/v1/training/jobs", "201", "GetJob", "GET", "/v1/training/jobs/{job_id}",
     {"job_id": "$response.body#/id"}),
    ("POST", "/v1/training/jobs", "201", "CancelJob", "POST", "/v1/training/jobs/{job_id}/cancel",
     {"job_id": "$response.body#/id"}),
]  # fmt: skip


def add_links(schema: dict[str, Any]) -> dict[str, Any]:
    paths = schema.get("paths", {})
    operation_ids = {
        (method.upper(), path): operation.get("operationId")
        for path, item in paths.items()
        for method, operation in item.items()
        if isinstance(operation, dict)
    }
    for method, path, status, name, target_method, target_path, parameters in LINKS:
        target = operation_ids.get((target_method, target_path))
        source = paths.get(path, {}).get(method.lower())
        if target is None or source is None:
            continue
        response = source.setdefault("responses", {}).setdefault(status, {"description": "Successful Response"})
        response.setdefault("links", {})[name] = {"operationId": target, "parameters": parameters}
    return schema


def install_links(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_links(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
