"""Documents, retrieval and grounded chat against the real server (vLLM, MiniLM, FAISS, SQLite) with real clients."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from assistant.prompts import NO_SOURCES_ANSWER
from tests.fixtures.live_server import LiveServer

DOCS = {
    "router.txt": "Router manual. To reset the router, hold the reset button for ten seconds until the light blinks "
    "orange. The router then restarts with factory settings and the default Wi-Fi password printed on its label.",
    "leave.md": "# Leave policy\n\nEmployees accrue twenty days of paid leave per year, prorated in the first year. "
    "Unused leave up to five days carries over to the next year.",
    "invoices.txt": "Invoices are due within thirty days of issue. Late payments incur a fee of two percent per month "
    "on the outstanding amount.",
}
ROUTER_Q = [{"role": "user", "content": "How do I reset the router to factory settings?"}]


def _upload(server: LiveServer, files: dict[str, bytes | str], collection: str = "kb") -> httpx.Response:
    parts = [("files", (name, data if isinstance(data, bytes) else data.encode())) for name, data in files.items()]
    return httpx.post(f"{server.base_url}/v1/documents", files=parts, data={"collection": collection}, timeout=120)


@pytest.fixture(scope="module")
def uploaded(live_server: LiveServer) -> dict[str, str]:
    response = _upload(live_server, DOCS)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    results = response.json()["data"]
    assert {r["status"] for r in results} == {"ingested"}
    return {r["source"]: r["document_id"] for r in results}


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.base_url}/v1", api_key="unused", max_retries=0)


def _retrieve(server: LiveServer, query: str, **extra: Any) -> httpx.Response:
    return httpx.post(f"{server.base_url}/v1/retrieve", json={"query": query, **extra}, timeout=60)


def test_documents_are_listed_with_chunks(live_server: LiveServer, uploaded: dict[str, str]) -> None:
    listing = httpx.get(f"{live_server.base_url}/v1/documents", params={"collection": "kb"}).json()["data"]
    assert {d["source"] for d in listing} >= set(DOCS)
    one = httpx.get(f"{live_server.base_url}/v1/documents/{uploaded['leave.md']}").json()
    assert one["status"] == "ready" and one["chunks"] >= 1
    assert "twenty days" in " ".join(c["text"] for c in one["chunk_list"])


def test_reupload_of_same_content_is_a_noop(live_server: LiveServer, uploaded: dict[str, str]) -> None:
    response = _upload(live_server, {"invoices.txt": DOCS["invoices.txt"]})
    assert response.json()["data"][0]["status"] == "unchanged"


def test_retrieve_returns_scored_hits(live_server: LiveServer, uploaded: dict[str, str]) -> None:
    hits = _retrieve(live_server, "reset the router button", collections=["kb"]).json()["data"]
    assert hits[0]["document_id"] == uploaded["router.txt"]
    assert hits[0]["score"] > 0 and hits[0]["dense_score"] is not None


def test_chat_cites_the_document_with_the_answer(client: openai.OpenAI, uploaded: dict[str, str]) -> None:
    reply = client.chat.completions.create(
        model="tiny", messages=ROUTER_Q, max_tokens=8, temperature=0, extra_body={"collections": ["kb"]}
    )
    extra = reply.model_extra or {}
    assert extra["retrieval"] == "rag"
    assert extra["citations"][0]["document_id"] == uploaded["router.txt"]
    assert extra["citations"][0]["chunk_id"] == extra["sources"][0]["chunk_id"]


def test_streamed_chat_carries_citations_in_the_final_chunk(client: openai.OpenAI, uploaded: dict[str, str]) -> None:
    stream = client.chat.completions.create(
        model="tiny", messages=ROUTER_Q, max_tokens=8, temperature=0, stream=True, extra_body={"collections": ["kb"]}
    )
    chunks = list(stream)
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    citations = (final.model_extra or {})["citations"]
    assert citations[0]["document_id"] == uploaded["router.txt"]


def test_prompt_carries_numbered_sources(
    client: openai.OpenAI, live_server: LiveServer, uploaded: dict[str, str]
) -> None:
    from assistant.storage import ChatRecord

    reply = client.chat.completions.create(model="tiny", messages=ROUTER_Q, max_tokens=4, temperature=0)
    with live_server.state.db.session() as session:
        record = session.get(ChatRecord, reply.id)
    assert record is not None
    assert "Context:\n[1] " in record.prompt and "hold the reset button" in record.prompt
    assert record.retrieved_chunk_ids == [c["chunk_id"] for c in (reply.model_extra or {})["citations"]]


def test_langchain_chat_openai_works(live_server: LiveServer, uploaded: dict[str, str]) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{live_server.base_url}/v1", api_key="unused", model="tiny", max_tokens=6, temperature=0)
    message = llm.invoke("How do I reset the router?")
    assert isinstance(message.content, str)
    chunks = list(llm.stream("How do I reset the router?"))
    assert chunks


def test_nothing_relevant_means_i_dont_know(client: openai.OpenAI, uploaded: dict[str, str]) -> None:
    question = [{"role": "user", "content": "Which striker scored in the 1998 World Cup final?"}]
    reply = client.chat.completions.create(model="tiny", messages=question, max_tokens=8)
    assert reply.choices[0].message.content == NO_SOURCES_ANSWER
    assert (reply.model_extra or {})["citations"] == []


def test_retrieval_can_be_turned_off(client: openai.OpenAI, uploaded: dict[str, str]) -> None:
    reply = client.chat.completions.create(
        model="tiny", messages=ROUTER_Q, max_tokens=4, temperature=0, extra_body={"use_retrieval": False}
    )
    assert (reply.model_extra or {})["retrieval"] == "off"


def test_large_upload_runs_in_the_background(live_server: LiveServer) -> None:
    text = " ".join(f"Section {i}: the backup schedule runs nightly at {i % 24} hours." for i in range(1500))
    response = _upload(live_server, {"backup.txt": text}, collection="ops")
    assert response.status_code == 202, response.text
    upload_id = response.json()["id"]
    deadline = time.monotonic() + 120
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = httpx.get(f"{live_server.base_url}/v1/documents/uploads/{upload_id}").json()
        if status["state"] == "done":
            break
        time.sleep(0.5)
    assert status["state"] == "done" and status["results"][0]["status"] == "ingested"


BAD_UPLOADS = [
    ("unsupported type", {"tool.exe": b"MZ\x90\x00" + bytes(range(256)) * 4}, 415),
    ("empty file", {"empty.txt": b""}, 422),
    ("file over the ingest limit", {"big.txt": b"word " * 300_000}, 413),
]


@pytest.mark.parametrize(("case", "files", "status"), BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS])
def test_bad_upload_is_a_clear_4xx(
    live_server: LiveServer, uploaded: dict[str, str], case: str, files: dict[str, bytes], status: int
) -> None:
    before = httpx.get(f"{live_server.base_url}/v1/documents").json()["data"]
    response = _upload(live_server, files)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]
    assert httpx.get(f"{live_server.base_url}/v1/documents").json()["data"] == before


def test_oversized_request_is_413(live_server: LiveServer) -> None:
    response = _upload(live_server, {"huge.txt": b"x" * (4 * 1024 * 1024)})
    assert response.status_code == 413
    assert "server.max_upload_mb" in response.json()["error"]["message"]


def test_mixed_batch_ingests_the_good_files(live_server: LiveServer) -> None:
    response = _upload(live_server, {"good.txt": "The cafeteria opens at eight.", "bad.exe": b"\x00\x01"}, "mixed")
    assert response.status_code == 200
    statuses = {r["source"]: r["status"] for r in response.json()["data"]}
    assert statuses == {"good.txt": "ingested", "bad.exe": "failed"}


def test_unknown_collection_is_404(live_server: LiveServer, client: openai.OpenAI, uploaded: dict[str, str]) -> None:
    assert _retrieve(live_server, "router", collections=["nope"]).status_code == 404
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="tiny", messages=ROUTER_Q, extra_body={"collections": ["nope"]})


def test_deleted_document_is_gone_from_retrieval(live_server: LiveServer, uploaded: dict[str, str]) -> None:
    doc_id = uploaded["invoices.txt"]
    assert any(h["document_id"] == doc_id for h in _retrieve(live_server, "late payment fee invoices").json()["data"])
    deleted = httpx.delete(f"{live_server.base_url}/v1/documents/{doc_id}")
    assert deleted.status_code == 200 and deleted.json()["deleted"]
    hits = _retrieve(live_server, "late payment fee invoices", k=10).json()["data"]
    assert all(h["document_id"] != doc_id for h in hits)
    assert httpx.get(f"{live_server.base_url}/v1/documents/{doc_id}").status_code == 404
    assert httpx.delete(f"{live_server.base_url}/v1/documents/{doc_id}").status_code == 404
