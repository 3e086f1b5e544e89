"""No key can take the engine down (issue 26, point 1), and adapters carry their data's scope (point 2).

Through the real vLLM-backed team server (`team_server`: keys of tests.fixtures.teams, max_lora_rank 8):
- a reward model, a version whose LoRA rank exceeds `engine.max_lora_rank` and a version whose weights file is
  damaged are each refused for the request that names them (400 / 422 / 422), and afterwards the engine still
  answers every key and `/health` stays 200. Before the fix each of them was handed to the engine inside a step.
- members may name only active versions, and only adapters whose training collections their key may read; admins
  may name candidates; `GET /v1/models` lists exactly what a chat would accept.
A separate server (`dying_server`) has its engine core process killed: `/health` turns 503 at once and the server
restarts the engine by itself, after which chats work again.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.live_server import LiveServer
from tests.fixtures.teams import ADMIN_KEY, ENG_KEY, HR_KEY, bearer
from tests.serving.conftest import tiny_settings

ASK = [{"role": "user", "content": "Say something."}]


def _chat(server: LiveServer, key: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": ASK, "max_tokens": 3, "use_retrieval": False}
    return httpx.post(f"{server.base_url}/v1/chat/completions", json=body, headers=bearer(key), timeout=120)


def _register(server: LiveServer, name: str, source: Path, **kwargs: Any) -> str:
    from training.registry import AdapterRegistry

    settings = server.state.settings
    registry = AdapterRegistry(server.state.db, settings.adapters_dir)
    lineage = kwargs.pop("lineage", {})
    record = registry.register(name, source, base_model="tiny", method="sft", lineage=lineage, metrics={}, **kwargs)
    return f"{record.name}@v{record.version}"


def _activate(server: LiveServer, name: str, version: int) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/adapters/{name}/activate",
        json={"version": version, "force": True},
        headers=bearer(ADMIN_KEY),
        timeout=120,
    )


def _engine_serves_everyone(server: LiveServer) -> None:
    health = httpx.get(f"{server.base_url}/health", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ready", health.text
    for key in (HR_KEY, ENG_KEY, ADMIN_KEY):
        response = _chat(server, key, "tiny")
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] > 0


def _models(server: LiveServer, key: str) -> set[str]:
    response = httpx.get(f"{server.base_url}/v1/models", headers=bearer(key), timeout=30)
    assert response.status_code == 200, response.text
    return {card["id"] for card in response.json()["data"]}


def test_a_reward_model_is_never_served(team_server: LiveServer, tiny_adapter_dir: Path) -> None:
    identity = _register(team_server, "judge", tiny_adapter_dir, kind="reward")
    for key, model in ((ADMIN_KEY, "judge"), (ADMIN_KEY, identity), (HR_KEY, identity)):
        response = _chat(team_server, key, model)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "model_not_chat"
    assert _chat(team_server, HR_KEY, "judge").status_code == 404  # a member's alias follows active versions only
    assert _activate(team_server, "judge", 1).status_code == 422  # nor can it be activated for chat
    scored = httpx.post(  # its files are an LM adapter's: scoring with it is a 422 naming it, not a 500
        f"{team_server.base_url}/v1/rewards/score",
        json={"model": identity, "items": [{"prompt": "Hi?", "answer": "Hello."}]},
        headers=bearer(ADMIN_KEY),
        timeout=120,
    )
    assert scored.status_code == 422 and identity in scored.json()["error"]["message"], scored.text
    assert "judge" not in _models(team_server, ADMIN_KEY) and identity not in _models(team_server, ADMIN_KEY)
    _engine_serves_everyone(team_server)


def test_a_rank_above_the_engine_limit_is_refused_before_the_engine(
    team_server: LiveServer, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from tests.fixtures.tiny_model import build_lora_adapter

    wide = build_lora_adapter(tiny_model_dir, tmp_path / "wide", rank=16)  # the server's max_lora_rank is 8
    identity = _register(team_server, "wide", wide)
    response = _chat(team_server, ADMIN_KEY, identity)
    assert response.status_code == 422, response.text
    assert "engine.max_lora_rank 8" in response.json()["error"]["message"]
    assert identity not in _models(team_server, ADMIN_KEY)
    activation = _activate(team_server, "wide", 1)
    assert activation.status_code == 422 and "max_lora_rank" in activation.text
    _engine_serves_everyone(team_server)


def test_a_damaged_adapter_fails_its_own_request_only(team_server: LiveServer, tiny_adapter_dir: Path) -> None:
    identity = _register(team_server, "damaged", tiny_adapter_dir)
    stored = Path(team_server.state.catalog.resolve(identity).path)
    (stored / "adapter_model.safetensors").write_bytes(b"\x00" * 64)  # the file went bad after registration
    for _ in range(2):  # the second time the remembered failure answers at once
        response = _chat(team_server, ADMIN_KEY, identity)
        assert response.status_code == 422, response.text
        assert f"{identity} could not be loaded" in response.json()["error"]["message"]
    _engine_serves_everyone(team_server)


def test_members_name_only_active_versions_of_adapters_within_their_scope(
    team_server: LiveServer, tiny_adapter_dir: Path
) -> None:
    candidate = _register(team_server, "hrbot", tiny_adapter_dir, lineage={"collections": ["hr"]})
    for key in (HR_KEY, ENG_KEY):  # nothing active yet: a member reaches no version of it
        assert _chat(team_server, key, "hrbot").status_code == 404
        assert _chat(team_server, key, candidate).status_code == 403
        assert not {"hrbot", candidate} & _models(team_server, key)
    assert _chat(team_server, ADMIN_KEY, candidate).status_code == 200  # admins evaluate candidates
    assert _activate(team_server, "hrbot", 1).status_code == 200
    newer = _register(team_server, "hrbot", tiny_adapter_dir, lineage={"collections": ["hr"]})
    for model in ("hrbot", candidate):
        assert _chat(team_server, HR_KEY, model).status_code == 200  # trained on hr: the hr key may use it
        refused = _chat(team_server, ENG_KEY, model)  # the eng key may not read hr
        assert refused.status_code == 403 and "collections" in refused.json()["error"]["message"]
    assert _chat(team_server, HR_KEY, newer).status_code == 403  # a newer candidate stays an admin's
    assert {"hrbot", candidate} <= _models(team_server, HR_KEY)
    assert newer not in _models(team_server, HR_KEY)
    assert not {"hrbot", candidate, newer} & _models(team_server, ENG_KEY)
    assert {"hrbot", candidate, newer} <= _models(team_server, ADMIN_KEY)


def test_an_adapter_without_recorded_collections_is_not_for_scoped_members(
    team_server: LiveServer, tiny_adapter_dir: Path
) -> None:
    _register(team_server, "unknown-data", tiny_adapter_dir)  # lineage says nothing about its data
    assert _activate(team_server, "unknown-data", 1).status_code == 200
    assert _chat(team_server, ADMIN_KEY, "unknown-data").status_code == 200
    for key in (HR_KEY, ENG_KEY):
        assert _chat(team_server, key, "unknown-data").status_code == 403
    _register(team_server, "no-collections", tiny_adapter_dir, lineage={"collections": []})
    assert _activate(team_server, "no-collections", 1).status_code == 200
    for key in (HR_KEY, ENG_KEY):  # trained on no collection's data (an uploaded file): usable by every member
        assert _chat(team_server, key, "no-collections").status_code == 200


def test_public_health_tells_readiness_only(team_server: LiveServer) -> None:
    public = httpx.get(f"{team_server.base_url}/health", timeout=30).json()
    assert public == {"status": "ready", "ready": True}
    member = httpx.get(f"{team_server.base_url}/health", headers=bearer(HR_KEY), timeout=30).json()
    assert member == public
    admin = httpx.get(f"{team_server.base_url}/health", headers=bearer(ADMIN_KEY), timeout=30).json()
    assert admin["model"] == "tiny" and admin["engine"]["running"] >= 0 and "worker" in admin


# ---------------------------------------------------------------- an engine that dies


@pytest.fixture(scope="module")
def dying_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from serving.app import create_app

    data = tmp_path_factory.mktemp("dying-data")
    settings = tiny_settings(data, tiny_model_dir, retrieval={"top_k": 3})
    settings.engine.watchdog_s = 0.2
    server = LiveServer(create_app(settings)).start()
    yield server
    server.stop()
    shutil.rmtree(data, ignore_errors=True)


def _engine_core_pids(server: LiveServer) -> list[int]:
    """The engine core processes of the server's vLLM engine (children of this test process)."""
    llm = server.state.engine._llm
    return [p.pid for p in llm.engine_core.resources.engine_manager.processes if p.pid]


def _wait_for(predicate: Any, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def test_a_dead_engine_is_503_then_restarted(dying_server: LiveServer) -> None:
    base = dying_server.base_url
    assert _chat(dying_server, "", "tiny").status_code == 200
    first = dying_server.state.engine
    pids = _engine_core_pids(dying_server)
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)  # what a crash inside an engine step looks like from the server
    # at once, before /health or the watchdog has seen the death: the request meets the dead engine -> 503, not 500
    at_once = _chat(dying_server, "", "tiny")
    assert at_once.status_code == 503 or (at_once.status_code == 200 and dying_server.state.engine is not first)
    _wait_for(lambda: httpx.get(f"{base}/health", timeout=5).status_code == 503, timeout=30)
    refused = _chat(dying_server, "", "tiny")  # health says 503: so does chat, whether or not the watchdog looked yet
    assert refused.status_code == 503 or (refused.status_code == 200 and dying_server.state.engine is not first)
    assert refused.status_code == 200 or "stopped" in refused.json()["error"]["message"]
    _wait_for(lambda: httpx.get(f"{base}/health", timeout=5).status_code == 200, timeout=300)
    assert dying_server.state.engine is not first
    details = httpx.get(f"{base}/health", timeout=5).json()
    assert details["engine_restarts"] == 1  # no keys: the loopback open mode shows the details
    answer = _chat(dying_server, "", "tiny")
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] > 0


# ---------------------------------------------------------------- the adapter matrix: who may name what

# model -> expected status per principal: the role matrix of tests/serving/test_roles.py, for the `model` field
ADAPTER_MATRIX = {
    "tiny": {"none": 401, "member_in": 200, "member_out": 200, "admin": 200},
    "mx-hr": {"none": 401, "member_in": 200, "member_out": 403, "admin": 200},  # active, trained on hr
    "mx-hr@v2": {"none": 401, "member_in": 403, "member_out": 403, "admin": 200},  # a newer candidate
    "mx-open": {"none": 401, "member_in": 200, "member_out": 200, "admin": 200},  # active, trained on no collection
    "mx-judge": {"none": 401, "member_in": 400, "member_out": 400, "admin": 400},  # a reward model (active)
    "mx-wide": {"none": 401, "member_in": 422, "member_out": 422, "admin": 422},  # rank 16 > max_lora_rank 8
    "mx-missing": {"none": 401, "member_in": 404, "member_out": 404, "admin": 404},
}
MATRIX_KEYS = {"none": None, "member_in": HR_KEY, "member_out": ENG_KEY, "admin": ADMIN_KEY}


@pytest.fixture(scope="module")
def matrix_adapters(
    team_server: LiveServer, tiny_adapter_dir: Path, tiny_model_dir: Path, tmp_path_factory: Any
) -> None:
    from assistant.adapter_refs import AdapterStatus
    from assistant.storage import Adapter
    from tests.fixtures.tiny_model import build_lora_adapter

    _register(team_server, "mx-hr", tiny_adapter_dir, lineage={"collections": ["hr"]})
    assert _activate(team_server, "mx-hr", 1).status_code == 200
    _register(team_server, "mx-hr", tiny_adapter_dir, lineage={"collections": ["hr"]})
    _register(team_server, "mx-open", tiny_adapter_dir, lineage={"collections": []})
    assert _activate(team_server, "mx-open", 1).status_code == 200
    _register(team_server, "mx-judge", tiny_adapter_dir, kind="reward", lineage={"collections": []})
    wide = build_lora_adapter(tiny_model_dir, tmp_path_factory.mktemp("wide") / "a", rank=16)
    _register(team_server, "mx-wide", wide, lineage={"collections": []})
    with team_server.state.db.session() as session:  # active as if by an older server (activation refuses them now)
        for row in session.query(Adapter).filter(Adapter.name.in_(["mx-judge", "mx-wide"])):
            row.status = AdapterStatus.ACTIVE


@pytest.mark.parametrize("model", list(ADAPTER_MATRIX))
def test_adapter_matrix(team_server: LiveServer, matrix_adapters: None, model: str) -> None:
    for who, expected in ADAPTER_MATRIX[model].items():
        response = _chat(team_server, MATRIX_KEYS[who] or "", model)
        assert response.status_code == expected, (who, model, response.text)
        listed = model in _models(team_server, MATRIX_KEYS[who]) if MATRIX_KEYS[who] else False
        assert listed == (expected == 200), (who, model)
    _engine_serves_everyone(team_server)
