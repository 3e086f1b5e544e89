"""Text embedders: the `Embedder` protocol and its sentence-transformers implementation.

Contract: `embed(texts)` returns a float32 array of shape (len(texts), dim) whose rows are L2-normalised, so an
inner product is a cosine similarity. `max_tokens` is the most content tokens (special tokens excluded) one text may
have without being truncated by the model; `count_tokens` counts with the model's own tokenizer.
`make_embedder(settings)` is the one place that chooses an implementation; the model is loaded from a local path
only (never a hub download).

Backends (`models.embedder_backend`): 'torch' runs sentence-transformers; 'torch-bf16' the same under bfloat16
autocast on CPU (float32 accumulation; vectors within cosine 0.99 of float32, about 0.99998 for MiniLM, so it shares
the float32 space); 'onnx' runs the same weights exported once to ONNX (`assistant.model_files.export_onnx_embedder`,
cached under `<data_dir>/models`) with onnxruntime, applying the model's own pooling and normalisation, so its vectors
equal torch's to float precision; 'onnx-int8' is that export with int8 weights per output channel (activations
products stay float32; cosine about 0.99 to float32 for MiniLM, 1.6x torch's speed with AVX2 only, 2.4x with
AVX-512 VNNI); set by hand it keeps an index of its own (no fidelity is measured then); 'auto' is torch on a GPU and,
on a CPU, the fastest of torch, onnx, onnx-int8 and, where the CPU has bfloat16 instructions (`cpu_has_bf16`),
torch-bf16, as measured once on this machine (`assistant.embedder_choice`, which also checks each runtime's cosine
to float32 and never picks one outside its bounds, so the choice never changes the index's space). Vectors
of different spaces must never share an index: `make_embedder` records the space (`<index_dir>/embedder.json`:
model, precision, dimension) the first time it runs on a data directory and refuses a different one later with the
fix (`assistant index rebuild` re-embeds everything; or set the backend back).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from assistant.durable import write_atomic
from assistant.errors import ConfigError
from assistant.model_files import export_onnx_embedder, resolve_embedder
from assistant.settings import Settings
from assistant.startup import default_device

log = logging.getLogger(__name__)

PROGRESS_MIN_TEXTS = 2_000


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into normalised float32 vectors."""

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


def model_directory(path: Path) -> Path:
    """The sentence-transformers folder inside `path` (registry packages keep it in a `model/` subfolder)."""
    if not (path / "modules.json").is_file() and (path / "model" / "modules.json").is_file():
        return path / "model"
    return path


class TokenCounting:
    """Token counting with the embedder's own tokenizer (`self.tokenizer`), safe from several threads.

    Ingest counts tokens in one thread while it embeds in another; a fast tokenizer keeps its truncation and padding
    mode as state, so every counting call holds one lock and the embedding path uses its own tokenizer instance.
    """

    tokenizer: Any
    _count_lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        with self._count_lock:
            return len(self.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])

    def count_tokens_many(self, texts: list[str]) -> list[int]:
        """`count_tokens` of each text, in one batched tokenizer call."""
        if not texts:
            return []
        with self._count_lock:
            encoded = self.tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def token_starts(self, text: str) -> list[int]:
        """Character offsets where the tokens of `text` start (one fast-tokenizer call; used by the chunker)."""
        with self._count_lock:
            encoded = self.tokenizer(
                text, add_special_tokens=False, truncation=False, verbose=False, return_offsets_mapping=True
            )
        return [int(start) for start, _end in encoded["offset_mapping"]]


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (AVX512-BF16 or AMX-BF16) as torch sees it.

    Without them torch emulates bfloat16 and autocast is slower than float32. torch reads the instruction sets with
    CPUID, so a process whose CPUID is capped (the bench's forced AVX2 path) sees none.
    """
    import torch

    get_capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.8
    if get_capabilities is None:
        return False
    capabilities = get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


class SentenceTransformerEmbedder(TokenCounting):
    """A sentence-transformers model, batched, normalised, on CUDA when available.

    `bf16=True` (CPU): the model runs under bfloat16 autocast (its matrix products in bfloat16 with float32
    accumulation; pooling and normalisation in float32), about 1.5-2x the float32 speed where the CPU has bfloat16
    instructions (`cpu_has_bf16`); its vectors stay within cosine 0.99 of float32 (tests/assistant/test_embedding_bf16).
    """

    def __init__(
        self, model_path: Path | str, batch_size: int = 64, device: str | None = None, bf16: bool = False
    ) -> None:
        from sentence_transformers import SentenceTransformer

        self.batch_size = batch_size
        self.device = device or default_device()
        self.bf16 = bf16 and self.device == "cpu"
        self.model: Any = SentenceTransformer(str(model_path), device=self.device)
        if self.device == "cuda":
            self.model.half()  # fp16 on a GPU: twice the throughput, vectors equal to float precision
        self.tokenizer: Any = self.model.tokenizer
        self._dim = int(self.model.get_embedding_dimension() or 0)
        precision = " bf16" if self.bf16 else ""
        log.info("embedder %s loaded on %s%s (dim %d)", model_path, self.device, precision, self._dim)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        special = self.tokenizer.num_special_tokens_to_add(pair=False)
        return int(self.model.max_seq_length) - int(special)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.bf16:
            return self._embed_bf16(texts)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=len(texts) >= PROGRESS_MIN_TEXTS,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _embed_bf16(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            pooled = self.model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_tensor=True,
                show_progress_bar=len(texts) >= PROGRESS_MIN_TEXTS,
            )
        unit = torch.nn.functional.normalize(pooled.float(), dim=1)  # normalised in float32, not bfloat16
        return np.ascontiguousarray(unit.numpy(), dtype=np.float32)


class OnnxEmbedder(TokenCounting):
    """The exported transformer run by onnxruntime, with the sentence-transformers pooling and normalisation."""

    def __init__(
        self, export_dir: Path, batch_size: int = 16, threads: int | None = None, spinning: bool = True
    ) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.batch_size = batch_size
        # A fast tokenizer keeps its padding/truncation mode as state: counting (no truncation) and embedding
        # (padding + truncation) run in different threads during ingest, so each has its own instance and lock.
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(export_dir))
        self._embed_tokenizer: Any = AutoTokenizer.from_pretrained(str(export_dir))
        self._count_lock, self._embed_lock = threading.Lock(), threading.Lock()  # per instance
        config = json.loads((export_dir / "sentence_bert_config.json").read_text())
        self.max_seq_length = int(config.get("max_seq_length", 256))
        pooling = json.loads((export_dir / "1_Pooling" / "config.json").read_text())
        self.pooling = "cls" if pooling.get("pooling_mode_cls_token") else "mean"
        if not (pooling.get("pooling_mode_mean_tokens") or pooling.get("pooling_mode_cls_token")):
            raise ConfigError(f"{export_dir}: only mean or CLS pooling run on ONNX; set models.embedder_backend=torch")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        if not spinning:  # idle intra-op threads sleep instead of busy-waiting (frees the core for other work)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(export_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self._dim = int(self.session.get_outputs()[0].shape[-1])
        log.info("embedder %s loaded with onnxruntime (dim %d, %s pooling)", export_dir, self._dim, self.pooling)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self.max_seq_length - int(self.tokenizer.num_special_tokens_to_add(pair=False))

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Length-sorted batches pad less (sentence-transformers does the same).
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._embed_batch([texts[i] for i in rows])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        with self._embed_lock:
            encoded = self._embed_tokenizer(
                texts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="np"
            )
        feeds = {name: encoded[name].astype(np.int64) for name in self.inputs}
        hidden: np.ndarray = self.session.run(None, feeds)[0]
        if self.pooling == "cls":
            vectors = hidden[:, 0]
        else:
            mask = encoded["attention_mask"][..., None].astype(np.float32)
            vectors = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit: np.ndarray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit


def resolved_backend(settings: Settings) -> str:
    """The backend 'auto' stands for here: torch on a GPU or without onnxruntime; on a CPU the faster runtime as
    measured on this machine (`assistant.embedder_choice`; measured on first use, recorded)."""
    backend = settings.models.embedder_backend
    if backend != "auto":
        return backend
    return _auto_choice(settings, model_directory(resolve_embedder(settings)))[0]


def _auto_choice(settings: Settings, path: Path) -> tuple[str, Embedder | None]:
    import importlib.util

    from assistant.embedder_choice import measured_backend

    if default_device() == "cuda" or importlib.util.find_spec("onnxruntime") is None:
        return "torch", None
    names = ["torch", "onnx", "onnx-int8", *(["torch-bf16"] if cpu_has_bf16() else [])]  # torch first: the reference
    builders: dict[str, Callable[[], Any]] = {name: functools.partial(_build, name, settings, path) for name in names}
    backend, built = measured_backend(settings, builders)
    return backend, built


def embedder_space(settings: Settings, dim: int) -> dict[str, object]:
    """What makes vectors comparable: the model, the numeric precision and the dimension (not the runtime)."""
    int8 = settings.models.embedder_backend == "onnx-int8"  # 'auto' picks only runtimes measured within float32's
    return {"model": settings.models.embedder, "precision": "int8" if int8 else "fp32", "dim": dim}


class EmbedderMismatchError(ConfigError):
    """The configured embedder makes vectors of another space than the data directory's index holds."""


def check_embedder_space(settings: Settings, dim: int) -> None:
    """Refuse an embedder whose vectors differ from those the data directory's index holds; record it the first time."""
    if not settings.data_dir.is_dir():  # no data directory yet (a throwaway settings object): nothing to protect
        return
    path = settings.index_dir / "embedder.json"
    space = embedder_space(settings, dim)
    if not path.is_file():
        record_embedder_space(settings, dim)
        return
    stored = json.loads(path.read_text())
    if stored != space:
        raise EmbedderMismatchError(
            f"the index in {settings.index_dir} holds vectors of {stored}, but the configured embedder makes "
            f"{space}: mixing them would corrupt search. Run `assistant index rebuild` to re-embed every chunk "
            "with the new embedder, or set models.embedder / models.embedder_backend back."
        )


def record_embedder_space(settings: Settings, dim: int) -> None:
    """Write the space of the configured embedder as the index's (atomically; after a full re-embedding)."""
    write_atomic(settings.index_dir / "embedder.json", json.dumps(embedder_space(settings, dim), sort_keys=True))


def make_embedder(settings: Settings, check_space: bool = True) -> Embedder:
    """The embedder the settings configure (the one factory; tests and services call this).

    A data directory indexed with vectors of another space is refused (`check_embedder_space`); only a rebuild that
    re-embeds everything passes `check_space=False` and records the new space when it is done.
    """
    path = model_directory(resolve_embedder(settings))
    backend: str = settings.models.embedder_backend
    embedder: Embedder | None = None
    if backend == "auto":
        backend, embedder = _auto_choice(settings, path)
    if embedder is None:
        embedder = _build(backend, settings, path)
    if check_space:
        check_embedder_space(settings, embedder.dim)
    return embedder


def _build(backend: str, settings: Settings, path: Path) -> Embedder:
    if backend in ("torch", "torch-bf16"):
        bf16 = backend == "torch-bf16"
        if bf16 and not cpu_has_bf16():
            log.warning("models.embedder_backend=torch-bf16 on a CPU without bfloat16 instructions: emulated, slow")
        return SentenceTransformerEmbedder(path, batch_size=settings.ingest.embed_batch_size, bf16=bf16)
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"models.embedder_backend={backend} needs onnxruntime: pip install onnxruntime "
            "(part of the platform's `cpu` extra), or set models.embedder_backend=torch"
        ) from exc
    int8 = backend == "onnx-int8"
    name = f"{Path(settings.models.embedder).name}-onnx{'-int8' if int8 else ''}"
    export_dir = export_onnx_embedder(path, settings.models_dir / name, quantize=int8)
    # int8 runs one text at a time: its activations are quantized with one scale per run, so in a batch a text's
    # vector would depend on its neighbours (and on their padding). Alone, each text gets its own scale and no padding:
    # measured with AVX2 only, 39 texts per CPU-second against 32 in batches of 8, mean cosine to float32 0.994.
    return OnnxEmbedder(export_dir, batch_size=1 if int8 else settings.ingest.embed_batch_size)
