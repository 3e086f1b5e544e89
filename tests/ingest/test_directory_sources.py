"""Directory sources kept in sync: real files, SQLite, FAISS and the MiniLM embedder (embed calls counted).

After every sync the source's documents are compared with the folder by an independent computation: the SHA-256 of
each file's bytes against the stored document's content hash, and each file's marker word against its chunk text.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from assistant.embedding import Embedder
from assistant.errors import ConflictError, UnprocessableError
from assistant.settings import SourcesSettings
from assistant.storage.orm import Chunk, Document, Source, SourceFile
from ingest.directory_sources import SourceRegistry, SourceSyncer
from ingest.ingest_service import IngestService
from tests.fixtures.retrieval_env import make_settings

ROOT = Path(__file__).resolve().parents[2]
TOPICS = ["backups", "travel", "payroll", "security", "canteen", "parking", "holidays", "laptops", "phones", "badges"]


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.texts = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.embed(texts)


def _marker(rel: str, version: int) -> str:
    return "m" + hashlib.sha256(f"{rel}:{version}".encode()).hexdigest()[:12]


def _write(folder: Path, rel: str, version: int) -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    topic = TOPICS[int(hashlib.sha256(rel.encode()).hexdigest(), 16) % len(TOPICS)]
    path.write_text(f"Policy note {rel} version {version}: the {topic} rule is {_marker(rel, version)}.\n")
    stat = path.stat()  # a distinct mtime even within the file system's timestamp granularity
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + version * 1_000_000_000))


def _folder(tmp_path: Path, count: int) -> tuple[Path, dict[str, int]]:
    folder = tmp_path / "shared-docs"
    versions = {f"{'team-a' if i % 2 else 'team-b'}/note-{i:04d}.txt": 1 for i in range(count)}
    for rel, version in versions.items():
        _write(folder, rel, version)
    return folder, versions


def _stored(service: IngestService, name: str) -> dict[str, tuple[str, str, str]]:
    """rel path -> (document id, content hash, chunk text) of the source's ready documents."""
    with service.db.session() as session:
        rows = session.execute(
            select(Document.id, Document.source, Document.content_hash).where(
                Document.source.startswith(f"{name}/"), Document.status == "ready"
            )
        ).all()
        texts = {
            doc: " ".join(session.scalars(select(Chunk.text).where(Chunk.document_id == doc).order_by(Chunk.ordinal)))
            for doc, _source, _hash in rows
        }
    return {source[len(name) + 1 :]: (doc, digest, texts[doc]) for doc, source, digest in rows}


def _assert_matches(service: IngestService, folder: Path, versions: dict[str, int], kept: dict[str, int]) -> None:
    """The source's documents are exactly the folder's files (+ `kept` ones), each with its current bytes."""
    stored = _stored(service, "shared-docs")
    stored.pop("clash.txt", None)  # the hand upload under a folder file's name (checked by the caller)
    assert set(stored) == set(versions) | set(kept)
    for rel, version in versions.items():
        _doc, digest, text = stored[rel]
        assert digest == hashlib.sha256((folder / rel).read_bytes()).hexdigest(), rel
        assert _marker(rel, version) in text, rel
    for rel, version in kept.items():
        assert _marker(rel, version) in stored[rel][2]
    report = service.check_index()
    assert report.ok, report.summary()


def _hand_upload(service: IngestService) -> tuple[str, list[int]]:
    result = service.ingest_file("handbook.txt", b"The handbook says the office opens at nine.", "team")
    assert result.status == "ingested" and result.document_id
    with service.db.session() as session:
        ids = list(session.scalars(select(Chunk.id).where(Chunk.document_id == result.document_id)))
    return result.document_id, ids


def _round(count: int, policy: str, tmp_path: Path, embedder: Embedder) -> None:
    counting = CountingEmbedder(embedder)
    service = IngestService.open(make_settings(tmp_path / "data"), counting)
    folder, versions = _folder(tmp_path, count)
    hand_id, hand_chunks = _hand_upload(service)
    # A hand upload under the very name a folder file would get: the sync refuses that file and leaves the upload.
    clash = service.ingest_file("shared-docs/clash.txt", b"Uploaded by hand, not from the folder.", "team")
    (folder / "clash.txt").write_text("The folder's own clash file.")
    registry = SourceRegistry(service.settings, service.db)
    source = registry.create(folder, "team", delete_policy=policy)
    syncer = SourceSyncer(registry, service)
    counting.texts = 0

    preview = syncer.plan(source.name)  # the dry run changes nothing
    assert sorted(preview.added) == sorted(versions) and preview.dry_run
    assert [f["path"] for f in preview.failed] == ["clash.txt"]
    assert _stored(service, "shared-docs").keys() == {"clash.txt"} and registry.files(source.id) == {}
    assert registry.get(source.id).status == "new" and counting.texts == 0

    first = syncer.sync(source.name)
    assert first.counts() == {**first.counts(), "added": count, "failed": 1, "deleted": 0}
    assert first.failed[0]["status_code"] == 409 and "left alone" in first.failed[0]["error"]
    _assert_matches(service, folder, versions, kept={})
    stored_ids = {rel: doc for rel, (doc, _h, _t) in _stored(service, "shared-docs").items()}

    counting.texts = 0
    again = syncer.sync(source.id)  # nothing changed: nothing embedded
    assert counting.texts == 0 and again.counts()["unchanged"] == count and again.added == again.changed == []

    rels = sorted(versions)
    edited, touched, removed = rels[0:5], rels[5:8], rels[8:14]
    for rel in edited:
        versions[rel] += 1
        _write(folder, rel, versions[rel])
    for rel in touched:  # same bytes, new mtime: hashed, found unchanged, not embedded
        stat = (folder / rel).stat()
        os.utime(folder / rel, ns=(stat.st_atime_ns, stat.st_mtime_ns + 7_000_000_000))
    gone = {rel: versions.pop(rel) for rel in removed}
    for rel in removed:
        (folder / rel).unlink()
    added = [f"new/added-{i}.txt" for i in range(4)]
    for rel in added:
        versions[rel] = 1
        _write(folder, rel, 1)

    counting.texts = 0
    third = syncer.sync(source.name)
    assert sorted(third.changed) == edited and sorted(third.added) == added
    assert (third.deleted, third.kept) == ((removed, []) if policy == "mirror" else ([], removed))
    assert len(third.unchanged) == count - len(edited) - len(removed)
    assert 0 < counting.texts <= 2 * (len(edited) + len(added))  # only the new versions were embedded
    _assert_matches(service, folder, versions, kept=gone if policy == "keep" else {})
    after = _stored(service, "shared-docs")
    assert all(after[rel][0] == stored_ids[rel] for rel in edited)  # replaced in place: same document ids

    with service.db.session() as session:  # the hand uploads are untouched
        hand = session.get(Document, hand_id)
        assert hand is not None and hand.source == "handbook.txt"
        assert list(session.scalars(select(Chunk.id).where(Chunk.document_id == hand_id))) == hand_chunks
        clashed = session.get(Document, clash.document_id)
        assert (
            clashed is not None
            and clashed.content_hash == hashlib.sha256(b"Uploaded by hand, not from the folder.").hexdigest()
        )
    record = registry.get(source.id)
    assert record.status == "partial" and record.counts == third.counts() and record.last_sync_at is not None
    assert record.errors[0]["path"] == "clash.txt" and not record.syncing
    service.close()


@pytest.mark.parametrize("policy", ["mirror", "keep"])
def test_folder_edits_adds_and_deletes_are_mirrored(policy: str, tmp_path: Path, embedder: Embedder) -> None:
    _round(40, policy, tmp_path, embedder)


@pytest.mark.slow
def test_500_file_folder_stays_in_sync(tmp_path: Path, embedder: Embedder) -> None:
    _round(500, "mirror", tmp_path, embedder)


# ---------------------------------------------------------------- crashes, leases and bad folders


def _child(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.crash_sync", str(data_dir), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.parametrize("step", ["staged", "swapped"])
def test_sync_killed_midway_leaves_old_or_new_version_of_every_file(
    step: str, tmp_path: Path, make_service: Callable[..., IngestService]
) -> None:
    folder, versions = _folder(tmp_path, 20)
    data_dir = tmp_path / "data"
    first = make_service()
    registry = SourceRegistry(first.settings, first.db)
    registry.create(folder, "team")
    first.close()  # the children write the data directory
    child = _child(data_dir, "shared-docs")
    assert child.communicate(timeout=120)[0].startswith("FINISHED")
    old = {rel: hashlib.sha256((folder / rel).read_bytes()).hexdigest() for rel in versions}
    for rel in sorted(versions):  # every file changes, a few leave, a few arrive
        versions[rel] += 1
        _write(folder, rel, versions[rel])
    for rel in sorted(versions)[:3]:
        (folder / rel).unlink()
        del versions[rel]
    for i in range(3):
        versions[f"new/late-{i}.txt"] = 1
        _write(folder, f"new/late-{i}.txt", 1)
    new = {rel: hashlib.sha256((folder / rel).read_bytes()).hexdigest() for rel in versions}

    child = _child(data_dir, "shared-docs", step, "3")  # the third write step: in the second ingest call
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "PAUSED"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    service = make_service()  # recovery on open
    assert service.check_index().ok
    stored = {rel: digest for rel, (_doc, digest, _text) in _stored(service, "shared-docs").items()}
    for rel, digest in old.items():  # every file that was stored still is, as one whole version
        assert stored.get(rel) in (digest, new.get(rel)), rel
    assert any(stored[rel] == new[rel] for rel in new if rel in old)  # the kill came after some replaces
    assert any(stored[rel] == old[rel] for rel in new if rel in old)  # and before others
    report = SourceSyncer(SourceRegistry(service.settings, service.db), service).sync("shared-docs")  # lease taken over
    assert report.counts()["failed"] == 0
    _assert_matches(service, folder, versions, kept={})


def test_one_sync_at_a_time_per_source(tmp_path: Path, service: IngestService) -> None:
    folder, _versions = _folder(tmp_path, 4)
    # A lease of 0.6 s: the running sync's heartbeat must keep it while the sync is held far longer.
    short_lease = service.settings.model_copy(update={"sources": SourcesSettings(lease_s=0.6)})
    registry = SourceRegistry(short_lease, service.db)
    source = registry.create(folder, "team", name="docs")
    inside, release = threading.Event(), threading.Event()

    def hold(step: str) -> None:
        if step == "staged":
            inside.set()
            release.wait(60)

    service.checkpoint = hold
    running = threading.Thread(target=SourceSyncer(registry, service).sync, args=("docs",))
    running.start()
    try:
        assert inside.wait(60)
        time.sleep(2.0)  # over three lease lengths
        assert registry.get("docs").syncing and registry.get("docs").status == "syncing"
        other = SourceSyncer(registry, service)  # another replica: its own owner id, same database
        with pytest.raises(ConflictError, match="being synced"):
            other.sync("docs")
        with pytest.raises(ConflictError):
            other.remove("docs", delete_documents=True)
    finally:
        release.set()
        running.join(60)
    service.checkpoint = lambda step: None
    assert registry.get("docs").status == "ok" and not registry.get("docs").syncing
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with service.db.session() as session:  # a lease left by a dead process of this host is taken over at once
        row = session.get(Source, source.id)
        assert row is not None
        row.lease_owner = f"{os.uname().nodename}:{dead.stdout.strip()}:dead"
        row.lease_until = row.created_at.replace(year=2999)
    assert SourceSyncer(registry, service).sync("docs").counts()["unchanged"] == 4


def test_missing_folder_fails_the_sync_and_deletes_nothing(tmp_path: Path, service: IngestService) -> None:
    folder, versions = _folder(tmp_path, 5)
    registry = SourceRegistry(service.settings, service.db)
    registry.create(folder, "team")
    syncer = SourceSyncer(registry, service)
    syncer.sync("shared-docs")
    folder.rename(tmp_path / "unmounted")
    with pytest.raises(UnprocessableError, match="not a readable directory"):
        syncer.sync("shared-docs")
    record = registry.get("shared-docs")
    assert record.status == "failed" and "not a readable directory" in (record.last_error or "")
    assert len(_stored(service, "shared-docs")) == len(versions) and not record.syncing


def test_bad_files_fail_alone_and_are_not_reparsed_until_changed(tmp_path: Path, embedder: Embedder) -> None:
    counting = CountingEmbedder(embedder)
    service = IngestService.open(make_settings(tmp_path / "data"), counting)
    folder, versions = _folder(tmp_path, 3)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a PDF")
    registry = SourceRegistry(service.settings, service.db)
    registry.create(folder, "team", delete_policy="mirror")
    syncer = SourceSyncer(registry, service)
    first = syncer.sync("shared-docs")
    assert len(first.added) == 4 and [f["path"] for f in first.failed] == ["broken.pdf"]
    assert first.failed[0]["status_code"] in (415, 422)
    counting.texts = 0
    second = syncer.sync("shared-docs")
    assert [f["path"] for f in second.failed] == ["broken.pdf"] and len(second.unchanged) == 3
    assert counting.texts == 0 and registry.get("shared-docs").status == "partial"
    (folder / "broken.pdf").unlink()
    third = syncer.sync("shared-docs")
    assert third.deleted == ["broken.pdf"] and third.failed == [] and registry.get("shared-docs").status == "ok"
    with service.db.session() as session:
        assert session.scalars(select(SourceFile.rel_path).where(SourceFile.rel_path == "broken.pdf")).all() == []
    _assert_matches(service, folder, versions, kept={})


def test_sources_are_refused_outside_allowed_roots_around_the_data_dir_and_twice(tmp_path: Path) -> None:
    from assistant.settings import Settings
    from assistant.storage.db import Database

    folder, _versions = _folder(tmp_path, 1)
    settings = Settings(data_dir=tmp_path / "data", sources={"allowed_roots": [str(tmp_path / "allowed")]})
    (tmp_path / "data").mkdir()
    db = Database(settings.resolved_database_url)
    db.migrate()
    registry = SourceRegistry(settings, db)
    with pytest.raises(UnprocessableError, match=r"outside sources\.allowed_roots"):
        registry.create(folder, "team")
    for around in (tmp_path, tmp_path / "data"):  # would read its own database and index as documents
        with pytest.raises(UnprocessableError, match="data directory"):
            registry.create(around, "team")
    with pytest.raises(UnprocessableError, match="not a directory"):
        registry.create(tmp_path / "nothing-here", "team")
    for unusable in ("~no-such-user-here/docs", "docs\x00evil"):  # raised RuntimeError / ValueError: a 500 before
        with pytest.raises(UnprocessableError, match="not a usable directory path"):
            registry.create(Path(unusable), "team")
    allowed = tmp_path / "allowed" / "docs"
    allowed.mkdir(parents=True)
    record = registry.create(allowed, "team", delete_policy="keep", interval_s=60)
    assert (record.name, record.delete_policy, record.interval_s, record.status) == ("docs", "keep", 60, "new")
    with pytest.raises(ConflictError, match="already synced"):
        registry.create(allowed, "team")
    with pytest.raises(ConflictError, match="already exists"):
        registry.create(allowed, "other", name="docs")
    assert [r.id for r in registry.records()] == [record.id]
