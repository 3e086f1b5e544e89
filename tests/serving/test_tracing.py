"""Traces of a chat through the real server (transformers engine on the tiny model, SQLite), exported over OTLP/HTTP
to a receiver started here that decodes the protobuf export requests (opentelemetry-proto). The spans' attributes
are checked against the response itself: its citations, its usage and its `X-Trace-Id`, and the stored chat. Request
ids: echoed, carried by the JSON log records made while the request runs, and stored on its audit row."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import select

from assistant.storage import ChatRecord
from assistant.storage.orm import AuditEvent
from serving.middleware import JsonFormatter, RequestIdFilter
from tests.fixtures.live_server import LiveServer, free_port
from tests.serving.conftest import tiny_settings

DOC = "The lighthouse keeper of Skerry Point logs every passing ship in a green ledger at dusk. " * 3


class Receiver:
    """An OTLP/HTTP traces endpoint: every span received, by name, with its ids and attributes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        receiver.spans.extend(_span(span) for span in scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def trace(self, trace_id: str, names: set[str], timeout: float = 30) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = {s["name"]: s for s in self.spans if s["trace_id"] == trace_id}
            if names <= set(spans):
                return spans
            time.sleep(0.2)
        raise AssertionError(f"spans of {trace_id} received: {sorted(spans)}; expected {sorted(names)}")


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def _span(span: Any) -> dict[str, Any]:
    return {
        "name": span.name,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent": span.parent_span_id.hex(),
        "attributes": {a.key: _value(a.value) for a in span.attributes},
    }


@pytest.fixture(scope="module")
def traced(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Receiver]]:
    from serving.app import create_app

    receiver = Receiver()
    settings = tiny_settings(
        tmp_path_factory.mktemp("traced"),
        tiny_model_dir,
        server={"otlp_endpoint": receiver.url},
        retrieval={"top_k": 2, "relevance_threshold": 0.0},
    )
    settings.engine.backend = "transformers"
    server = LiveServer(create_app(settings)).start()
    uploaded = httpx.post(f"{server.base_url}/v1/documents", files=[("files", ("ledger.txt", DOC.encode()))])
    assert uploaded.status_code == 200, uploaded.text
    yield server, receiver
    server.stop()
    receiver.server.shutdown()


def test_a_chat_produces_its_spans_with_ids_scores_and_tokens(traced: tuple[LiveServer, Receiver]) -> None:
    server, receiver = traced
    ask = {"model": "tiny", "messages": [{"role": "user", "content": "Who logs the ships?"}], "max_tokens": 5}
    response = httpx.post(f"{server.base_url}/v1/chat/completions", json=ask, timeout=120)
    assert response.status_code == 200, response.text
    body, trace_id = response.json(), response.headers["X-Trace-Id"]
    spans = receiver.trace(trace_id, {"chat", "retrieve", "rerank", "prompt_fit", "queue", "generate"})

    root = spans["chat"]
    assert root["parent"] == "" and root["attributes"]["chat.model"] == "tiny"
    for name in ("retrieve", "prompt_fit", "queue", "generate"):
        assert spans[name]["parent"] == root["span_id"], name
    assert spans["rerank"]["parent"] == spans["retrieve"]["span_id"]

    cited = [c["chunk_id"] for c in body["citations"]]
    retrieved = spans["retrieve"]["attributes"]
    assert cited and set(cited) <= set(retrieved["retrieval.chunk_ids"])
    scores = dict(zip(retrieved["retrieval.chunk_ids"], retrieved["retrieval.scores"], strict=True))
    assert [scores[c["chunk_id"]] for c in body["citations"]] == pytest.approx([c["score"] for c in body["citations"]])
    assert spans["prompt_fit"]["attributes"]["prompt.chunk_ids"] == cited
    assert spans["prompt_fit"]["attributes"]["prompt.tokens"] == body["usage"]["prompt_tokens"]
    generated = spans["generate"]["attributes"]
    assert generated["gen.prompt_tokens"] == body["usage"]["prompt_tokens"]
    assert generated["gen.completion_tokens"] == body["usage"]["completion_tokens"] > 0
    assert spans["rerank"]["attributes"]["rerank.model"] == "none"  # no reranker configured: no scores

    with server.state.db.session() as session:  # the stored chat leads to its trace
        assert session.get(ChatRecord, body["id"]).trace_id == trace_id
    assert httpx.get(f"{server.base_url}/v1/chats/{body['id']}", timeout=30).json()["trace_id"] == trace_id


def test_a_streamed_chat_is_traced_to_its_end(traced: tuple[LiveServer, Receiver]) -> None:
    server, receiver = traced
    ask = {"model": "tiny", "messages": [{"role": "user", "content": "Where is the ledger kept?"}], "max_tokens": 4}
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json={**ask, "stream": True}) as stream:
        assert stream.status_code == 200
        trace_id = stream.headers["X-Trace-Id"]
        events = [line for line in stream.iter_lines() if line.startswith("data: ")]
    spans = receiver.trace(trace_id, {"chat", "generate"})
    assert spans["generate"]["parent"] == spans["chat"]["span_id"]
    assert spans["generate"]["attributes"]["gen.completion_tokens"] > 0
    assert events[-1] == "data: [DONE]"


def test_request_ids_reach_the_answer_the_logs_and_the_audit_log(traced: tuple[LiveServer, Receiver]) -> None:
    """Last in this module: it issues the server's first key, after which keys are required."""
    server, _ = traced
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("serving.services.key_service")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # pytest leaves the root at WARNING
    try:
        response = httpx.post(
            f"{server.base_url}/v1/keys", json={"name": "logged"}, headers={"X-Request-Id": "req-trace-0001"}
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert response.status_code == 201 and response.headers["X-Request-Id"] == "req-trace-0001"
    (record,) = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert record["request_id"] == "req-trace-0001" and response.json()["id"] in record["message"]
    assert record["level"] == "INFO" and record["logger"] == "serving.services.key_service"
    with server.state.db.session() as session:
        row = session.scalars(select(AuditEvent).where(AuditEvent.action == "keys.create")).one()
        assert row.request_id == "req-trace-0001"

    hostile = httpx.get(f"{server.base_url}/health/live", headers={"X-Request-Id": "no spaces; " + "x" * 80})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-Id"])  # replaced, not echoed
