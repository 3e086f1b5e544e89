"""DocumentsService uploads through the pipelined `ingest_files`: inline (200) and background (202) results come back
one per file, in the order sent, a bad file failing alone."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from typing import BinaryIO

from ingest.service import IngestService
from serving.services.documents import DocumentsService
from tests.fixtures.retrieval_env import make_settings, shared_embedder

FILES = [
    ("b.txt", b"The cafeteria opens at eight and closes at three."),
    ("bad.exe", b"\x00\x01"),
    ("a.txt", b"Backups run nightly and are kept for thirty days."),
]


def _received() -> list[tuple[str, BinaryIO]]:
    return [(name, io.BytesIO(data)) for name, data in FILES]


def _documents(tmp_path: Path, sync_limit_bytes: int) -> DocumentsService:
    ingest = IngestService.open(make_settings(tmp_path / "data"), shared_embedder())
    return DocumentsService(ingest, ingest.db, threading.RLock(), sync_limit_bytes)


def test_inline_upload_results_in_order(tmp_path: Path) -> None:
    status, body = asyncio.run(_documents(tmp_path, 10**6).upload(_received(), "c"))
    assert status == 200
    assert [(r["source"], r["status"]) for r in body["data"]] == [
        ("b.txt", "ingested"),
        ("bad.exe", "failed"),
        ("a.txt", "ingested"),
    ]


def test_background_upload_results_in_order(tmp_path: Path) -> None:
    documents = _documents(tmp_path, 0)

    async def run() -> dict[str, object]:
        status, task = await documents.upload(_received(), "c")
        assert status == 202
        while documents.upload_status(task["id"])["state"] != "done":
            await asyncio.sleep(0.1)
        return documents.upload_status(task["id"])

    done = asyncio.run(run())
    assert [(r["source"], r["status"]) for r in done["results"]] == [  # type: ignore[union-attr]
        ("b.txt", "ingested"),
        ("bad.exe", "failed"),
        ("a.txt", "ingested"),
    ]
    assert done["progress"] == 1.0


def test_background_upload_is_read_from_disk_not_from_the_request(tmp_path: Path) -> None:
    documents = _documents(tmp_path, 0)
    received = _received()
    seen: list[list[str]] = []

    async def run() -> dict[str, object]:
        status, task = await documents.upload(received, "c")
        assert status == 202
        for _, handle in received:  # the request's files go away with the request
            handle.close()
        seen.append(sorted(p.name for p in (documents.incoming_dir() / task["id"]).iterdir()))
        while documents.upload_status(task["id"])["state"] != "done":
            await asyncio.sleep(0.1)
        return documents.upload_status(task["id"])

    done = asyncio.run(run())
    assert seen == [["000000", "000001", "000002"]]  # spooled to disk before the response
    assert [r["status"] for r in done["results"]] == ["ingested", "failed", "ingested"]  # type: ignore[union-attr]
    assert list(documents.incoming_dir().iterdir()) == []  # removed once ingested
