"""Chat completions: retrieve, build the RAG prompt, fit it into the context, generate, store.

Contract:
- `ChatService.prepare(request, principal)` does everything that can fail before generation (unknown model or
  collection, a model or collection the key may not use, oversized messages, a prompt that cannot fit, an adapter the
  engine cannot load) and raises project errors (4xx). An adapter version is loaded through the engine's add call
  before its first request (`load_adapter`), so its files never fail inside an engine step. Retrieval is on by
  default: the query is the last user turn, joined with the previous user turn when it is a short follow-up
  (`retrieval.condense_below_words`); the hits become numbered sources in the prompt through
  `assistant.prompts.prompt_sources` (count, per-source trimming, order) and `build_rag_messages`, the functions
  training uses too. Citations and `sources` follow the prompt's numbering and carry the text the model saw.
- Grounded answers (retrieval mode 'rag') get the `answer` settings' generation defaults when the request does not set
  them: `answer.max_tokens`, `answer.temperature` (greedy) and a stop at the first line break
  (`answer.stop_at_newline`). A grounded answer that cites no source and does not abstain gets " [n]" appended, n the
  source that supports it best (`answer.cite_when_missing`, `answer_metrics.supporting_source`); streamed as a last
  content delta.
- When the searched collections hold documents but no hit reaches `retrieval.relevance_threshold`, the answer is the
  fixed "I don't know" text and no tokens are generated (nothing to ground an answer in). When they hold no documents
  at all, or the request sets `use_retrieval: false`, it is a plain chat.
- Context rule: the prompt plus `max_tokens` must fit `engine.max_model_len`. Oldest history turns go first (the
  system message and the last user turn stay), then the lowest-ranked sources; if it still cannot fit, 400.
- `answer(chat)` returns the finished `Answer` (text, finish reason, completion tokens); `answer_stream(chat)` yields
  the text pieces as they are generated, then the `Answer`. The prepared chat carries the citations (document,
  page/section, chunk id, score) and the sources (the chunks used). The OpenAI JSON and SSE events are made at the
  edge (`serving.openai_format`), never here.
- Every finished response is stored as a `ChatRecord` (messages, exact prompt, retrieved chunk ids, adapter,
  sampling, answer). A stream whose consumer goes away aborts its engine request.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from opentelemetry import context as otel_context

from assistant.answer_metrics import cited_indices, is_abstention, supporting_source
from assistant.engine import AdapterRef, GenerationChunk, GenerationEngine, SamplingOptions
from assistant.errors import InvalidRequestError, UnprocessableError
from assistant.prompts import NO_SOURCES_ANSWER, Source, build_rag_messages, prompt_sources
from assistant.retrieval import Hit
from assistant.settings import Settings
from assistant.storage import ChatRecord, Database
from serving import tracing
from serving.catalog import ModelCatalog
from serving.principal import ANONYMOUS, Principal
from serving.prometheus_metrics import Metrics
from serving.schemas import ChatCompletionRequest

log = logging.getLogger(__name__)


class Retrieval(Protocol):
    """What the chat service needs from retrieval (`serving.services.retrieval_service.RetrievalService`)."""

    def scope(
        self, requested: list[str] | None, principal: Principal, known: set[str] | None = ...
    ) -> list[str] | None: ...
    def collections(self) -> set[str]: ...
    async def search(
        self,
        query: str,
        k: int | None,
        collections: list[str] | None,
        mode: str = ...,
        principal: Principal | None = ...,
    ) -> list[Hit]: ...


@dataclass(frozen=True)
class Answer:
    """A finished, stored answer: the domain value the routes and the CLI turn into their own formats."""

    text: str
    finish_reason: str | None
    completion_tokens: int


@dataclass
class PreparedChat:
    """Everything needed to run one chat request, decided before any token is generated."""

    id: str
    model: str
    adapter: AdapterRef | None
    messages: list[dict[str, str]]
    prompt: str
    prompt_tokens: int
    options: SamplingOptions
    hits: list[Hit] = field(default_factory=list)
    fixed_answer: str | None = None
    retrieval: str = "off"
    created: int = field(default_factory=lambda: int(time.time()))
    include_usage: bool = False
    owner: str | None = None  # the caller's key fingerprint (`Principal.owner`), stored on the chat record
    query: str = ""
    prompt_sources: list[Source] = field(default_factory=list)
    trace_id: str | None = None  # the OpenTelemetry trace of the request (serving.tracing), stored with the chat
    trace_context: Any = None  # its context: the parent of the `generate` span, which may run after the route returned

    def shown(self) -> list[tuple[Hit, Source]]:
        """The hits in the prompt, in prompt order (source [n] is the n-th), with the text the model saw."""
        by_id = {hit.chunk_id: hit for hit in self.hits}
        return [(by_id[s.chunk_id], s) for s in self.prompt_sources if s.chunk_id in by_id]

    def citations(self) -> list[dict[str, Any]]:
        return [citation(i, hit) for i, (hit, _) in enumerate(self.shown(), start=1)]

    def sources(self) -> list[dict[str, Any]]:
        return [
            {"index": i, "chunk_id": hit.chunk_id, "text": source.text}
            for i, (hit, source) in enumerate(self.shown(), start=1)
        ]


def citation(index: int, hit: Hit) -> dict[str, Any]:
    return {
        "index": index,
        "document_id": hit.document_id,
        "title": hit.title,
        "source": hit.source,
        "collection": hit.collection,
        "page": hit.page,
        "section": hit.section,
        "chunk_id": hit.chunk_id,
        "char_start": hit.char_start,
        "char_end": hit.char_end,
        "score": hit.score,
    }


class ChatService:
    """Runs chat completions against the engine."""

    def __init__(
        self,
        settings: Settings,
        engine: GenerationEngine,
        catalog: ModelCatalog,
        db: Database,
        metrics: Metrics | None = None,
        retrieval: Retrieval | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.catalog = catalog
        self.db = db
        self.metrics = metrics
        self.retrieval = retrieval
        self._overhead: int | None = None  # template tokens per message, measured on first use
        self._loads: dict[str, str | None] = {}  # engine identity -> None (loaded) or why it could not be loaded

    async def load_adapter(self, adapter: AdapterRef) -> None:
        """Load a version through the engine's add call before its first request (once per identity), so a bad file
        fails this request alone (422, remembered for that version) instead of failing inside an engine step, which
        would stop the engine for every caller."""
        if adapter.name not in self._loads:
            try:
                await self.engine.add_adapter(adapter)
                self._loads[adapter.name] = None
            except Exception as exc:  # the engine refused the files; it keeps serving everything else
                log.warning("adapter %s could not be loaded from %s: %s", adapter.name, adapter.path, exc)
                self._loads[adapter.name] = str(exc).splitlines()[-1][:500] if str(exc) else type(exc).__name__
        error = self._loads[adapter.name]
        if error is not None:
            raise UnprocessableError(f"{adapter.name} could not be loaded by the engine: {error}", param="model")

    # ------------------------------------------------------------------ preparing

    async def prepare(self, request: ChatCompletionRequest, principal: Principal = ANONYMOUS) -> PreparedChat:
        adapter = self.catalog.resolve(request.model, principal)
        if adapter is not None:
            await self.load_adapter(adapter)
        history = [message.as_dict() for message in request.messages]
        self._check_message_sizes(history)
        hits, mode = await self._traced_retrieve(request, history, principal)
        chat = PreparedChat(
            f"chatcmpl-{uuid.uuid4().hex}",
            request.model,
            adapter,
            history,
            "",
            0,
            SamplingOptions(),
            hits=hits,
            retrieval=mode,
            include_usage=bool(request.stream_options and request.stream_options.include_usage),
            owner=principal.owner,
            query=self.retrieval_query(history),
        )
        if mode == "no_relevant_sources":
            chat.fixed_answer = NO_SOURCES_ANSWER
        chat.trace_context, chat.trace_id = otel_context.get_current(), tracing.current_trace_id()
        with tracing.tracer().start_as_current_span("prompt_fit") as span:
            await asyncio.to_thread(self._fit_prompt, chat, request)  # tokenizing a long conversation blocks
            tracing.prompt_attributes(span, chat)
        self._grounded_defaults(chat, request)
        return chat

    def _sources(self, chat: PreparedChat, request: ChatCompletionRequest) -> list[Source]:
        """The prompt's sources (`assistant.prompts.prompt_sources`; a request's top_k replaces retrieval.top_k)."""
        chat.prompt_sources = prompt_sources(chat.query, chat.hits, self.settings, request.top_k)
        return chat.prompt_sources

    def _messages(self, turns: list[dict[str, str]], sources: list[Source] | None) -> list[dict[str, str]]:
        return build_rag_messages(turns, sources, style=self.settings.answer.prompt_style)

    def _grounded_defaults(self, chat: PreparedChat, request: ChatCompletionRequest) -> None:
        """A grounded answer is short: `answer.max_tokens` and a newline stop, unless the request set its own."""
        if chat.retrieval != "rag":
            return
        options, answer = chat.options, self.settings.answer
        if request.max_tokens is None and request.max_completion_tokens is None:
            options = replace(options, max_tokens=min(options.max_tokens, answer.max_tokens))
        if not request.stop and answer.stop_at_newline:
            options = replace(options, stop=("\n",))
        if "temperature" not in request.model_fields_set:
            options = replace(options, temperature=answer.temperature)
        chat.options = options

    def _check_message_sizes(self, history: list[dict[str, str]]) -> None:
        most = self.settings.server.max_messages
        if len(history) > most:
            raise InvalidRequestError(
                f"messages has {len(history)} entries; the limit is {most} (server.max_messages)", param="messages"
            )
        limit = self.settings.server.max_message_chars
        for i, message in enumerate(history):
            if len(message["content"]) > limit:
                raise InvalidRequestError(
                    f"messages.{i}.content is {len(message['content'])} characters; the limit is {limit} "
                    "(server.max_message_chars)",
                    param=f"messages.{i}.content",
                )

    async def _traced_retrieve(
        self, request: ChatCompletionRequest, history: list[dict[str, str]], principal: Principal
    ) -> tuple[list[Hit], str]:
        with tracing.tracer().start_as_current_span("retrieve") as span:
            hits, mode = await self._retrieve(request, history, principal)
            tracing.retrieval_attributes(span, hits, mode, self.settings.models.reranker)
        return hits, mode

    async def _retrieve(
        self, request: ChatCompletionRequest, history: list[dict[str, str]], principal: Principal
    ) -> tuple[list[Hit], str]:
        """(hits, retrieval mode): 'off', 'no_documents', 'no_relevant_sources' or 'rag'."""
        if not request.use_retrieval or self.retrieval is None:
            return [], "off"
        available = await asyncio.to_thread(self.retrieval.collections)  # read once per chat
        collections = self.retrieval.scope(request.collections, principal, available)
        if not (available if collections is None else available & set(collections)):
            return [], "no_documents"
        query = self.retrieval_query(history)
        hits = await self.retrieval.search(query, request.top_k, collections, request.retrieval_mode, principal)
        threshold = self.settings.retrieval.relevance_threshold
        if threshold > 0 and not any((hit.dense_score or 0.0) >= threshold for hit in hits):
            return [], "no_relevant_sources"
        return hits, "rag"

    def retrieval_query(self, history: list[dict[str, str]]) -> str:
        """The last user turn, joined with the previous user turn when it is a short follow-up."""
        users = [m["content"] for m in history if m["role"] == "user"]
        last = users[-1]
        if len(users) > 1 and len(last.split()) < self.settings.retrieval.condense_below_words:
            return f"{users[-2]}\n{last}"
        return last

    def _fit_prompt(self, chat: PreparedChat, request: ChatCompletionRequest) -> None:
        """Render the prompt, dropping oldest turns then lowest-ranked sources until it fits with max_tokens.

        Linear in the conversation: each droppable turn and each source is measured once, the drops that cover the
        excess are chosen from those sizes (oldest turns first), and the whole prompt is rendered again only to
        confirm; a size estimate that fell short costs one more render, not one per turn.
        """
        asked = request.max_tokens or request.max_completion_tokens
        context = self.engine.max_model_len
        if asked is not None and asked >= context:
            raise InvalidRequestError(
                f"max_tokens={asked} does not fit the model's context of {context} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        reserve = asked or 1
        droppable = [i for i, turn in enumerate(chat.messages[:-1]) if turn["role"] != "system"]
        turn_costs: list[int] | None = None
        dropped = 0
        while True:
            gone = set(droppable[:dropped])
            turns = [turn for i, turn in enumerate(chat.messages) if i not in gone]
            sources = None if chat.retrieval in ("off", "no_documents") else self._sources(chat, request)
            prompt = self.engine.render_chat(self._messages(turns, sources))
            tokens = self.engine.count_tokens(prompt)
            excess = tokens + reserve - context
            if excess <= 0:
                break
            if dropped < len(droppable):
                if turn_costs is None:
                    overhead = self._message_overhead()
                    turn_costs = [self.engine.count_tokens(chat.messages[i]["content"]) + overhead for i in droppable]
                dropped += _covering(turn_costs[dropped:], excess)
            elif len(chat.hits) > 1:
                costs = [self.engine.count_tokens(hit.text) for hit in reversed(chat.hits[1:])]
                del chat.hits[len(chat.hits) - _covering(costs, excess) :]
            else:
                break
        if tokens + reserve > context:
            raise InvalidRequestError(
                f"the prompt is {tokens} tokens and max_tokens {reserve}, beyond the model's context of {context} "
                "tokens even with the oldest turns and the lowest-ranked sources removed: shorten the last message"
                + ("" if asked is None else " or lower max_tokens"),
                param="max_tokens" if asked is not None and tokens < context else "messages",
                code="context_length_exceeded",
            )
        chat.prompt, chat.prompt_tokens = prompt, tokens  # chat.messages keeps the request's own turns
        max_tokens = asked or min(self.settings.server.default_max_tokens, context - tokens)
        chat.options = SamplingOptions(
            max_tokens=max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=tuple(request.stop or ()),
            seed=request.seed,
        )

    def _message_overhead(self) -> int:
        """Template tokens one message adds besides its content (measured once on a user/assistant exchange)."""
        if self._overhead is None:
            ask, reply = {"role": "user", "content": "x"}, {"role": "assistant", "content": "x"}
            try:
                one = self.engine.count_tokens(self.engine.render_chat([ask]))
                three = self.engine.count_tokens(self.engine.render_chat([ask, reply, ask]))
                self._overhead = max(1, (three - one - 2 * self.engine.count_tokens("x")) // 2)
            except Exception:  # a template that refuses the probe: assume the least overhead (drops stay minimal)
                self._overhead = 1
        return self._overhead

    # ------------------------------------------------------------------ generating

    async def _generate(self, chat: PreparedChat) -> AsyncIterator[GenerationChunk]:
        """The engine's stream (or the fixed answer), timed for the metrics."""
        if chat.fixed_answer is not None:
            yield GenerationChunk(chat.fixed_answer, chat.prompt_tokens, 0, "stop")
            return
        started = time.perf_counter()
        ttft: float | None = None
        last: GenerationChunk | None = None
        async for chunk in self.engine.generate(chat.id, chat.prompt, chat.options, chat.adapter):
            if ttft is None:
                ttft = time.perf_counter() - started
            last = chunk
            yield chunk
        if self.metrics is not None and last is not None and ttft is not None:
            # The resolved identity, never the request's text: `team@1` and `team@v0001` are one series, and no
            # caller can mint new label values.
            label = chat.adapter.name if chat.adapter is not None else self.catalog.base_name
            self.metrics.observe_generation(label, ttft, last.completion_tokens, time.perf_counter() - started)

    def _citation_suffix(self, chat: PreparedChat, text: str) -> str:
        """ " [n]" for a grounded answer that cites nothing (n: the source supporting it best), else ""."""
        if chat.retrieval != "rag" or chat.fixed_answer is not None or not self.settings.answer.cite_when_missing:
            return ""
        if not text.strip() or cited_indices(text) or is_abstention(text):
            return ""
        number = supporting_source(text, [source.text for _, source in chat.shown()])
        return "" if number is None else f" [{number}]"

    async def answer(self, chat: PreparedChat) -> Answer:
        """The whole answer, stored."""
        async for item in self.answer_stream(chat):
            if isinstance(item, Answer):
                return item
        raise AssertionError("answer_stream ends with the Answer")  # pragma: no cover

    async def answer_stream(self, chat: PreparedChat) -> AsyncIterator[str | Answer]:
        """The answer's text pieces as they are generated, then the finished `Answer` (stored before it comes)."""
        text, last = "", None
        async for piece in tracing.traced_generation(chat, self._generate(chat)):
            text += piece.text
            last = piece
            if piece.text:
                yield piece.text
        if suffix := self._citation_suffix(chat, text):
            text += suffix
            yield suffix
        answer = Answer(text, last.finish_reason if last else "stop", last.completion_tokens if last else 0)
        await self._store(chat, answer)
        yield answer

    async def _store(self, chat: PreparedChat, answer: Answer) -> None:
        record = ChatRecord(
            id=chat.id,
            model=chat.model,
            adapter=chat.adapter.name if chat.adapter else None,
            messages=chat.messages,
            prompt=chat.prompt,
            retrieved_chunk_ids=[hit.chunk_id for hit, _ in chat.shown()],
            sampling=chat.options.as_dict(),
            answer=answer.text,
            finish_reason=answer.finish_reason,
            prompt_tokens=chat.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            owner=chat.owner,
            trace_id=chat.trace_id,
            citations=chat.citations(),
        )
        await asyncio.to_thread(self._insert, record)

    def _insert(self, record: ChatRecord) -> None:
        with self.db.session() as session:
            session.add(record)


def _covering(costs: list[int], excess: int) -> int:
    """How many of `costs`, taken from the front, add up to at least `excess` (at least one, at most all)."""
    total = 0
    for count, cost in enumerate(costs, start=1):
        total += cost
        if total >= excess:
            return count
    return max(1, len(costs))
