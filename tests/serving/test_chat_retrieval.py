"""A chat's retrieval through the real parts (SQLite, FAISS, MiniLM, the tiny model's tokenizer and template): the
stored collections are read once per chat, a request's `top_k` bounds the prompt's sources (passed as a value), and
the scope checks keep their order (403 before 404) when the collections come from the chat.

The engine is the tokenizer alone (`CountingTokenizer`): preparing a chat renders and counts tokens, nothing more.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from assistant.errors import NotFoundError, PermissionDeniedError
from assistant.index.locking import IndexLock
from assistant.parts import Parts
from assistant.prompts import prompt_sources
from serving.catalog import ModelCatalog
from serving.principal import Principal, Role
from serving.prometheus_metrics import Metrics
from serving.schemas import ChatCompletionRequest
from serving.services.chat_service import ChatService
from serving.services.retrieval_service import RetrievalService
from tests.fixtures.retrieval_env import make_settings, shared_embedder
from tests.serving.test_prompt_fitting import CountingTokenizer
from training.registry import AdapterRegistry

PASSAGES = [
    ("fees.txt", "Late payments incur a fee of five percent after thirty days."),
    ("cafeteria.txt", "The cafeteria opens at eight and closes at three on weekdays."),
    ("backups.txt", "Backups run nightly and are kept for thirty days in the archive."),
    ("parking.txt", "Parking permits are renewed every January at the front desk."),
]


class CountingRetrieval(RetrievalService):
    """The server's retrieval service, counting how often the stored collections are read."""

    reads = 0

    def collections(self) -> set[str]:
        self.reads += 1
        return super().collections()


@pytest.fixture(scope="module")
def chat(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ChatService:
    from ingest.ingest_service import IngestService

    settings = make_settings(tmp_path_factory.mktemp("chat-retrieval") / "data", retrieval={"relevance_threshold": 0})
    ingest = IngestService.open(settings, shared_embedder())
    assert all(r.ok for r in ingest.ingest_files([(n, t.encode()) for n, t in PASSAGES], "kb"))
    ingest.close()
    parts = Parts(settings, embedder=shared_embedder())
    retrieval = CountingRetrieval(parts.retriever, parts.db, IndexLock(), Metrics())
    catalog = ModelCatalog("tiny", AdapterRegistry(parts.db, settings.adapters_dir))
    engine = CountingTokenizer(tiny_model_dir, max_model_len=512)
    return ChatService(settings, engine, catalog, parts.db, retrieval=retrieval)  # type: ignore[arg-type]


def _request(**fields: object) -> ChatCompletionRequest:
    question = {"role": "user", "content": "How much is the fee for late payments?"}
    return ChatCompletionRequest.model_validate({"model": "tiny", "messages": [question], "max_tokens": 8, **fields})


def test_collections_are_read_once_per_chat_and_top_k_bounds_the_sources(chat: ChatService) -> None:
    retrieval = chat.retrieval
    assert isinstance(retrieval, CountingRetrieval)
    configured = chat.settings.retrieval.top_k
    for top_k, collections in ((1, ["kb"]), (configured + 1, None)):
        before = retrieval.reads
        prepared = asyncio.run(chat.prepare(_request(top_k=top_k, collections=collections)))
        assert retrieval.reads - before == 1, collections  # scope check and the "any documents?" check share one read
        assert prepared.retrieval == "rag"
        # the second path: the prompt's sources as the shared rule makes them with this top_k
        expected = prompt_sources(prepared.query, prepared.hits, chat.settings, top_k)
        assert [s.chunk_id for s in prepared.prompt_sources] == [s.chunk_id for s in expected]
        assert len(prepared.prompt_sources) == min(top_k, len(prepared.hits)) and prepared.prompt_sources
    assert chat.settings.retrieval.top_k == configured  # the request's value was passed, the settings left alone


def test_scope_refuses_unreadable_before_unknown(chat: ChatService) -> None:
    member = Principal(name="hr", collections=frozenset({"hr"}), role=Role.MEMBER, owner="key:hr", authenticated=True)
    with pytest.raises(PermissionDeniedError):  # not readable: 403, even though "kb" exists and "nope" does not
        asyncio.run(chat.prepare(_request(collections=["kb", "nope"]), member))
    with pytest.raises(NotFoundError, match="unknown collection"):
        asyncio.run(chat.prepare(_request(collections=["kb", "nope"])))
