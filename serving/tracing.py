"""OpenTelemetry traces of chats, exported over OTLP/HTTP when `server.otlp_endpoint` is set.

Contract: `configure(settings)` (the app's lifespan) installs this process's tracer provider: spans are always made
(so every chat has a trace id, stored with it and sent back as the `X-Trace-Id` header) and exported in batches to
`server.otlp_endpoint` when one is set; `shutdown()` flushes them. `tracer()` is the tracer the chat path uses.
A chat's trace is one `chat` span with the children `retrieve`, `rerank` (the reranker runs inside the retriever's
search, so its time is part of `retrieve`; the span carries its scores), `prompt_fit`, `queue` (waiting for a
generation slot) and `generate`; attributes carry the chunk ids, their scores and the token counts (`attributes`).
`trace_id_hex(span)` is the 32-hex-digit id stored in `chat_records.trace_id`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from assistant.engine import GenerationChunk
from assistant.retrieval import Hit
from assistant.settings import Settings

if TYPE_CHECKING:
    from serving.services.chat_service import PreparedChat

log = logging.getLogger(__name__)
_provider: TracerProvider | None = None


def configure(settings: Settings) -> None:
    global _provider
    provider = TracerProvider(resource=Resource.create({"service.name": "assistant-platform"}))
    endpoint = settings.server.otlp_endpoint
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), schedule_delay_millis=500))
        log.info("exporting chat traces to %s", endpoint)
    _provider = provider


def shutdown() -> None:
    if _provider is not None:
        _provider.shutdown()


def tracer() -> trace.Tracer:
    global _provider
    if _provider is None:  # a chat service used outside the app (tests, the CLI): spans with ids, exported nowhere
        _provider = TracerProvider()
    return _provider.get_tracer("assistant.serving")


def trace_id_hex(span: trace.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


def attributes(span: trace.Span, **values: Any) -> None:
    """Set attributes, skipping None (OpenTelemetry takes str, bool, int, float and sequences of one of them)."""
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, Sequence) and not isinstance(value, str):
            value = list(value)
        span.set_attribute(name, value)


def current_trace_id() -> str | None:
    """The trace id of the current span, or None outside a trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def retrieval_attributes(span: trace.Span, hits: list[Hit], mode: str, reranker: str | None) -> None:
    """The `retrieve` span's hits, and a `rerank` child carrying the reranker's scores (none configured: empty)."""
    attributes(
        span,
        **{
            "retrieval.mode": mode,
            "retrieval.chunk_ids": [hit.chunk_id for hit in hits],
            "retrieval.scores": [float(hit.score) for hit in hits],
            "retrieval.dense_scores": [float(hit.dense_score or 0.0) for hit in hits],
        },
    )
    reranked = [hit for hit in hits if hit.rerank_score is not None]
    with tracer().start_as_current_span("rerank") as rerank:
        attributes(
            rerank,
            **{
                "rerank.model": reranker or "none",
                "rerank.chunk_ids": [hit.chunk_id for hit in reranked],
                "rerank.scores": [float(hit.rerank_score or 0.0) for hit in reranked],
            },
        )


def prompt_attributes(span: trace.Span, chat: PreparedChat) -> None:
    attributes(
        span,
        **{
            "prompt.tokens": chat.prompt_tokens,
            "prompt.chunk_ids": [source.chunk_id for source in chat.prompt_sources],
            "prompt.max_tokens": chat.options.max_tokens,
        },
    )


async def traced_generation(
    chat: PreparedChat, chunks: AsyncIterator[GenerationChunk]
) -> AsyncIterator[GenerationChunk]:
    """`chunks` passed through inside a `generate` span (child of the chat's span, which may have ended: a stream
    goes on after its route returned); a fixed answer generates nothing and gets no span."""
    if chat.fixed_answer is not None:
        async for chunk in chunks:
            yield chunk
        return
    span = tracer().start_span("generate", context=chat.trace_context)
    started, first, last = time.perf_counter(), None, None
    try:
        async for chunk in chunks:
            first = first if first is not None else time.perf_counter() - started
            last = chunk
            yield chunk
    finally:
        attributes(
            span,
            **{
                "gen.model": chat.model,
                "gen.adapter": chat.adapter.name if chat.adapter is not None else None,
                "gen.prompt_tokens": chat.prompt_tokens,
                "gen.completion_tokens": last.completion_tokens if last is not None else 0,
                "gen.finish_reason": last.finish_reason if last is not None else None,
                "gen.ttft_s": first,
            },
        )
        span.end()
