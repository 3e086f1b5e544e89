"""Roles and collection scopes on every route, on the real vLLM-backed server shared by two teams and an admin.

Every route of the app is walked: it must declare its access exactly once (serving/access.py), and is called by five
principals: no key, a wrong key, a member inside the scope of the resource (`hr` key on `hr` data), a member outside
it (`eng` key on `hr` data) and the admin. A refused call must change nothing stored (documents, chunk ids, index size,
pairs, registry, jobs, chats, feedback, uploaded files) and must not carry the other team's text. Routes added later
without a row in `ROWS` still get the generic checks of their declared level.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from assistant.errors import ConfigError
from assistant.settings import Settings
from serving.access import Access, allow, check_declared, route_access
from serving.app import create_app
from tests.fixtures.live_server import LiveServer
from tests.fixtures.teams import ADMIN_KEY, ENG_KEY, HR_KEY, HR_SECRET, WRONG_KEY, Snapshot, bearer

PRINCIPALS = {"none": None, "wrong": WRONG_KEY, "member_out": ENG_KEY, "member_in": HR_KEY, "admin": ADMIN_KEY}
SECRET_WORDS = ("ninety thousand", "Salary bands")
HR_QUESTION = [{"role": "user", "content": "What are the salary bands for grade seven?"}]


def _app_routes() -> list[tuple[str, str]]:
    app = create_app(Settings())
    return sorted((m, r.path) for r in app.routes for m in (getattr(r, "methods", None) or {"GET"}) if m != "HEAD")


# ---------------------------------------------------------------- declarations


def test_every_route_declares_its_access_once() -> None:
    app = create_app(Settings())
    undeclared = [r.path for r in app.routes if len(route_access(r, app)) != 1]
    assert undeclared == []
    levels = {r.path: route_access(r, app)[0] for r in app.routes}
    assert levels["/health"] is Access.PUBLIC and levels["/v1/chat/completions"] is Access.MEMBER
    assert levels["/v1/training/jobs"] is Access.ADMIN and levels["/metrics"] is Access.ADMIN


def test_a_route_without_declaration_refuses_to_start() -> None:
    app = create_app(Settings())
    extra = APIRouter()

    @extra.get("/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    doubled = APIRouter(dependencies=[allow(Access.MEMBER)])

    @doubled.get("/v1/twice", dependencies=[allow(Access.ADMIN)])
    async def twice() -> dict[str, str]:
        return {}

    app.include_router(extra)
    app.include_router(doubled)
    with pytest.raises(ConfigError) as caught:
        check_declared(app)
    assert "GET /v1/forgotten" in caught.value.message and "GET /v1/twice" in caught.value.message
    mounted = FastAPI()
    mounted.mount("/static", FastAPI())
    with pytest.raises(ConfigError, match="/static"):
        check_declared(mounted)


# ---------------------------------------------------------------- the world the matrix runs in


@dataclass
class World:
    server: LiveServer
    hr_doc: str
    hr_chat: str
    eng_chat: str
    hr_upload: str
    file_id: str
    job_id: str
    made: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.server.base_url

    def admin_post(self, path: str, **kwargs: Any) -> httpx.Response:
        response = httpx.post(f"{self.base}{path}", headers=bearer(ADMIN_KEY), timeout=120, **kwargs)
        assert response.status_code < 300, response.text
        return response

    def fresh_hr_doc(self, name: str) -> str:
        words = " ".join(hashlib.sha256(f"{name}{i}".encode()).hexdigest()[:8] for i in range(12))
        files = [("files", (f"{name}.txt", f"Throwaway note {name}: {words}.".encode()))]
        response = self.admin_post("/v1/documents", files=files, data={"collection": "hr"})
        return str(response.json()["data"][0]["document_id"])

    def fresh_job(self) -> str:
        data = {"source": "file", "file_id": self.file_id}
        spec = {"method": "sft", "data": data, "hyperparameters": {"max_steps": 1}}
        return str(self.admin_post("/v1/training/jobs", json=spec).json()["id"])


def _chat(server: LiveServer, key: str, collection: str) -> str:
    body = {"model": "tiny", "messages": HR_QUESTION, "max_tokens": 3, "temperature": 0, "collections": [collection]}
    response = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, headers=bearer(key), timeout=120)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


TRAIN_JSONL = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


@pytest.fixture(scope="module")
def world(team_server: LiveServer) -> World:
    base = team_server.base_url
    docs = httpx.get(f"{base}/v1/documents", params={"collection": "hr"}, headers=bearer(ADMIN_KEY)).json()["data"]
    big = [("files", ("hr-large.txt", (HR_SECRET + "\n") * 1200))]  # over sync_upload_mb: a background upload
    upload = httpx.post(f"{base}/v1/documents", files=big, data={"collection": "hr"}, headers=bearer(ADMIN_KEY))
    assert upload.status_code == 202, upload.text
    files = {"file": ("train.jsonl", TRAIN_JSONL)}
    file_id = httpx.post(f"{base}/v1/training/files", files=files, headers=bearer(ADMIN_KEY)).json()["id"]
    world = World(
        team_server,
        hr_doc=docs[0]["id"],
        hr_chat=_chat(team_server, HR_KEY, "hr"),
        eng_chat=_chat(team_server, ENG_KEY, "eng"),
        hr_upload=upload.json()["id"],
        file_id=file_id,
        job_id="",
    )
    world.job_id = world.fresh_job()
    deadline = time.monotonic() + 300
    while _upload_state(world) != "done":  # the refused calls compare stored state: nothing may still be writing
        assert time.monotonic() < deadline, "background upload did not finish"
        time.sleep(0.5)
    return world


def _upload_state(world: World) -> str:
    url = f"{world.base}/v1/documents/uploads/{world.hr_upload}"
    return str(httpx.get(url, headers=bearer(ADMIN_KEY)).json()["state"])


# ---------------------------------------------------------------- the matrix

Call = dict[str, Any]  # httpx.request keyword arguments besides method/url/headers; "path" replaces the route path


@dataclass
class Row:
    """How to call one route, and what each principal must get (status per principal; member_out defaults to
    403 when the level is admin or the call names another team's collection)."""

    call: Callable[[World, str], Call]
    statuses: dict[str, int]
    check: Callable[[World, str, httpx.Response], None] | None = None


def _no_hr_chat(world: World, who: str, response: httpx.Response) -> None:
    ids = {c["id"] for c in response.json()["data"]}
    assert (world.hr_chat in ids) == (who == "member_in"), (who, ids)
    assert (world.eng_chat in ids) == (who == "member_out")


def _me(world: World, who: str, response: httpx.Response) -> None:
    expected = {
        "member_in": ("hr-team", "member", ["hr"]),
        "member_out": ("eng-team", "member", ["eng"]),
        "admin": ("ops", "admin", None),
    }[who]
    body = response.json()
    assert (body["name"], body["role"], body["collections"]) == expected and body["authenticated"] is True


def _hr_chat_shown(world: World, who: str, response: httpx.Response) -> None:
    body = response.json()
    assert body["id"] == world.hr_chat and body["messages"] == HR_QUESTION
    assert body["title"] == HR_QUESTION[0]["content"] and {c["collection"] for c in body["citations"]} == {"hr"}


def _cited_hr(world: World, who: str, response: httpx.Response) -> None:
    assert {c["collection"] for c in response.json()["citations"]} == {"hr"}


def _retrieved_hr(world: World, who: str, response: httpx.Response) -> None:
    hits = response.json()["data"]
    assert hits and {h["collection"] for h in hits} == {"hr"}


def _deleted(world: World, who: str, response: httpx.Response) -> None:
    doc = response.json()["id"]
    gone = httpx.get(f"{world.base}/v1/documents/{doc}", headers=bearer(ADMIN_KEY))
    assert gone.status_code == 404


def _metrics(world: World, who: str, response: httpx.Response) -> None:
    assert "assistant_http_requests_total" in response.text


def _upload_doc(world: World, who: str) -> Call:
    words = " ".join(hashlib.sha256(f"{who}{i}".encode()).hexdigest()[:8] for i in range(12))
    files = [("files", (f"{who}-upload.txt", f"Upload by {who}: the canteen opens at noon. {words}".encode()))]
    return {"files": files, "data": {"collection": "hr"}}


def _delete_target(world: World, who: str) -> Call:
    doc = world.fresh_hr_doc(f"delete-{who}") if who in ("member_in", "admin") else world.hr_doc
    return {"path": f"/v1/documents/{doc}"}


def _cancel_target(world: World, who: str) -> Call:
    return {"path": f"/v1/training/jobs/{world.fresh_job() if who == 'admin' else world.job_id}/cancel"}


def _rollback_target(world: World, who: str) -> Call:
    if who == "admin":  # an earlier active version must exist to roll back to
        for version in (1, 2):
            world.admin_post("/v1/adapters/team/activate", json={"version": version})
    return {}


PAIRS_JSONL = b'{"prompt": "Which team?", "chosen": "Platform.", "rejected": "No idea."}\n'
MEMBER_OK = {"member_in": 200, "member_out": 200, "admin": 200}
SCOPED = {"member_in": 200, "member_out": 403, "admin": 200}
ADMIN_ONLY = {"member_in": 403, "member_out": 403, "admin": 200}

ROWS: dict[tuple[str, str], Row] = {
    ("GET", "/v1/models"): Row(lambda w, p: {}, MEMBER_OK),
    ("POST", "/v1/chat/completions"): Row(
        lambda w, p: {"json": {"model": "tiny", "messages": HR_QUESTION, "max_tokens": 2, "collections": ["hr"]}},
        SCOPED,
        _cited_hr,
    ),
    ("GET", "/v1/me"): Row(lambda w, p: {}, MEMBER_OK, _me),
    ("GET", "/v1/chats"): Row(lambda w, p: {}, MEMBER_OK, _no_hr_chat),
    ("GET", "/v1/chats/{chat_id}"): Row(
        lambda w, p: {"path": f"/v1/chats/{w.hr_chat}"}, {**SCOPED, "member_out": 404}, _hr_chat_shown
    ),
    ("POST", "/v1/documents"): Row(_upload_doc, SCOPED),
    ("GET", "/v1/documents"): Row(lambda w, p: {"params": {"collection": "hr"}}, SCOPED),
    ("GET", "/v1/documents/uploads/{upload_id}"): Row(
        lambda w, p: {"path": f"/v1/documents/uploads/{w.hr_upload}"}, {**SCOPED, "member_out": 404}
    ),
    ("GET", "/v1/documents/{document_id}"): Row(lambda w, p: {"path": f"/v1/documents/{w.hr_doc}"}, SCOPED),
    ("DELETE", "/v1/documents/{document_id}"): Row(_delete_target, SCOPED, _deleted),
    ("POST", "/v1/retrieve"): Row(
        lambda w, p: {"json": {"query": "salary bands", "collections": ["hr"]}}, SCOPED, _retrieved_hr
    ),
    ("POST", "/v1/feedback"): Row(
        lambda w, p: {"json": {"response_id": w.hr_chat, "rating": 1}}, {**SCOPED, "member_out": 404}
    ),
    ("POST", "/v1/preferences"): Row(lambda w, p: {"files": {"file": ("p.jsonl", PAIRS_JSONL)}}, ADMIN_ONLY),
    ("GET", "/v1/preferences"): Row(lambda w, p: {}, ADMIN_ONLY),
    ("GET", "/v1/adapters"): Row(lambda w, p: {}, ADMIN_ONLY),
    ("POST", "/v1/adapters/{name}/activate"): Row(
        lambda w, p: {"path": "/v1/adapters/team/activate", "json": {"version": 1}}, ADMIN_ONLY
    ),
    ("POST", "/v1/adapters/{name}/rollback"): Row(
        lambda w, p: {**_rollback_target(w, p), "path": "/v1/adapters/team/rollback"}, ADMIN_ONLY
    ),
    ("POST", "/v1/training/files"): Row(lambda w, p: {"files": {"file": ("t.jsonl", TRAIN_JSONL)}}, ADMIN_ONLY),
    ("POST", "/v1/training/jobs"): Row(
        lambda w, p: {"json": {"method": "sft", "data": {"source": "file", "file_id": w.file_id}}},
        {**ADMIN_ONLY, "admin": 201},
    ),
    ("GET", "/v1/training/jobs"): Row(lambda w, p: {}, ADMIN_ONLY),
    ("GET", "/v1/training/jobs/{job_id}"): Row(lambda w, p: {"path": f"/v1/training/jobs/{w.job_id}"}, ADMIN_ONLY),
    ("POST", "/v1/training/jobs/{job_id}/cancel"): Row(_cancel_target, ADMIN_ONLY),
    ("GET", "/metrics"): Row(lambda w, p: {}, ADMIN_ONLY, _metrics),
}
ROUTES = _app_routes()


def _request(world: World, method: str, path: str, who: str, call: Call) -> httpx.Response:
    url = world.base + call.pop("path", path.replace("{", "").replace("}", ""))
    return httpx.request(method, url, headers=bearer(PRINCIPALS[who]), timeout=120, **call)


def _assert_refused(world: World, response: httpx.Response, status: int, before: Snapshot, label: str) -> None:
    assert response.status_code == status, (label, response.text)
    error = response.json()["error"]
    assert error["type"] == {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}[status]
    assert not any(word in response.text for word in SECRET_WORDS), label
    assert Snapshot.take(world.server) == before, f"{label} changed stored state"


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_role_matrix(world: World, method: str, path: str) -> None:
    app = world.server.app
    route = next(r for r in app.routes if r.path == path and method in (getattr(r, "methods", None) or {"GET"}))
    (level,) = route_access(route, app)
    row = ROWS.get((method, path))
    if level is Access.PUBLIC:
        for who in PRINCIPALS:
            response = _request(world, method, path, who, {})
            assert response.status_code == 200 and not any(w in response.text for w in SECRET_WORDS), (who, path)
        return
    for who in ("none", "wrong", "member_out", "member_in", "admin"):
        label = f"{who}: {method} {path}"
        before = Snapshot.take(world.server)
        call = row.call(world, who) if row else {}
        response = _request(world, method, path, who, call)
        if who in ("none", "wrong"):
            _assert_refused(world, response, 401, before, label)
            continue
        if row is None:  # a route added later: its declared level must hold, whatever the (empty) request does
            refused = level is Access.ADMIN and who != "admin"
            assert (response.status_code == 403) == refused and response.status_code not in (401, 500), label
            continue
        expected = row.statuses[who]
        if expected in (403, 404):
            _assert_refused(world, response, expected, before, label)
            continue
        assert response.status_code == expected, (label, response.text)
        if who == "member_out":  # allowed but unscoped (models, me, own chats): still nothing of hr
            assert not any(word in response.text for word in SECRET_WORDS), label
        if row.check is not None:
            row.check(world, who, response)


def test_matrix_rows_name_real_routes() -> None:
    assert set(ROWS) <= set(ROUTES), set(ROWS) - set(ROUTES)
