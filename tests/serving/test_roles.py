"""Roles and collection scopes on every route, on the real vLLM-backed server shared by two teams and an admin.

Every route of the app is walked: it must declare its access exactly once (serving/access.py), and is called by five
principals: no key, a wrong key, a member inside the scope of the resource (`hr` key on `hr` data), a member outside
it (`eng` key on `hr` data) and the admin. A refused call must change nothing stored (documents, chunk ids, index size,
pairs, registry, jobs, chats, feedback, uploaded files) and must not carry the other team's text. Routes added later
without a row in `ROWS` still get the generic checks of their declared level.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
        spec = {"method": "sft", "data": data, "hyperparameters": {"max_steps": 1, "lora_r": 8}}  # engine.max_lora_rank
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


def _key_target(world: World, who: str, suffix: str = "") -> Call:
    """A fresh issued key for the admin to revoke or rotate; an existing one for the refused callers."""
    key = world.admin_post("/v1/keys", json={"name": f"matrix-{who}"}).json()
    return {"path": f"/v1/keys/{key['id']}{suffix}"}


def _key_changed(world: World, who: str, response: httpx.Response) -> None:
    body = response.json()
    assert body["object"] == "api_key" and (body["status"] == "revoked") == ("key" not in body)


def _audit_listed(world: World, who: str, response: httpx.Response) -> None:
    events = response.json()["data"]
    assert events and {e["action"].split(".")[0] for e in events} == {"documents"}


def _source_folder() -> str:
    folder = Path(tempfile.mkdtemp(prefix="roles-source-"))
    (folder / "note.txt").write_text("A synced note: the canteen opens at noon.")
    return str(folder)


def _source_path(world: World, who: str, suffix: str = "") -> Call:
    """A fresh source (registered by the admin, never synced) for the call to name."""
    source = world.admin_post("/v1/sources", json={"path": _source_folder(), "collection": "roles-sources"}).json()
    return {"path": f"/v1/sources/{source['id']}{suffix}"}


SMALL_RANK = {"hyperparameters": {"lora_r": 8}}  # within the team server's engine.max_lora_rank
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
    ("GET", "/v1/documents/{document_id}"): Row(
        lambda w, p: {"path": f"/v1/documents/{w.hr_doc}"}, {**SCOPED, "member_out": 404}
    ),
    ("DELETE", "/v1/documents/{document_id}"): Row(_delete_target, {**SCOPED, "member_out": 404}, _deleted),
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
        lambda w, p: {"json": {"method": "sft", "data": {"source": "file", "file_id": w.file_id}, **SMALL_RANK}},
        {**ADMIN_ONLY, "admin": 201},
    ),
    ("GET", "/v1/training/jobs"): Row(lambda w, p: {}, ADMIN_ONLY),
    ("GET", "/v1/training/jobs/{job_id}"): Row(lambda w, p: {"path": f"/v1/training/jobs/{w.job_id}"}, ADMIN_ONLY),
    ("POST", "/v1/training/jobs/{job_id}/cancel"): Row(_cancel_target, ADMIN_ONLY),
    ("POST", "/v1/sources"): Row(
        lambda w, p: {"json": {"path": _source_folder(), "collection": "roles-sources"}}, {**ADMIN_ONLY, "admin": 201}
    ),
    ("GET", "/v1/sources"): Row(lambda w, p: {}, ADMIN_ONLY),
    ("GET", "/v1/sources/{source_id}"): Row(_source_path, ADMIN_ONLY),
    ("POST", "/v1/sources/{source_id}/sync"): Row(
        lambda w, p: {**_source_path(w, p, "/sync"), "json": {"dry_run": True}}, ADMIN_ONLY
    ),
    ("DELETE", "/v1/sources/{source_id}"): Row(_source_path, ADMIN_ONLY),
    ("GET", "/metrics"): Row(lambda w, p: {}, ADMIN_ONLY, _metrics),
    ("POST", "/v1/keys"): Row(lambda w, p: {"json": {"name": f"matrix-{p}"}}, {**ADMIN_ONLY, "admin": 201}),
    ("GET", "/v1/keys"): Row(lambda w, p: {}, ADMIN_ONLY),
    ("GET", "/v1/audit"): Row(lambda w, p: {"params": {"action": "documents"}}, ADMIN_ONLY, _audit_listed),
    ("DELETE", "/v1/keys/{key_id}"): Row(_key_target, ADMIN_ONLY, _key_changed),
    ("POST", "/v1/keys/{key_id}/rotate"): Row(lambda w, p: _key_target(w, p, "/rotate"), ADMIN_ONLY, _key_changed),
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


# ---------------------------------------------------------------- scopes and hostile inputs on the live server


def _post(world: World, path: str, key: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{world.base}{path}", headers=bearer(key), timeout=120, **kwargs)


def test_unscoped_requests_of_a_member_stay_in_its_collections(world: World) -> None:
    query = {"query": "How do I reset the router, and what are the salary bands for grade seven?", "k": 20}
    hits = _post(world, "/v1/retrieve", ENG_KEY, json=query).json()["data"]
    assert hits and {h["collection"] for h in hits} == {"eng"}
    chat = {"model": "tiny", "messages": HR_QUESTION, "max_tokens": 2}
    body = _post(world, "/v1/chat/completions", ENG_KEY, json=chat).json()
    assert {c["collection"] for c in body["citations"]} <= {"eng"}
    assert not any(word in str(body["sources"]) for word in SECRET_WORDS)
    listing = httpx.get(f"{world.base}/v1/documents", headers=bearer(ENG_KEY)).json()["data"]
    assert listing and {d["collection"] for d in listing} == {"eng"}


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/retrieve", {"query": "salary", "collections": []}, "collections"),
        ("/v1/chat/completions", {"model": "tiny", "messages": HR_QUESTION, "collections": []}, "collections"),
        (
            "/v1/chat/completions",
            {"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
            "messages.0.content",
        ),
    ],
)
def test_empty_scopes_and_null_text_are_400(world: World, path: str, body: dict[str, Any], param: str) -> None:
    before = Snapshot.take(world.server)
    response = _post(world, path, ENG_KEY, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"].startswith(param)
    assert Snapshot.take(world.server) == before


def test_feedback_only_on_own_responses_and_pairs_record_collections(world: World) -> None:
    hr_chat = _chat(world.server, HR_KEY, "hr")
    other = _post(world, "/v1/feedback", ENG_KEY, json={"response_id": hr_chat, "rating": -1, "correction": "No."})
    assert other.status_code == 404
    own = _post(world, "/v1/feedback", HR_KEY, json={"response_id": hr_chat, "rating": -1, "correction": "Ask HR."})
    assert own.status_code == 200, own.text
    made = own.json()["preference_pairs"]  # the correction's pair (and one per opposite rating of the same prompt)
    pairs = httpx.get(f"{world.base}/v1/preferences", headers=bearer(ADMIN_KEY), params={"provenance": "feedback"})
    pair = next(p for p in pairs.json()["data"] if p["id"] in made and p["chosen"] == "Ask HR.")
    assert pair["collections"] == ["hr"]
    assert httpx.get(f"{world.base}/v1/preferences", headers=bearer(HR_KEY)).status_code == 403


def test_chats_listing_for_admin_everyone_and_member_refused(world: World) -> None:
    everyone = httpx.get(f"{world.base}/v1/chats", headers=bearer(ADMIN_KEY), params={"all": "true", "limit": 200})
    ids = {c["id"] for c in everyone.json()["data"]}
    assert {world.hr_chat, world.eng_chat} <= ids
    own = httpx.get(f"{world.base}/v1/chats", headers=bearer(ADMIN_KEY)).json()["data"]
    assert world.hr_chat not in {c["id"] for c in own}
    refused = httpx.get(f"{world.base}/v1/chats", headers=bearer(HR_KEY), params={"all": "true"})
    assert refused.status_code == 403 and refused.json()["error"]["param"] == "all"


@pytest.mark.parametrize(
    ("spec", "status", "param"),
    [
        ({"method": "dpo", "hyperparameters": {"dataloader_num_workers": 512}}, 422, "hyperparameters"),
        ({"method": "sft", "hyperparameters": {"push_to_hub": True}}, 422, "hyperparameters"),
        ({"method": "sft", "hyperparameters": {"max_steps": 10**9}}, 422, "hyperparameters.max_steps"),
        ({"method": "sft", "data": {"source": "file", "file_id": "/some/dir/.."}}, 400, "data.file_id"),
        ({"method": "sft", "data": {"source": "file", "file_id": "file-00000000000000000000"}}, 404, "data.file_id"),
    ],
)
def test_hostile_job_specs_are_refused_and_nothing_is_queued(
    world: World, spec: dict[str, Any], status: int, param: str
) -> None:
    spec = {"data": {"source": "file", "file_id": world.file_id}, **spec}
    before = Snapshot.take(world.server)
    response = _post(world, "/v1/training/jobs", ADMIN_KEY, json=spec)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"].startswith(param)
    if status == 422 and "max_steps" not in param:
        assert "learning_rate" in error["message"]  # the allowed keys are listed
    assert Snapshot.take(world.server) == before


def _chunks(total: int, size: int = 64 * 1024) -> Any:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def test_chunked_bodies_over_the_limits_are_413_and_change_nothing(world: World) -> None:
    before = Snapshot.take(world.server)
    prefix = b'{"query": "x", "pad": "'
    body = iter([prefix, *_chunks(3 * 1024 * 1024)])  # 3 MB JSON, no Content-Length (server.max_json_mb = 1)
    response = httpx.post(f"{world.base}/v1/retrieve", content=body, headers={**bearer(HR_KEY),
                          "content-type": "application/json"}, timeout=120)  # fmt: skip
    assert response.status_code == 413 and "server.max_json_mb" in response.json()["error"]["message"]
    boundary = "fuzzboundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="collection"\r\n\r\nhr\r\n--{boundary}\r\n'
            f'Content-Disposition: form-data; name="files"; filename="big.txt"\r\n\r\n').encode()  # fmt: skip
    upload = iter([head, *_chunks(5 * 1024 * 1024)])  # 5 MB multipart (server.max_upload_mb = 3)
    headers = {**bearer(HR_KEY), "content-type": f"multipart/form-data; boundary={boundary}"}
    response = httpx.post(f"{world.base}/v1/documents", content=upload, headers=headers, timeout=120)
    assert response.status_code == 413 and "server.max_upload_mb" in response.json()["error"]["message"]
    assert Snapshot.take(world.server) == before


def test_a_wrong_host_header_is_refused(world: World) -> None:
    response = httpx.get(f"{world.base}/v1/me", headers={**bearer(HR_KEY), "host": "attacker.example"})
    assert response.status_code == 400 and "server.allowed_hosts" in response.json()["error"]["message"]
