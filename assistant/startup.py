"""The one start-up step every entrypoint runs: logging, offline mode, device and dtype.

Contract: `start_up(settings)` is called first by the CLI (`cli.common.build_settings`, so `assistant serve` too),
the server's lifespan, the training worker and the training subprocess (`training.launch`). It configures logging
(level `log_level`, to stderr, once per process: a second call changes nothing), sets the offline variables
(`HF_HUB_OFFLINE`, `TRANSFORMERS_OFFLINE`) when `offline` is on, with `setdefault` so an explicit environment wins,
and returns the `Runtime`:
the device (`engine.device`; 'auto' = cuda when torch sees a GPU, else cpu) and the dtype name (`engine.dtype`;
'auto' = float32 on CPU, bfloat16 on GPU). `default_device()` and `resolve_dtype()` are the one home of those rules.
`import_model_libraries()` imports transformers' shared classes in one thread; a process that then loads models in
several threads at once (the server: engine and embedder) calls it first.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

from assistant.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class Runtime:
    """Where models run in this process and in which dtype (names torch understands: 'cpu', 'float32', ...)."""

    device: str
    dtype: str


def default_device() -> str:
    """'cuda' when torch sees a GPU, else 'cpu'."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str) -> str:
    """A configured device ('auto', 'cpu', 'cuda') as the one to use."""
    return default_device() if device == "auto" else device


def resolve_dtype(dtype: str, on_gpu: bool) -> str:
    """'auto' = float32 on CPU (faster than bf16 there and matches PEFT exactly), bfloat16 on GPU."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if on_gpu else "float32"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)


def set_offline_environment(offline: bool) -> None:
    """Hub downloads off when `offline`; explicit environment variables win."""
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# Resolved once, serially: transformers' lazy module can hand a second importing thread a half-initialised submodule
# ("cannot import name 'PreTrainedConfig'"), seen when vLLM's frontend and the embedder started together.
_SHARED_MODEL_CLASSES = (
    "PreTrainedConfig",
    "PretrainedConfig",
    "AutoConfig",
    "AutoTokenizer",
    "AutoModel",
    "AutoModelForCausalLM",
    "PreTrainedModel",
    "PreTrainedTokenizerBase",
)


def import_model_libraries() -> None:
    """Import transformers and resolve its shared classes in this thread, before models load in several."""
    try:
        import transformers
    except ImportError:  # a process without the model stack (a CLI command on a thin install) has nothing to race
        return
    for name in _SHARED_MODEL_CLASSES:
        getattr(transformers, name, None)


def start_up(settings: Settings) -> Runtime:
    """Logging, offline variables, device and dtype for this process (see the module contract)."""
    configure_logging(settings.log_level)
    set_offline_environment(settings.offline)
    device = resolve_device(settings.engine.device)
    return Runtime(device=device, dtype=resolve_dtype(settings.engine.dtype, device == "cuda"))
