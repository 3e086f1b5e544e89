"""Grounded answers on the real server: the `answer` generation defaults, and citations in the prompt's order."""

from __future__ import annotations

import httpx

from assistant.storage import ChatRecord
from tests.fixtures.live_server import LiveServer
from tests.fixtures.squad_eval import DOCS

QUESTION = [{"role": "user", "content": "How long do I hold the reset button of the router?"}]


def _upload(server: LiveServer) -> None:
    files = [("files", (name, text.encode())) for name, text in DOCS.items()]
    response = httpx.post(f"{server.base_url}/v1/documents", files=files, data={"collection": "evalkb"}, timeout=120)
    assert response.status_code == 200, response.text


def _record(server: LiveServer, response_id: str) -> ChatRecord:
    with server.state.db.session() as session:
        record = session.get(ChatRecord, response_id)
        assert record is not None
        session.expunge(record)
        return record


def test_grounded_answers_are_short_and_greedy_unless_asked_otherwise(live_server: LiveServer) -> None:
    _upload(live_server)
    url = f"{live_server.base_url}/v1/chat/completions"
    body = {"model": "tiny", "messages": QUESTION, "collections": ["evalkb"]}
    plain = httpx.post(url, json=body, timeout=120).json()
    assert plain["retrieval"] == "rag"
    answer = live_server.state.settings.answer
    sampling = _record(live_server, plain["id"]).sampling
    assert sampling["temperature"] == answer.temperature == 0.0
    assert sampling["max_tokens"] == answer.max_tokens and sampling["stop"] == ["\n"]
    assert "\n" not in plain["choices"][0]["message"]["content"]

    explicit = httpx.post(url, json={**body, "temperature": 0.7, "max_tokens": 5, "stop": ["zz"]}, timeout=120).json()
    sampling = _record(live_server, explicit["id"]).sampling
    assert (sampling["temperature"], sampling["max_tokens"], sampling["stop"]) == (0.7, 5, ["zz"])

    off = httpx.post(url, json={**body, "use_retrieval": False, "max_tokens": 4}, timeout=120).json()
    assert _record(live_server, off["id"]).sampling["temperature"] == 1.0  # plain chat keeps OpenAI's default


def test_citations_follow_the_prompt_order(live_server: LiveServer) -> None:
    from serving.schemas import ChatCompletionRequest
    from serving.services.chat_service import ChatService

    _upload(live_server)
    state = live_server.state
    settings = state.settings.model_copy(
        update={"answer": state.settings.answer.model_copy(update={"source_order": "best_last", "source_window": 0})}
    )
    service = ChatService(settings, state.engine, state.catalog, state.db, state.metrics, state.retrieval)
    request = ChatCompletionRequest.model_validate(
        {"model": "tiny", "messages": QUESTION, "collections": ["evalkb"], "max_tokens": 2, "top_k": 2}
    )
    prepared = live_server.run(service.prepare(request))
    ranked = sorted(prepared.hits, key=lambda h: h.score, reverse=True)
    citations = prepared.citations()
    assert [c["chunk_id"] for c in citations] == [h.chunk_id for h in reversed(ranked[:2])]  # best last
    assert "router" in ranked[0].source
    # the prompt numbers the sources in that order, each trimmed to its best sentence (window 0)
    best = prepared.sources()[-1]
    assert best["text"] == "To reset the router, hold the reset button for ten seconds until the light blinks orange."
    assert f"[2] {best['text']}" in prepared.prompt  # the default style labels a source with its number only
    # the served turn comes after the default style's worked example, which has its own "[2] " and "Question: "
    served = prepared.prompt[prepared.prompt.rindex("Context:\n") :]
    assert served.index("[2] ") < served.index(best["text"]) < served.index("Question: ")
