"""Feedback -> preference pairs, pair import, and adapter activation/rollback with hot-loading, on the real server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fixtures.live_server import LiveServer

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.base_url}/v1", api_key="unused", max_retries=0)


def _post(server: LiveServer, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", timeout=120, **kwargs)


def test_thumbs_down_with_correction_becomes_a_pair(live_server: LiveServer, client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="tiny", messages=QUESTION, max_tokens=6, temperature=0, extra_body={"use_retrieval": False}
    )
    body = {"response_id": reply.id, "rating": -1, "correction": "The capital of France is Paris."}
    response = _post(live_server, "/v1/feedback", json=body)
    assert response.status_code == 200, response.text
    pair_ids = response.json()["preference_pairs"]
    assert len(pair_ids) == 1
    pairs = httpx.get(f"{live_server.base_url}/v1/preferences", params={"provenance": "feedback"}).json()["data"]
    pair = next(p for p in pairs if p["id"] == pair_ids[0])
    from assistant.storage import ChatRecord

    with live_server.state.db.session() as session:
        record = session.get(ChatRecord, reply.id)
    assert record is not None
    assert pair["prompt"] == record.prompt  # the exact rendered prompt the model saw
    assert pair["chosen"] == body["correction"] and pair["rejected"] == reply.choices[0].message.content


def test_opposite_ratings_of_two_answers_become_a_pair(live_server: LiveServer, client: openai.OpenAI) -> None:
    question = [{"role": "user", "content": "Write one word about invoices."}]
    replies = [
        client.chat.completions.create(
            model="tiny",
            messages=question,
            max_tokens=6,
            temperature=1.0,
            seed=seed,
            extra_body={"use_retrieval": False},
        )
        for seed in (1, 2)
    ]
    assert replies[0].choices[0].message.content != replies[1].choices[0].message.content
    assert (
        _post(live_server, "/v1/feedback", json={"response_id": replies[0].id, "rating": 1}).json()["preference_pairs"]
        == []
    )
    made = _post(live_server, "/v1/feedback", json={"response_id": replies[1].id, "rating": -1}).json()
    assert len(made["preference_pairs"]) == 1
    pairs = httpx.get(f"{live_server.base_url}/v1/preferences", params={"provenance": "feedback"}).json()["data"]
    pair = next(p for p in pairs if p["id"] == made["preference_pairs"][0])
    assert pair["chosen"] == replies[0].choices[0].message.content
    assert pair["rejected"] == replies[1].choices[0].message.content


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"response_id": "chatcmpl-nope", "rating": 1}, 404),
        ({"response_id": "x", "rating": 0}, 400),
        ({"rating": 1}, 400),
    ],
)
def test_bad_feedback(live_server: LiveServer, body: dict[str, Any], status: int) -> None:
    response = _post(live_server, "/v1/feedback", json=body)
    assert response.status_code == status
    assert response.json()["error"]["message"]


def test_import_preferences_dedups(live_server: LiveServer, shared_data: Path, tmp_path: Path) -> None:
    records = json.loads((shared_data / "dpo-sharegpt-300.json").read_text())[:5]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    first = _post(live_server, "/v1/preferences", files={"file": ("pairs.jsonl", path.read_bytes())}).json()
    again = _post(live_server, "/v1/preferences", files={"file": ("pairs.jsonl", path.read_bytes())}).json()
    assert (first["records"], first["stored"]) == (5, 5)
    assert (again["stored"], again["duplicates"]) == (0, 5)
    listing = httpx.get(f"{live_server.base_url}/v1/preferences", params={"provenance": "imported"}).json()
    assert listing["counts"]["imported"] == 5 and len(listing["data"]) == 5


def test_malformed_preference_file_names_the_record(live_server: LiveServer) -> None:
    bad = b'{"prompt": "hi", "chosen": "a", "rejected": "b"}\n{"prompt": "x", "chosen": "a"}\n'
    response = _post(live_server, "/v1/preferences", files={"file": ("bad.jsonl", bad)})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "#1" in message and "rejected" in message


# ---------------------------------------------------------------- adapters


@pytest.fixture(scope="module")
def helpdesk(
    live_server: LiveServer, tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[int, str]:
    """Two registered versions of the adapter 'helpdesk' with different weights; their greedy answers."""
    from tests.fixtures.tiny_model import build_lora_adapter
    from training.registry import AdapterRegistry

    second = build_lora_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter-v2"), seed=7)
    registry = AdapterRegistry(live_server.state.db, live_server.state.settings.adapters_dir)
    for source in (tiny_adapter_dir, second):
        registry.register("helpdesk", source, base_model="tiny", method="sft", lineage={}, metrics={})
    answers = {}
    for version in (1, 2):
        answers[version] = _answer(live_server, f"helpdesk@v{version}")
    assert answers[1] != answers[2]
    return answers


def _answer(server: LiveServer, model: str) -> str:
    body = {"model": model, "messages": QUESTION, "max_tokens": 10, "temperature": 0, "use_retrieval": False}
    response = _post(server, "/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def test_activate_switches_the_alias_and_rollback_restores(live_server: LiveServer, helpdesk: dict[int, str]) -> None:
    assert _post(live_server, "/v1/adapters/helpdesk/activate", json={"version": 1}).status_code == 200
    assert _answer(live_server, "helpdesk") == helpdesk[1]
    activated = _post(live_server, "/v1/adapters/helpdesk/activate", json={"version": 2})
    assert activated.json()["status"] == "active"
    assert _answer(live_server, "helpdesk") == helpdesk[2]
    listing = httpx.get(f"{live_server.base_url}/v1/adapters").json()
    assert listing["active"]["helpdesk"] == "helpdesk@v2"
    rolled = _post(live_server, "/v1/adapters/helpdesk/rollback")
    assert rolled.status_code == 200 and rolled.json()["version"] == 1
    assert _answer(live_server, "helpdesk") == helpdesk[1]


def test_activation_refusals(live_server: LiveServer, helpdesk: dict[int, str]) -> None:
    missing = _post(live_server, "/v1/adapters/helpdesk/activate", json={"version": 99})
    assert missing.status_code == 404
    assert _post(live_server, "/v1/adapters/nobody/activate").status_code == 404
    assert _post(live_server, "/v1/adapters/nobody/rollback").status_code == 404
    from assistant.storage import Adapter

    with live_server.state.db.session() as session:
        row = session.query(Adapter).filter_by(name="helpdesk", version=2).one()
        row.gate = {"passed": False, "reasons": ["preference accuracy 0.40 < 0.55 of the active version"]}
    refused = _post(live_server, "/v1/adapters/helpdesk/activate", json={"version": 2})
    assert refused.status_code == 409 and "gate" in refused.json()["error"]["message"]
    forced = _post(live_server, "/v1/adapters/helpdesk/activate", json={"version": 2, "force": True})
    assert forced.status_code == 200


def test_two_activations_at_once(live_server: LiveServer, helpdesk: dict[int, str]) -> None:
    async def both() -> list[int]:
        async with httpx.AsyncClient(base_url=live_server.base_url, timeout=120) as http:
            calls = [http.post("/v1/adapters/helpdesk/activate", json={"version": v, "force": True}) for v in (1, 2)]
            return [r.status_code for r in await asyncio.gather(*calls)]

    codes = asyncio.run(both())
    assert sorted(codes) in ([200, 200], [200, 409])
    listing = httpx.get(f"{live_server.base_url}/v1/adapters").json()
    assert sum(1 for a in listing["data"] if a["name"] == "helpdesk" and a["status"] == "active") == 1


def test_requests_keep_flowing_during_activation(live_server: LiveServer, helpdesk: dict[int, str]) -> None:
    async def traffic_and_swaps() -> list[int]:
        async with httpx.AsyncClient(base_url=live_server.base_url, timeout=120) as http:
            body = {"model": "helpdesk", "messages": QUESTION, "max_tokens": 8, "use_retrieval": False}
            chats = [http.post("/v1/chat/completions", json=body) for _ in range(12)]
            swaps = [http.post("/v1/adapters/helpdesk/activate", json={"version": v, "force": True}) for v in (1, 2)]
            responses = await asyncio.gather(*chats, *swaps)
            return [r.status_code for r in responses[:12]]

    assert asyncio.run(traffic_and_swaps()) == [200] * 12
