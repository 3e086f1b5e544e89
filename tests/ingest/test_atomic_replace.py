"""A replace is atomic: killed (SIGKILL) at every write step, or failing (embedding, SQL, disk full), it leaves exactly
one complete version retrievable; and parsing/embedding never hold the lock that retrieval takes."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from assistant.embedding import Embedder
from assistant.parts import make_keyword_search
from assistant.retrieval import Retriever
from assistant.storage import Chunk, Document
from ingest.ingest_service import IngestService
from tests.fixtures.crash_ingest import HashingEmbedder
from tests.fixtures.retrieval_env import make_settings

ROOT = Path(__file__).resolve().parents[2]
V1 = "# Canteen\n\nThe canteen opens at noon on weekdays, alphaversion menu included."
V2 = (
    "# Canteen\n\nThe canteen now opens at eleven, bravoversion menu included.\n\n"
    "# Parking\n\nThe parking garage closes at nine in the evening.\n\n"
    "# Badges\n\nBadges are collected at the front desk on the first day."
)
V1_CHUNKS = ["Canteen\n\nThe canteen opens at noon on weekdays, alphaversion menu included."]
V2_CHUNKS = [
    "Canteen\n\nThe canteen now opens at eleven, bravoversion menu included.",
    "Parking\n\nThe parking garage closes at nine in the evening.",
    "Badges\n\nBadges are collected at the front desk on the first day.",
]
STEPS = {"embedded": V1_CHUNKS, "staged": V1_CHUNKS, "saved_new": V1_CHUNKS, "swapped": V2_CHUNKS, "done": V2_CHUNKS}


def assert_one_version(service: IngestService, expected: list[str]) -> None:
    """Exactly one document, whose chunks are exactly `expected`, all retrievable; index and rows agree."""
    with service.db.session() as session:
        documents = session.scalars(select(Document)).all()
        texts = list(session.scalars(select(Chunk.text).order_by(Chunk.ordinal)).all())
    assert [d.status for d in documents] == ["ready"]
    assert texts == expected
    report = service.check_index()
    assert report.ok and report.chunks == len(expected), report.summary()
    retriever = Retriever(
        service.settings, service.db, service.index, service.embedder, keyword=make_keyword_search(service.db)
    )
    for word in ("alphaversion", "bravoversion"):
        hits = retriever.search(f"{word} menu", k=len(expected), mode="hybrid")
        assert {hit.text for hit in hits} <= set(expected)
        assert any(word in hit.text for hit in hits) == any(word in text for text in expected)


@pytest.mark.parametrize("step", list(STEPS))
def test_sigkill_during_a_replace_leaves_one_complete_version(step: str, tmp_path: Path) -> None:
    path = tmp_path / "canteen.md"
    path.write_text(V1)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.crash_replace", str(tmp_path / "data"), str(path), V2, step],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "PAUSED"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    service = IngestService.open(make_settings(tmp_path / "data", parse_timeout_s=None), HashingEmbedder())
    assert_one_version(service, STEPS[step])
    again = service.ingest_paths([path])  # the file on disk is version 2: a retry converges on it
    assert again.counts() == ({"unchanged": 1} if STEPS[step] is V2_CHUNKS else {"replaced": 1})
    assert_one_version(service, V2_CHUNKS)


@pytest.fixture
def replaced(tmp_path: Path) -> Iterator[tuple[IngestService, Path]]:
    """A hashing-embedder service holding version 1 of canteen.md (the file now holds version 2)."""
    service = IngestService.open(make_settings(tmp_path / "data", parse_timeout_s=None), HashingEmbedder())
    path = tmp_path / "canteen.md"
    path.write_text(V1)
    assert service.ingest_paths([path]).counts() == {"ingested": 1}
    path.write_text(V2)
    yield service, path


def _fails_on(service: IngestService, statement: str) -> Callable[[], None]:
    """Make every SQL statement starting with `statement` raise a real DBAPI-level error; returns the undo."""

    def listener(conn: object, cursor: object, sql: str, *args: object) -> None:
        if sql.lstrip().upper().startswith(statement):
            raise OperationalError(sql, {}, Exception("disk I/O error (injected)"))

    event.listen(service.db.engine, "before_cursor_execute", listener)
    return lambda: event.remove(service.db.engine, "before_cursor_execute", listener)


@pytest.mark.parametrize("failure", ["embedding", "sql_stage", "sql_swap", "disk_full"])
def test_a_failing_replace_keeps_the_old_version(failure: str, replaced: tuple[IngestService, Path]) -> None:
    service, path = replaced
    undo: Callable[[], None] = lambda: None  # noqa: E731
    if failure == "embedding":
        real = service.embedder.embed
        service.embedder.embed = lambda texts: (_ for _ in ()).throw(RuntimeError("CUDA out of memory"))  # type: ignore[method-assign]
        undo = lambda: setattr(service.embedder, "embed", real)  # noqa: E731
    elif failure == "sql_stage":
        undo = _fails_on(service, "INSERT INTO CHUNKS")
    elif failure == "sql_swap":
        undo = _fails_on(service, "UPDATE CHUNKS SET DOCUMENT_ID")
    else:
        real_save = service.index.save

        def full() -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        service.index.save = full  # type: ignore[method-assign]
        undo = lambda: setattr(service.index, "save", real_save)  # noqa: E731
    report = service.ingest_paths([path])
    undo()
    assert report.counts() == {"failed": 1} and report.files[0].status_code == 422
    assert_one_version(service, V1_CHUNKS)
    reopened = IngestService.open(service.settings, service.embedder)  # the saved file agrees with the rows too
    assert_one_version(reopened, V1_CHUNKS)
    assert reopened.ingest_paths([path]).counts() == {"replaced": 1}
    assert_one_version(reopened, V2_CHUNKS)


class SlowEmbedder:
    """The real embedder, but `embed` blocks until released once `slow` is set (signalling that it started)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.dim, self.max_tokens = inner.dim, inner.max_tokens
        self.slow, self.started, self.release = False, threading.Event(), threading.Event()

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.slow:
            self.started.set()
            self.release.wait(timeout=60)
        return self.inner.embed(texts)


def test_retrieval_is_not_blocked_while_an_upload_embeds(tmp_path: Path, embedder: Embedder) -> None:
    from assistant.index.locking import IndexLock
    from serving.services.document_service import DocumentsService

    lock = IndexLock()
    slow = SlowEmbedder(embedder)
    service = IngestService.open(make_settings(tmp_path / "data"), slow)
    DocumentsService(service, service.db, lock, sync_limit_bytes=2**20)
    assert service.write_lock is lock  # the serving layer's index lock is the ingest write lock
    assert service.ingest_file("kept.md", V1.encode()).ok
    retriever = Retriever(service.settings, service.db, service.index, slow, keyword=make_keyword_search(service.db))
    slow.slow = True
    upload = threading.Thread(target=service.ingest_file, args=("new.md", V2.encode(), "default"))
    upload.start()
    try:
        assert slow.started.wait(timeout=60)
        began = time.perf_counter()
        with lock.read():  # what RetrievalService does around a search
            hits = retriever.search("canteen noon", k=1, mode="bm25")
        waited = time.perf_counter() - began
    finally:
        slow.release.set()
        upload.join(timeout=60)
    assert waited < 1.0, f"retrieval waited {waited:.2f} s behind the upload"
    assert hits and "alphaversion" in hits[0].text
    assert len(service.index) == 1 + len(V2_CHUNKS)
