"""Prompt fitting: the same turns and sources as dropping one at a time, in work linear in the conversation, off the
event loop; the message count bound; null text parts are a 400, not a 500.

Uses the tiny model's real tokenizer and chat template (no engine: fitting only renders and counts tokens).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from assistant.errors import InvalidRequestError
from assistant.prompts import build_rag_messages, prompt_sources
from assistant.retrieval import Hit
from assistant.settings import Settings
from assistant.storage import Database
from serving.catalog import ModelCatalog
from serving.engines.tokenizer_mixin import TokenizerMixin
from serving.schemas import ChatCompletionRequest
from serving.services.chat_service import ChatService, PreparedChat
from training.registry import AdapterRegistry


class CountingTokenizer(TokenizerMixin):
    """The tiny model's tokenizer and template, counting the characters it tokenizes and the threads it runs on."""

    def __init__(self, model_dir: Path, max_model_len: int) -> None:
        self._load_tokenizer(model_dir)
        self.max_model_len = max_model_len
        self.chars = 0
        self.threads: set[int] = set()

    def count_tokens(self, text: str) -> int:
        self.chars += len(text)
        self.threads.add(threading.get_ident())
        return super().count_tokens(text)


def _reference_fit(engine: CountingTokenizer, chat: PreparedChat, reserve: int) -> str:
    """The original rule, one drop at a time: oldest non-system turn before the last, then the last source."""
    turns, hits = list(chat.messages), list(chat.hits)
    while True:
        sources = prompt_sources(chat.query, hits, Settings()) if chat.retrieval == "rag" else None
        prompt = engine.render_chat(build_rag_messages(turns, sources))
        if engine.count_tokens(prompt) + reserve <= engine.max_model_len:
            return prompt
        droppable = [i for i, t in enumerate(turns[:-1]) if t["role"] != "system"]
        if droppable:
            del turns[droppable[0]]
        elif len(hits) > 1:
            hits.pop()
        else:
            return prompt


def _conversation(turns: int, words: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You answer briefly."}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"Question {i}: " + "invoice payment " * words})
        messages.append({"role": "assistant", "content": f"Answer {i}: " + "thirty days " * words})
    messages.append({"role": "user", "content": "And the late fee?"})
    return messages


def _hits(count: int, words: int) -> list[Hit]:
    return [
        Hit(
            i,
            f"Passage {i}: " + "late payments incur a fee " * words,
            f"doc-{i}",
            f"Doc {i}",
            "s.txt",
            "kb",
            None,
            None,
            0,
            10,
            score=1.0 - i / 100,
        )
        for i in range(count)
    ]


def _service(engine: CountingTokenizer, tmp_path: Path, **server: Any) -> ChatService:
    settings = Settings(data_dir=tmp_path, server=server)
    db = Database(settings.resolved_database_url)
    db.migrate()
    catalog = ModelCatalog("tiny", AdapterRegistry(db, settings.adapters_dir))
    return ChatService(settings, engine, catalog, db)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> CountingTokenizer:
    return CountingTokenizer(tiny_model_dir, max_model_len=512)


@pytest.mark.parametrize(
    ("turns", "words", "hits", "max_tokens"),
    [(0, 5, 0, 16), (3, 5, 0, 64), (20, 8, 0, 64), (60, 3, 0, 100), (2, 4, 6, 64), (30, 6, 5, 200), (1, 2, 8, 400)],
)
def test_fitting_keeps_what_dropping_one_at_a_time_keeps(
    engine: CountingTokenizer, tmp_path: Path, turns: int, words: int, hits: int, max_tokens: int
) -> None:
    service = _service(engine, tmp_path)
    messages = _conversation(turns, words)
    request = ChatCompletionRequest(model="tiny", messages=messages, max_tokens=max_tokens)  # type: ignore[arg-type]
    mode = "rag" if hits else "off"

    def prepared(name: str) -> PreparedChat:
        options: Any = None
        return PreparedChat(name, "tiny", None, messages, "", 0, options, hits=_hits(hits, words), retrieval=mode)

    chat = prepared("id")
    expected = _reference_fit(engine, prepared("reference"), max_tokens)
    try:
        service._fit_prompt(chat, request)
    except InvalidRequestError:
        assert engine.count_tokens(expected) + max_tokens > engine.max_model_len  # the reference could not fit either
        return
    assert chat.prompt == expected
    assert chat.prompt_tokens + max_tokens <= engine.max_model_len
    assert chat.messages == messages  # the stored conversation is the request's own


def test_fitting_work_is_linear_in_the_conversation(engine: CountingTokenizer, tmp_path: Path) -> None:
    service = _service(engine, tmp_path)
    for turns in (40, 160):
        messages = _conversation(turns, 10)
        request = ChatCompletionRequest(model="tiny", messages=messages, max_tokens=32)  # type: ignore[arg-type]
        chat = PreparedChat("id", "tiny", None, messages, "", 0, None)  # type: ignore[arg-type]
        engine.chars = 0
        service._fit_prompt(chat, request)
        conversation_chars = sum(len(m["content"]) for m in messages)
        # each turn measured once, plus a few full renders: a small multiple of the text, not turns x text
        assert engine.chars < 5 * conversation_chars, (turns, engine.chars, conversation_chars)


def test_prepare_fits_off_the_event_loop_and_bounds_messages(engine: CountingTokenizer, tmp_path: Path) -> None:
    service = _service(engine, tmp_path, max_messages=50)

    async def run(messages: list[dict[str, str]]) -> set[int]:
        request = ChatCompletionRequest(model="tiny", messages=messages, max_tokens=8, use_retrieval=False)  # type: ignore[arg-type]
        engine.threads.clear()
        await service.prepare(request)
        return engine.threads - {threading.get_ident()}

    assert asyncio.run(run(_conversation(5, 3)))  # counted in a worker thread, not the loop's
    with pytest.raises(InvalidRequestError) as caught:
        asyncio.run(run(_conversation(30, 1)))
    assert caught.value.param == "messages" and "server.max_messages" in caught.value.message


@pytest.mark.parametrize(
    "content",
    [[{"type": "text", "text": None}], [{"type": "text"}], [{"type": "text", "text": 5}], [{"type": "image_url"}]],
)
def test_bad_content_parts_are_validation_errors(content: list[dict[str, Any]]) -> None:
    with pytest.raises(ValidationError):
        ChatCompletionRequest(model="tiny", messages=[{"role": "user", "content": content}])  # type: ignore[list-item]
