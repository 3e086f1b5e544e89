"""Keys through the API, on a real server (transformers engine on the tiny model, SQLite) that starts with no keys.

The first key is issued by the anonymous admin of a loopback server; from then on the server requires keys although
its settings hold none. Keys are created, listed, used, rotated, revoked and expire through REST; the database holds
only digests. On two replicas sharing one PostgreSQL, a revocation made through one is honoured by the other within
one `server.key_sync_s`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from assistant.errors import AuthenticationError, ConfigError
from assistant.settings import Settings
from assistant.storage import Database
from assistant.storage.orm import ApiKeyRecord
from serving.auth import authenticate
from serving.middleware import check_exposure
from serving.services.key_service import KeySpec, KeyStore, stored_keys_exist
from tests.fixtures.live_server import LiveServer
from tests.fixtures.teams import bearer
from tests.serving.conftest import tiny_settings

BOOTSTRAP = "sk-bootstrap-0123456789"


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from serving.app import create_app

    settings = tiny_settings(tmp_path_factory.mktemp("keys"), tiny_model_dir)
    settings.engine.backend = "transformers"
    live = LiveServer(create_app(settings)).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def admin(server: LiveServer) -> str:
    """The first key, issued by the anonymous admin of the keyless loopback server; after it keys are required."""
    base = server.base_url
    assert httpx.get(f"{base}/v1/me").json()["authenticated"] is False
    created = httpx.post(f"{base}/v1/keys", json={"name": "ops", "role": "admin"})
    assert created.status_code == 201, created.text
    assert httpx.get(f"{base}/v1/me").status_code == 401  # no settings keys, yet keys are now required
    return str(created.json()["key"])


def _create(server: LiveServer, admin: str, **spec: Any) -> dict[str, Any]:
    response = httpx.post(f"{server.base_url}/v1/keys", json=spec, headers=bearer(admin))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _me(server: LiveServer, key: str) -> httpx.Response:
    return httpx.get(f"{server.base_url}/v1/me", headers=bearer(key))


def test_create_list_and_use_a_key(server: LiveServer, admin: str) -> None:
    created = _create(server, admin, name="hr-bot", collections=["hr"], tokens_per_day=1000, requests_per_minute=5)
    secret = created["key"]
    assert secret.startswith("sk-") and len(secret) > 40 and created["prefix"] == secret[:8]
    me = _me(server, secret).json()
    assert (me["name"], me["role"], me["collections"], me["authenticated"]) == ("hr-bot", "member", ["hr"], True)

    listing = httpx.get(f"{server.base_url}/v1/keys", headers=bearer(admin))
    assert listing.status_code == 200 and secret not in listing.text
    row = next(k for k in listing.json()["data"] if k["id"] == created["id"])
    assert (row["name"], row["owner"], row["role"], row["collections"]) == ("hr-bot", "ops", "member", ["hr"])
    assert row["status"] == "active" and row["tokens_per_day"] == 1000 and row["requests_per_minute"] == 5
    assert abs(row["created_at"] - time.time()) < 120 and row["last_used_at"] >= row["created_at"]

    with server.state.db.session() as session:  # only the digest is stored; the secret is nowhere in the row
        stored = session.get(ApiKeyRecord, created["id"])
        assert stored.digest == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in str([getattr(stored, c.name) for c in ApiKeyRecord.__table__.columns])


def test_a_member_key_cannot_manage_keys(server: LiveServer, admin: str) -> None:
    member = _create(server, admin, name="eng-bot", collections=["eng"])
    for method, path in (("POST", "/v1/keys"), ("GET", "/v1/keys"), ("DELETE", f"/v1/keys/{member['id']}")):
        body = {"name": "escalate", "role": "admin"} if method == "POST" else None
        response = httpx.request(method, f"{server.base_url}{path}", json=body, headers=bearer(member["key"]))
        assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"
    assert _me(server, member["key"]).status_code == 200  # its own DELETE was refused: still valid


def test_rotate_then_revoke(server: LiveServer, admin: str) -> None:
    created = _create(server, admin, name="rotating")
    rotated = httpx.post(f"{server.base_url}/v1/keys/{created['id']}/rotate", headers=bearer(admin))
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["id"] == created["id"] and new["key"] != created["key"] and new["rotated_at"] is not None
    assert _me(server, created["key"]).status_code == 401
    assert _me(server, new["key"]).json()["name"] == "rotating"

    revoked = httpx.delete(f"{server.base_url}/v1/keys/{created['id']}", headers=bearer(admin))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    refused = _me(server, new["key"])
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    again = httpx.post(f"{server.base_url}/v1/keys/{created['id']}/rotate", headers=bearer(admin))
    assert again.status_code == 409
    missing = httpx.delete(f"{server.base_url}/v1/keys/key-doesnotexist", headers=bearer(admin))
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "key_id"


def test_an_expired_key_is_refused(server: LiveServer, admin: str) -> None:
    created = _create(server, admin, name="short-lived", expires_at=time.time() + 2)
    assert _me(server, created["key"]).status_code == 200
    time.sleep(2.2)
    assert _me(server, created["key"]).status_code == 401
    listed = httpx.get(f"{server.base_url}/v1/keys", headers=bearer(admin)).json()["data"]
    assert next(k for k in listed if k["id"] == created["id"])["status"] == "expired"


@pytest.mark.parametrize(
    ("spec", "param"),
    [
        ({"name": "x", "role": "admin", "collections": ["hr"]}, "collections"),
        ({"name": "x", "collections": []}, "collections"),
        ({"name": "  "}, "name"),
        ({"name": "x", "role": "owner"}, "role"),
        ({"name": "x", "tokens_per_day": 0}, "tokens_per_day"),
        ({"name": "x", "expires_at": 1_000_000}, "expires_at"),
        ({"name": "x", "key": "sk-chosen-by-the-caller"}, "key"),
    ],
)
def test_bad_key_specs_are_400_and_store_nothing(
    server: LiveServer, admin: str, spec: dict[str, Any], param: str
) -> None:
    before = _key_ids(server, admin)
    response = httpx.post(f"{server.base_url}/v1/keys", json=spec, headers=bearer(admin))
    assert response.status_code == 400, response.text
    assert (response.json()["error"]["param"] or "").startswith(param) or param in response.json()["error"]["message"]
    assert _key_ids(server, admin) == before


def _key_ids(server: LiveServer, admin: str) -> list[str]:
    return [k["id"] for k in httpx.get(f"{server.base_url}/v1/keys", headers=bearer(admin)).json()["data"]]


# ---------------------------------------------------------------- without a server: bootstrap keys, exposure


def test_settings_keys_stay_the_bootstrap_beside_stored_keys(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'keys.db'}")
    db.migrate()
    store = KeyStore(db)
    store.refresh()
    settings = Settings(data_dir=tmp_path, server={"api_keys": [{"key": BOOTSTRAP, "name": "boot", "role": "admin"}]})
    state: Any = SimpleNamespace(settings=settings, extras={"keys": store})
    issued = store.create(KeySpec(name="issued", collections=["hr"]), by="boot")
    assert authenticate(state, f"Bearer {BOOTSTRAP}").name == "boot"
    member = authenticate(state, f"Bearer {issued.secret}")
    assert (member.name, member.collections, member.key_id) == ("issued", frozenset({"hr"}), issued.key.id)
    for header in (None, "Bearer sk-unknown-000000000000", f"Basic {issued.secret}"):
        with pytest.raises(AuthenticationError):
            authenticate(state, header)
    store.revoke(issued.key.id)
    with pytest.raises(AuthenticationError):
        authenticate(state, f"Bearer {issued.secret}")


def test_stored_keys_allow_a_public_bind_and_are_then_required(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, server={"host": "0.0.0.0"})
    url = settings.resolved_database_url
    assert not stored_keys_exist(url) and not (tmp_path / "assistant.db").exists()  # the probe creates nothing
    with pytest.raises(ConfigError, match="allow_unauthenticated"):
        check_exposure(settings, lambda: stored_keys_exist(url))
    db = Database(url)
    db.migrate()
    store = KeyStore(db)
    store.refresh()
    state: Any = SimpleNamespace(settings=settings, extras={"keys": store})
    assert authenticate(state, None).name == "anonymous"  # no key anywhere: open (loopback only, checked above)
    issued = store.create(KeySpec(name="only-in-db", role="admin"), by="anonymous")
    store.revoke(issued.key.id)
    assert stored_keys_exist(url)
    check_exposure(settings, lambda: stored_keys_exist(url))  # keys exist (even all revoked): required, so allowed
    with pytest.raises(AuthenticationError):
        authenticate(state, None)  # revoking the last key locks the server; it never opens it
    db.dispose()


# ---------------------------------------------------------------- two replicas on one PostgreSQL


@pytest.fixture(scope="module")
def replicas(postgres_server: Any, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.fixtures.replicas import start_replicas

    url = postgres_server.create_database("keys_replicas")
    root = tmp_path_factory.mktemp("key-replicas")
    os.environ["ASSISTANT_SERVER__KEY_SYNC_S"] = "0.5"
    try:
        a, b = start_replicas(root, url, tiny_model_dir)
    finally:
        del os.environ["ASSISTANT_SERVER__KEY_SYNC_S"]
    try:
        first = a.post("/v1/keys", json={"name": "fleet-admin", "role": "admin"})  # anonymous on a keyless server
        assert first.status_code == 201, first.text
        yield a, b, str(first.json()["key"])
    finally:
        a.stop()
        b.stop()


@pytest.mark.postgres
@pytest.mark.slow
def test_a_revocation_through_one_replica_is_honoured_by_the_other(replicas: Any) -> None:
    from tests.fixtures.replicas import wait_for

    a, b, admin = replicas
    member = a.post("/v1/keys", json={"name": "fleet-member"}, headers=bearer(admin)).json()
    wait_for(lambda: httpx.get(f"{b.base_url}/v1/me", headers=bearer(member["key"])).status_code == 200, timeout=10)

    revoked = httpx.delete(f"{a.base_url}/v1/keys/{member['id']}", headers=bearer(admin))
    assert revoked.status_code == 200
    assert httpx.get(f"{a.base_url}/v1/me", headers=bearer(member["key"])).status_code == 401  # at once here
    took = wait_for(lambda: httpx.get(f"{b.base_url}/v1/me", headers=bearer(member["key"])).status_code == 401, 10)
    assert took < 0.5 + 1.5  # one sync interval (0.5 s) plus a request's time on a busy machine
    assert httpx.get(f"{b.base_url}/v1/me").status_code == 401  # B too requires keys, none in its settings


@pytest.mark.postgres
@pytest.mark.slow
def test_a_daily_token_quota_spent_on_one_replica_is_refused_by_the_other(replicas: Any) -> None:
    from tests.fixtures.replicas import wait_for

    a, b, admin_key = replicas
    small = a.post("/v1/keys", json={"name": "small", "tokens_per_day": 1}, headers=bearer(admin_key)).json()["key"]
    other = a.post("/v1/keys", json={"name": "other"}, headers=bearer(admin_key)).json()["key"]
    ask = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    first = a.post("/v1/chat/completions", json=ask, headers=bearer(small))
    assert first.status_code == 200, first.text  # admitted under the limit, and spends past it
    wait_for(lambda: httpx.get(f"{b.base_url}/v1/me", headers=bearer(other)).status_code == 200, timeout=10)
    refused = b.post("/v1/chat/completions", json=ask, headers=bearer(small))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0, refused.text
    used = httpx.get(f"{b.base_url}/v1/me", headers=bearer(small)).json()["quota"]["tokens_per_day"]["used"]
    assert used == first.json()["usage"]["total_tokens"]
    assert b.post("/v1/chat/completions", json=ask, headers=bearer(other)).status_code == 200
