"""Hostile uploads through the API: a DOCX zip bomb and an over-long PDF get their 413, a runaway-free adversarial
Markdown line is ingested quickly, and a refused upload changes nothing stored; `/health` shows the worker."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import func, select

from assistant.storage import Chunk, Document
from tests.fixtures.documents import make_pdf
from tests.fixtures.live_server import LiveServer
from tests.ingest.test_hostile_inputs import _zip_bomb_docx


def _stored(server: LiveServer) -> tuple[int, tuple[int, ...], int]:
    with server.state.db.session() as session:
        documents = int(session.scalar(select(func.count(Document.id))) or 0)
        chunk_ids = tuple(session.scalars(select(Chunk.id).order_by(Chunk.id)).all())
    return documents, chunk_ids, len(server.state.documents.ingest.index)


def _upload(server: LiveServer, name: str, data: bytes) -> tuple[int, str, str]:
    """(HTTP status of the file's outcome, error message, file status), inline (200/4xx) or polled (202)."""
    files = [("files", (name, data))]
    response = httpx.post(f"{server.base_url}/v1/documents", files=files, data={"collection": "hostile"}, timeout=120)
    if response.status_code == 202:
        task = response.json()
        for _ in range(600):
            task = httpx.get(f"{server.base_url}/v1/documents/uploads/{task['id']}", timeout=30).json()
            if task["state"] == "done":
                break
            time.sleep(0.1)
        result = task["results"][0]
        return result["status_code"] or 200, result["error"] or "", result["status"]
    if response.status_code == 200:
        return 200, "", response.json()["data"][0]["status"]
    return response.status_code, response.json()["error"]["message"], "failed"


def test_hostile_uploads_are_refused_and_change_nothing(live_server: LiveServer) -> None:
    before = _stored(live_server)
    status, message, _ = _upload(live_server, "bomb.docx", _zip_bomb_docx(210))
    assert status == 413 and "max_archive_mb" in message
    status, message, _ = _upload(live_server, "long.pdf", make_pdf([["page"]] * 2001))
    assert status == 413 and "max_pdf_pages" in message
    assert _stored(live_server) == before


def test_adversarial_heading_line_is_ingested_promptly(live_server: LiveServer) -> None:
    started = time.perf_counter()
    status, message, outcome = _upload(live_server, "spaces.md", ("# a" + " " * 100_000 + "b\n\nBody text.").encode())
    assert status == 200 and outcome in ("ingested", "unchanged"), message
    assert time.perf_counter() - started < 30  # it backtracked for minutes before


def test_health_shows_the_worker(live_server: LiveServer) -> None:
    body = httpx.get(f"{live_server.base_url}/health", timeout=30).json()
    assert set(body["worker"]) == {"running", "pid", "restarts", "last_exit_code"}
    assert body["worker"]["running"] is False  # the test server runs without a worker (training.run_worker: false)
