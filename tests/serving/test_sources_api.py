"""Directory sources through the real server (vLLM engine, SQLite, FAISS, MiniLM): the admin registers a folder,
sees the dry-run diff, syncs it, edits it, and the server's scheduler follows a file-system event by itself; a member
key is refused everywhere and changes nothing. What the collection holds is checked through `/v1/documents` and
`/v1/retrieve`, against the files written here."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistant.settings import Settings
from tests.fixtures.live_server import LiveServer
from tests.fixtures.teams import ADMIN_KEY, HR_KEY, Snapshot, bearer

COLLECTION = "synced-api"
NOTES = {
    "leave.md": "# Leave\n\nEvery employee gets twenty-six days of paid leave per year, marker kestrel.",
    "travel/trains.txt": "Business travel by train is booked in second class, marker heron.",
    "travel/hotels.txt": "Hotel nights are refunded up to one hundred and ten euros, marker osprey.",
}


def _call(server: LiveServer, method: str, path: str, key: str = ADMIN_KEY, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{server.base_url}{path}", headers=bearer(key), timeout=180, **kwargs)


def _documents(server: LiveServer) -> dict[str, str]:
    """source name -> document id of the collection."""
    body = _call(server, "GET", "/v1/documents", params={"collection": COLLECTION, "limit": 1000}).json()
    return {doc["source"]: doc["id"] for doc in body["data"]}


def _retrieved(server: LiveServer, query: str) -> list[str]:
    body = {"query": query, "collections": [COLLECTION], "k": 3}
    return [hit["text"] for hit in _call(server, "POST", "/v1/retrieve", json=body).json()["data"]]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "handbook"
    for rel, text in NOTES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_admin_syncs_a_folder_and_the_server_follows_its_changes(team_server: LiveServer, folder: Path) -> None:
    hand = [("files", ("hand-notes.txt", b"Uploaded by hand: the canteen serves soup on Fridays."))]
    uploaded = _call(team_server, "POST", "/v1/documents", files=hand, data={"collection": COLLECTION})
    assert uploaded.status_code == 200, uploaded.text
    hand_id = uploaded.json()["data"][0]["document_id"]

    spec = {"path": str(folder), "collection": COLLECTION, "delete": "mirror"}
    created = _call(team_server, "POST", "/v1/sources", json=spec)
    assert created.status_code == 201, created.text
    source = created.json()
    assert (source["object"], source["name"], source["status"], source["last_sync_at"]) == (
        "source",
        "handbook",
        "new",
        None,
    )
    assert sorted(source["preview"]["added"]) == sorted(NOTES) and source["preview"]["dry_run"] is True
    again = _call(team_server, "POST", "/v1/sources", json=spec)
    assert again.status_code == 409 and again.json()["error"]["type"] == "conflict_error"

    dry = _call(team_server, "POST", f"/v1/sources/{source['id']}/sync", json={"dry_run": True})
    assert dry.status_code == 200 and dry.json()["counts"]["added"] == 3
    assert set(_documents(team_server)) == {"hand-notes.txt"}  # the dry run stored nothing

    synced = _call(team_server, "POST", f"/v1/sources/{source['id']}/sync", params={"wait": "true"})
    assert synced.status_code == 200, synced.text
    assert synced.json()["counts"] == {"added": 3, "changed": 0, "deleted": 0, "kept": 0, "unchanged": 0, "failed": 0}
    assert synced.json()["source"]["status"] == "ok" and synced.json()["source"]["last_sync_at"]
    assert set(_documents(team_server)) == {"hand-notes.txt"} | {f"handbook/{rel}" for rel in NOTES}
    assert any("kestrel" in text for text in _retrieved(team_server, "How many days of paid leave?"))

    (folder / "leave.md").write_text("# Leave\n\nEvery employee gets thirty days of paid leave, marker falcon.")
    (folder / "travel/hotels.txt").unlink()
    by_name = _call(team_server, "POST", "/v1/sources/handbook/sync", params={"wait": "true"}).json()  # name as id
    assert (by_name["changed"], by_name["deleted"], by_name["unchanged"]) == (["leave.md"], ["travel/hotels.txt"], 1)
    leave = _retrieved(team_server, "How many days of paid leave?")
    assert any("falcon" in text for text in leave) and not any("kestrel" in text for text in leave)

    # The server's scheduler follows a file-system event (watchdog, debounced) without being asked.
    (folder / "travel/bikes.txt").write_text("Bicycles are reimbursed at thirty cents per kilometre, marker plover.")
    deadline = time.monotonic() + 60
    while "handbook/travel/bikes.txt" not in _documents(team_server):
        assert time.monotonic() < deadline, "the file-system event did not trigger a sync"
        time.sleep(1)
    listed = _call(team_server, "GET", "/v1/sources").json()["data"]
    assert [s["counts"]["added"] for s in listed if s["id"] == source["id"]] == [1]

    removed = _call(team_server, "DELETE", f"/v1/sources/{source['id']}", params={"delete_documents": "true"})
    assert removed.status_code == 200 and removed.json()["documents_deleted"] == 3
    assert _documents(team_server) == {"hand-notes.txt": hand_id}  # the hand upload outlives the source
    assert _call(team_server, "GET", f"/v1/sources/{source['id']}").status_code == 404


def _wait_for_sync(server: LiveServer, source_id: str) -> dict[str, Any]:
    """The source once its background sync has ended (polled through GET, as a client would)."""
    deadline = time.monotonic() + 180
    while (source := _call(server, "GET", f"/v1/sources/{source_id}").json())["syncing"]:
        assert source["status"] == "syncing"
        assert time.monotonic() < deadline, "the background sync did not end"
        time.sleep(0.5)
    return source


def test_a_sync_runs_in_the_background_one_at_a_time(team_server: LiveServer, tmp_path: Path) -> None:
    root = tmp_path / "minutes"
    root.mkdir()
    names = [f"meeting-{i:02d}.txt" for i in range(40)]
    for number, name in enumerate(names):  # enough files that the sync is still running when asked again
        lines = [
            f"Minutes of meeting {number}: item {j} was agreed by the board, marker m{number}x{j}." for j in range(30)
        ]
        (root / name).write_text("\n\n".join(lines))
    spec = {"path": str(root), "collection": "minutes-bg", "name": "minutes"}
    source_id = _call(team_server, "POST", "/v1/sources", json=spec).json()["id"]

    started = _call(team_server, "POST", f"/v1/sources/{source_id}/sync")
    assert started.status_code == 202, started.text
    body = started.json()
    assert (body["object"], body["source_id"], body["status"], body["dry_run"]) == (
        "source.sync",
        source_id,
        "syncing",
        False,
    )
    assert body["source"]["status"] == "syncing" and body["source"]["syncing"] is True
    assert started.headers["location"] == f"/v1/sources/{source_id}"
    for params in ({}, {"wait": "true"}):  # refused while it runs, however asked; it is not queued or joined
        again = _call(team_server, "POST", f"/v1/sources/{source_id}/sync", params=params)
        assert again.status_code == 409, again.text
        assert again.json()["error"]["type"] == "conflict_error" and "being synced" in again.json()["error"]["message"]

    done = _wait_for_sync(team_server, source_id)
    assert done["status"] == "ok" and done["last_error"] is None and done["last_sync_at"]
    assert done["counts"] == {"added": 40, "changed": 0, "deleted": 0, "kept": 0, "unchanged": 0, "failed": 0}
    listed = _call(team_server, "GET", "/v1/documents", params={"collection": "minutes-bg", "limit": 1000}).json()
    assert sorted(doc["source"] for doc in listed["data"]) == [f"minutes/{name}" for name in names]

    waited = _call(team_server, "POST", f"/v1/sources/{source_id}/sync", params={"wait": "true"})
    assert waited.status_code == 200 and waited.json()["unchanged"] == 40 and waited.json()["added"] == []

    shutil.rmtree(root)  # a failing background sync: its error lands on the source
    assert _call(team_server, "POST", f"/v1/sources/{source_id}/sync").status_code == 202
    failed = _wait_for_sync(team_server, source_id)
    assert failed["status"] == "failed" and "not a readable directory" in failed["last_error"]
    assert _call(team_server, "DELETE", f"/v1/sources/{source_id}").status_code == 200


@pytest.mark.parametrize(
    ("spec", "status", "param"),
    [
        ({"path": "/no/such/folder", "collection": COLLECTION}, 422, "path"),
        ({"path": "HERE", "collection": COLLECTION, "delete": "purge"}, 400, "delete"),
        ({"path": "HERE", "collection": "../etc"}, 400, "collection"),
        ({"path": "HERE", "collection": COLLECTION, "interval_s": 1}, 400, "interval_s"),
    ],
)
def test_bad_source_specs_are_refused(
    team_server: LiveServer, folder: Path, spec: dict[str, Any], status: int, param: str
) -> None:
    spec = {**spec, "path": str(folder) if spec["path"] == "HERE" else spec["path"]}
    response = _call(team_server, "POST", "/v1/sources", json=spec)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"].startswith(param)
    names = [s["path"] for s in _call(team_server, "GET", "/v1/sources").json()["data"]]
    assert str(folder) not in names


def test_member_key_is_refused_and_changes_nothing(team_server: LiveServer, folder: Path) -> None:
    spec = {"path": str(folder), "collection": COLLECTION, "name": "member-check"}
    created = _call(team_server, "POST", "/v1/sources", json=spec)
    source_id = created.json()["id"]
    before = Snapshot.take(team_server)
    for method, path, extra in [
        ("POST", "/v1/sources", {"json": {"path": str(folder), "collection": "hr"}}),
        ("GET", "/v1/sources", {}),
        ("GET", f"/v1/sources/{source_id}", {}),
        ("POST", f"/v1/sources/{source_id}/sync", {}),
        ("DELETE", f"/v1/sources/{source_id}", {"params": {"delete_documents": "true"}}),
    ]:
        response = _call(team_server, method, path, key=HR_KEY, **extra)
        assert response.status_code == 403, (method, path, response.text)
        assert "admin" in response.json()["error"]["message"]
    assert Snapshot.take(team_server) == before
    after = _call(team_server, "GET", f"/v1/sources/{source_id}").json()
    assert after["status"] == "new" and after["last_sync_at"] is None
    assert _call(team_server, "DELETE", f"/v1/sources/{source_id}").status_code == 200


# ---------------------------------------------------------------- the scheduler, in-process (no HTTP needed)


def test_scheduler_follows_events_and_intervals_after_the_first_sync(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from assistant.storage.orm import Source
    from ingest.ingest_service import IngestService
    from serving.services.source_service import SourcesService
    from tests.fixtures.retrieval_env import shared_embedder

    settings = Settings(data_dir=tmp_path / "data", sources={"debounce_s": 0.3})
    ingest = IngestService.open(settings, shared_embedder())
    service = SourcesService(settings, ingest.db, lambda: ingest)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The first note: badges are renewed every year.")
    record, preview = asyncio.run(service.create(str(docs), "sched", None, "mirror", 3600.0))
    assert preview.added == ["a.txt"]

    def tick() -> list[str]:
        return asyncio.run(service.tick())

    try:
        assert tick() == []  # never synced: the first sync is run by hand, after its dry run
        assert service.get(record.id).status == "new"
        assert asyncio.run(service.sync(record.id)).added == ["a.txt"]
        tick()  # starts watching the folder (and a catch-up sync once the debounce has passed)
        time.sleep(0.4)
        tick()
        (docs / "b.txt").write_text("The second note: printers are on the second floor.")
        assert tick() == []  # within the debounce: not yet
        time.sleep(0.4)
        assert tick() == [record.id]
        assert service.get(record.id).counts["added"] == 1
        time.sleep(0.4)
        assert tick() == []  # quiet folder, interval not due: nothing
        with ingest.db.session() as session:  # an hour later: the interval is due
            row = session.get(Source, record.id)
            assert row is not None
            row.last_sync_at = datetime.now(UTC) - timedelta(hours=2)
        assert tick() == [record.id] and service.get(record.id).counts["unchanged"] == 2
    finally:
        assert service.watcher is not None
        service.watcher.stop()
        ingest.close()
