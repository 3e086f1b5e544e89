"""Generation engines behind `assistant.engine.GenerationEngine`, chosen in one factory with lazy imports.

Contract: `make_engine(settings, model_dir, served_name)` returns an unstarted engine: vLLM when installed (the `cpu`
or `gpu` extra) or when asked for, else the transformers fallback. Asking for vLLM where it is not installed raises
`MissingExtraError` naming the extra.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from assistant.engine import GenerationEngine
from assistant.errors import MissingExtraError
from assistant.settings import EngineSettings


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def make_engine(settings: EngineSettings, model_dir: Path, served_name: str) -> GenerationEngine:
    backend = settings.backend
    if backend == "auto":
        backend = "vllm" if vllm_available() else "transformers"
    if backend == "vllm":
        if not vllm_available():
            raise MissingExtraError("vllm", "cpu", "engine.backend=vllm (on a GPU machine: the 'gpu' extra)")
        from serving.engines.vllm_engine import VLLMEngine

        return VLLMEngine(model_dir, settings, served_name)
    from serving.engines.hf_engine import TransformersEngine

    return TransformersEngine(model_dir, settings, served_name)
