"""The audit log on the real vLLM-backed team server: every state-changing call of the role matrix
(tests/serving/test_roles.py), made by each of its five principals, leaves exactly one audit row naming the right
actor, action, target, status and outcome (refusals as 'refused'); `GET /v1/audit` filters and exports them."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from assistant.storage.orm import AuditEvent
from serving.routes.audit import ACTIONS, NOT_AUDITED, WRITE_METHODS
from tests.fixtures.teams import ADMIN_KEY, bearer
from tests.serving.test_roles import PRINCIPALS, ROWS, World, _request, world  # noqa: F401 (the module fixture)

ACTORS = {
    "none": "(no key)",
    "wrong": "(invalid key)",
    "member_out": "eng-team",
    "member_in": "hr-team",
    "admin": "ops",
}
AUDITED = sorted(key for key in ROWS if key[0] in WRITE_METHODS and key not in NOT_AUDITED)


def _last_id(on: World) -> int:
    with on.server.state.db.session() as session:
        return int(session.scalar(select(func.max(AuditEvent.id))) or 0)


def _rows_after(on: World, mark: int) -> list[AuditEvent]:
    with on.server.state.db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.id > mark).order_by(AuditEvent.id)))


def test_the_audited_routes_include_every_admin_action() -> None:
    assert ("POST", "/v1/adapters/{name}/activate") in AUDITED and ("DELETE", "/v1/keys/{key_id}") in AUDITED
    assert len(AUDITED) >= 12


@pytest.mark.parametrize(("method", "path"), AUDITED, ids=[f"{m} {p}" for m, p in AUDITED])
def test_each_call_leaves_exactly_one_row(world: World, method: str, path: str) -> None:  # noqa: F811
    row = ROWS[(method, path)]
    for who in PRINCIPALS:
        call = row.call(world, who)  # may itself make admin calls (a fresh document to delete): before the mark
        mark = _last_id(world)
        response = _request(world, method, path, who, call)
        label = f"{who}: {method} {path}"
        rows = _rows_after(world, mark)
        assert len(rows) == 1, (label, [(r.actor, r.action, r.status, r.target) for r in rows])
        (event,) = rows
        assert (event.actor, event.action, event.status) == (ACTORS[who], ACTIONS[(method, path)], response.status_code)
        expected = (
            "ok" if response.status_code < 400 else ("refused" if response.status_code in (401, 403) else "error")
        )
        assert event.outcome == expected, label
        if who in ("none", "wrong"):
            assert event.outcome == "refused" and event.actor_id is None, label
        if "{" in path:  # the target is the resource the path names
            assert event.target and event.target in response.request.url.path, label
        if response.status_code >= 400:
            assert event.detail["error"] == response.json()["error"]["message"][:300], label


def test_a_forced_activation_is_flagged(world: World) -> None:  # noqa: F811
    mark = _last_id(world)
    world.admin_post("/v1/adapters/team/activate", json={"version": 1, "force": True})
    (event,) = _rows_after(world, mark)
    assert (event.action, event.target, event.detail) == ("adapters.activate", "team", {"version": 1, "force": True})


def test_a_created_key_is_the_target_and_its_secret_is_nowhere(world: World) -> None:  # noqa: F811
    mark = _last_id(world)
    created = world.admin_post("/v1/keys", json={"name": "audited", "tokens_per_day": 10}).json()
    (event,) = _rows_after(world, mark)
    assert event.target == created["id"] and event.detail == {"name": "audited", "tokens_per_day": 10}
    export = httpx.get(f"{world.base}/v1/audit", params={"format": "jsonl", "limit": 100000}, headers=bearer(ADMIN_KEY))
    assert created["key"] not in export.text and created["id"] in export.text


def test_filters_and_exports(world: World) -> None:  # noqa: F811
    started = time.time()
    world.admin_post("/v1/keys", json={"name": "filtered"})
    httpx.post(f"{world.base}/v1/keys", json={"name": "nope"}, headers=bearer(PRINCIPALS["member_in"]))
    url = f"{world.base}/v1/audit"

    def get(**params: Any) -> httpx.Response:
        response = httpx.get(url, params=params, headers=bearer(ADMIN_KEY))
        assert response.status_code == 200, response.text
        return response

    recent = get(since=started, action="keys").json()["data"]
    assert [(e["actor"], e["action"], e["outcome"]) for e in recent] == [
        ("hr-team", "keys.create", "refused"),
        ("ops", "keys.create", "ok"),
    ]  # newest first
    assert [e["actor"] for e in get(since=started, actor="hr-team").json()["data"]] == ["hr-team"]
    assert get(until=started - 3600).json()["data"] == []
    refused = get(outcome="refused", limit=5).json()["data"]
    assert refused and {e["outcome"] for e in refused} == {"refused"}

    everything = get(limit=100000).json()["data"]
    lines = get(limit=100000, format="jsonl").text.splitlines()
    assert [json.loads(line) for line in lines] == everything
    exported = get(limit=100000, format="csv")
    assert exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(int(r["id"]), r["actor"], r["action"], json.loads(r["detail"])) for r in table] == [
        (e["id"], e["actor"], e["action"], e["detail"]) for e in everything
    ]
    bad = httpx.get(url, params={"since": "yesterday"}, headers=bearer(ADMIN_KEY))
    assert bad.status_code == 400 and bad.json()["error"]["param"].endswith("since")


def test_the_table_is_append_only_in_the_database(db_url: str) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import delete, update
    from sqlalchemy.exc import DBAPIError

    from assistant.storage import Database
    from serving.services.audit_service import AuditEntry, AuditFilters, AuditLog

    db = Database(db_url)
    db.migrate()
    log = AuditLog(db)
    log.record(AuditEntry("ops", "keys.create", 201, target="key-1", at=datetime.now(UTC)))
    for statement in (update(AuditEvent).values(actor="someone else"), delete(AuditEvent)):
        with pytest.raises(DBAPIError, match="append-only"), db.session() as session:
            session.execute(statement)
    assert [(e.actor, e.outcome) for e in log.query(AuditFilters())] == [("ops", "ok")]
    db.dispose()
