"""Stored text holds no control characters (NUL, ESC, DEL, C1 ...) but tab, newline and carriage return: chat
messages, feedback corrections and comments, imported preference pairs, adapter, collection and source names and
document file names each get a 400 naming the field, through the real server, and nothing is stored; the same text
with tabs and newlines is accepted. One check does it all: `serving.schemas.check_text` / `PlainText`."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from serving.schemas import control_character_problem
from tests.fixtures.live_server import LiveServer

BROWSERLESS = {"X-Requested-With": "test"}  # a state-changing request that is not a browser form


def _call(server: LiveServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {**BROWSERLESS, **kwargs.pop("headers", {})}
    return httpx.request(method, f"{server.base_url}{path}", headers=headers, timeout=120, **kwargs)


def _refused(response: httpx.Response, param: str, char: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert f"U+{ord(char):04X}" in error["message"] and "control character" in error["message"], error
    return str(error["message"])


def _chat(server: LiveServer, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    body = {"model": "tiny", "messages": messages, "max_tokens": 2, "use_retrieval": False, **extra}
    return _call(server, "POST", "/v1/chat/completions", json=body)


def test_the_check_allows_tab_newline_return_and_nothing_else_below_space() -> None:
    allowed = {"\t", "\n", "\r"}
    for code in [*range(0x20), *range(0x7F, 0xA0)]:
        problem = control_character_problem(f"ab{chr(code)}")
        assert (problem is None) == (chr(code) in allowed), hex(code)
        if problem:
            assert f"U+{code:04X} at position 2" in problem
    assert control_character_problem("naïve — 東京 🙂 \u200b") is None  # printable Unicode is text


def test_chat_messages_and_collections(live_server: LiveServer) -> None:
    before = _chats(live_server)
    _refused(_chat(live_server, [{"role": "user", "content": "hi\x00there"}]), "messages.0.content", "\x00")
    system = {"role": "system", "content": "be \x1b[31mred"}
    _refused(_chat(live_server, [system, {"role": "user", "content": "hi"}]), "messages.0.content", "\x1b")
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b\x7f"}]  # OpenAI content parts
    _refused(_chat(live_server, [{"role": "user", "content": parts}]), "messages.0.content", "\x7f")
    ok = [{"role": "user", "content": "hi"}]
    _refused(_chat(live_server, ok, collections=["team\x00"]), "collections.0", "\x00")
    assert _chats(live_server) == before  # nothing refused was stored
    accepted = _chat(live_server, [{"role": "user", "content": "Tabs\tand\r\nnewlines are text."}])
    assert accepted.status_code == 200, accepted.text
    assert _chats(live_server) == before + 1


def _chats(server: LiveServer) -> int:
    from sqlalchemy import func, select

    from assistant.storage import ChatRecord

    with server.state.db.session() as session:
        return int(session.scalar(select(func.count(ChatRecord.id))) or 0)


def _pair_counts(server: LiveServer) -> dict[str, int]:
    return dict(_call(server, "GET", "/v1/preferences?limit=1").json()["counts"])


def test_feedback_correction_and_comment(live_server: LiveServer) -> None:
    reply = _chat(live_server, [{"role": "user", "content": "What is the capital of France?"}])
    assert reply.status_code == 200, reply.text
    response_id = reply.json()["id"]
    before = _pair_counts(live_server)
    body = {"response_id": response_id, "rating": -1, "correction": "Paris\x00"}
    _refused(_call(live_server, "POST", "/v1/feedback", json=body), "correction", "\x00")
    body = {"response_id": response_id, "rating": -1, "comment": "beep\x07"}
    _refused(_call(live_server, "POST", "/v1/feedback", json=body), "comment", "\x07")
    assert _pair_counts(live_server) == before
    body = {"response_id": response_id, "rating": -1, "correction": "Paris.\n\tIt is the capital."}
    accepted = _call(live_server, "POST", "/v1/feedback", json=body)
    assert accepted.status_code == 200, accepted.text
    assert len(accepted.json()["preference_pairs"]) == 1


def test_imported_pairs_refused_whole(live_server: LiveServer) -> None:
    pairs = [
        {"prompt": "A clean question?", "chosen": "A clean answer.", "rejected": "No."},
        {"prompt": "Second?", "chosen": "Yes\x00, with a NUL.", "rejected": "No."},
    ]
    body = "\n".join(json.dumps(p) for p in pairs).encode()
    before = _pair_counts(live_server)
    response = _call(live_server, "POST", "/v1/preferences", files={"file": ("pairs.jsonl", body)})
    message = _refused(response, "file", "\x00")
    assert message.startswith("pairs.jsonl#1: chosen: "), message  # the second record (counted from 0)
    assert _pair_counts(live_server) == before  # the clean first pair was not stored either
    conversation = {"prompt": [{"role": "user", "content": "q\x1b"}], "chosen": "a", "rejected": "b"}
    response = _call(live_server, "POST", "/v1/preferences", files={"file": ("c.jsonl", json.dumps(conversation))})
    assert "prompt[0].content" in _refused(response, "file", "\x1b")


def _multipart(filename: str, collection: str) -> tuple[bytes, str]:
    """A multipart body written by hand: HTTP clients percent-encode control characters in file names, a hostile
    client need not."""
    boundary = "----stored-text-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="collection"\r\n\r\n{collection}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
        f"Content-Type: text/plain\r\n\r\nThe VPN drops after eight hours.\r\n--{boundary}--\r\n"
    )
    return body.encode(), f"multipart/form-data; boundary={boundary}"


def _documents(server: LiveServer) -> set[str]:
    return {d["source"] for d in _call(server, "GET", "/v1/documents?limit=1000").json()["data"]}


@pytest.mark.parametrize(
    ("filename", "collection", "param", "char"),
    [
        ("vpn\x00.txt", "stored-text", "files.filename", "\x00"),
        ("vpn\x1b[2J.txt", "stored-text", "files.filename", "\x1b"),
        ("vpn.txt", "team\x01", "collection", "\x01"),
    ],
)
def test_document_filename_and_collection(
    live_server: LiveServer, filename: str, collection: str, param: str, char: str
) -> None:
    before = _documents(live_server)
    content, content_type = _multipart(filename, collection)
    response = _call(live_server, "POST", "/v1/documents", content=content, headers={"Content-Type": content_type})
    if param == "collection":  # the name's pattern refuses it (pydantic's message names the pattern, not U+...)
        assert response.status_code == 400 and response.json()["error"]["param"] == param, response.text
    else:
        _refused(response, param, char)
    assert _documents(live_server) == before


def test_a_clean_hand_written_upload_is_stored(live_server: LiveServer) -> None:
    """The hand-written multipart body above is well-formed: the same request with a clean name is stored."""
    content, content_type = _multipart("vpn\tnotes.txt", "stored-text")  # a tab is allowed in a file name
    response = _call(live_server, "POST", "/v1/documents", content=content, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    assert "vpn\tnotes.txt" in _documents(live_server)


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/training/jobs", {"method": "sft", "name": "helpdesk\x00"}, "name"),
        ("/v1/sources", {"path": "/tmp", "name": "docs\x00"}, "name"),
        ("/v1/sources", {"path": "/tmp", "collection": "docs\x7f"}, "collection"),
    ],
)
def test_adapter_and_source_names(live_server: LiveServer, path: str, body: dict[str, Any], param: str) -> None:
    response = _call(live_server, "POST", path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
