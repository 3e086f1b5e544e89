"""DocumentsService uploads through the pipelined `ingest_files`: inline (200) and background (202) results come back
one per file, in the order sent, a bad file failing alone; a file over `ingest.max_file_mb` is refused by the one size
check, unread, with the same message in a batch as alone."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from ingest.ingest_service import IngestService
from ingest.results import FileResult
from serving.services.document_service import DocumentsService, InlineUpload, UploadFailed, UploadTask
from tests.fixtures.retrieval_env import make_settings, shared_embedder

FILES = [
    ("b.txt", b"The cafeteria opens at eight and closes at three."),
    ("bad.exe", b"\x00\x01"),
    ("a.txt", b"Backups run nightly and are kept for thirty days."),
]


def _received() -> list[tuple[str, BinaryIO]]:
    return [(name, io.BytesIO(data)) for name, data in FILES]


def _documents(tmp_path: Path, sync_limit_bytes: int, **ingest_options: Any) -> DocumentsService:
    ingest = IngestService.open(make_settings(tmp_path / "data", **ingest_options), shared_embedder())
    return DocumentsService(ingest, ingest.db, threading.RLock(), sync_limit_bytes)


async def _finished(documents: DocumentsService, task: UploadTask) -> UploadTask:
    while documents.upload_status(task.id).state != "done":
        await asyncio.sleep(0.1)
    return documents.upload_status(task.id)


def test_inline_upload_results_in_order(tmp_path: Path) -> None:
    upload = asyncio.run(_documents(tmp_path, 10**6).upload(_received(), "c"))
    assert isinstance(upload, InlineUpload)
    assert [(r.source, r.status) for r in upload.results] == [
        ("b.txt", "ingested"),
        ("bad.exe", "failed"),
        ("a.txt", "ingested"),
    ]


def test_background_upload_results_in_order(tmp_path: Path) -> None:
    documents = _documents(tmp_path, 0)

    async def run() -> UploadTask:
        task = await documents.upload(_received(), "c")
        assert isinstance(task, UploadTask)
        return await _finished(documents, task)

    done = asyncio.run(run())
    assert [(r.source, r.status) for r in done.results] == [
        ("b.txt", "ingested"),
        ("bad.exe", "failed"),
        ("a.txt", "ingested"),
    ]
    assert done.progress == 1.0


def test_background_upload_is_read_from_disk_not_from_the_request(tmp_path: Path) -> None:
    documents = _documents(tmp_path, 0)
    received = _received()
    seen: list[list[str]] = []

    async def run() -> UploadTask:
        task = await documents.upload(received, "c")
        assert isinstance(task, UploadTask)
        for _, handle in received:  # the request's files go away with the request
            handle.close()
        seen.append(sorted(p.name for p in (documents.incoming_dir() / task.id).iterdir()))
        return await _finished(documents, task)

    done = asyncio.run(run())
    assert seen == [["000000", "000001", "000002"]]  # spooled to disk before the response
    assert [r.status for r in done.results] == ["ingested", "failed", "ingested"]
    assert list(documents.incoming_dir().iterdir()) == []  # removed once ingested


class _Unreadable(io.BytesIO):
    """A received file that must not be read (its size alone refuses it)."""

    def read(self, size: int | None = -1) -> bytes:
        raise AssertionError("an oversized file was read")


def _oversized() -> tuple[str, BinaryIO]:
    return "big.txt", _Unreadable(b"x" * 30_000)  # over ingest.max_file_mb = 0.02 (20 971 bytes)


def _size_message(result: FileResult) -> str | None:
    assert (result.status, result.status_code) == ("failed", 413)
    return result.error


def test_an_oversized_file_is_refused_unread_with_one_message(tmp_path: Path) -> None:
    """Alone it is a 413 at once (even when big enough for the background); in a batch, inline or in the background,
    it fails alone, unread and not spooled, with the same message, and the other files are stored."""
    expected = "big.txt is 0.0 MB; the limit is 0.02 MB (ingest.max_file_mb)"
    with pytest.raises(UploadFailed) as alone:
        asyncio.run(_documents(tmp_path / "alone", 0, max_file_mb=0.02).upload([_oversized()], "c"))
    assert (alone.value.status_code, alone.value.message) == (413, f"big.txt: {expected}")

    inline = asyncio.run(
        _documents(tmp_path / "inline", 10**6, max_file_mb=0.02).upload([*_received(), _oversized()], "c")
    )
    assert isinstance(inline, InlineUpload)
    assert [r.status for r in inline.results] == ["ingested", "failed", "ingested", "failed"]
    assert _size_message(inline.results[3]) == expected

    documents = _documents(tmp_path / "background", 0, max_file_mb=0.02)

    async def background() -> tuple[list[str], UploadTask]:
        task = await documents.upload([_oversized(), *_received()], "c")
        assert isinstance(task, UploadTask)
        spooled = sorted(p.name for p in (documents.incoming_dir() / task.id).iterdir())
        return spooled, await _finished(documents, task)

    spooled, done = asyncio.run(background())
    assert spooled == ["000001", "000002", "000003"]  # the oversized file (000000) was never copied
    assert [r.status for r in done.results] == ["failed", "ingested", "failed", "ingested"]
    assert _size_message(done.results[0]) == expected
