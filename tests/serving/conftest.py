"""Serving fixtures: one real server (uvicorn + real vLLM engine on the tiny model + SQLite) for the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.settings import Settings
from tests.fixtures.live_server import LiveServer


def tiny_settings(data_dir: Path, model_dir: Path, **overrides: object) -> Settings:
    engine = {"max_model_len": 512, "max_num_seqs": 32, "kv_cache_gib": 1, "max_lora_rank": 8}
    overrides.setdefault("server", {"max_upload_mb": 3, "sync_upload_mb": 0.05})
    overrides.setdefault("ingest", {"max_file_mb": 1, "chunk_tokens": 64, "chunk_overlap": 8})
    overrides.setdefault("retrieval", {"top_k": 3})
    overrides.setdefault("training", {"run_worker": False})
    models = {"lm": str(model_dir), "served_name": "tiny"}
    return Settings(data_dir=data_dir, models=models, engine=engine, **overrides)


@pytest.fixture(scope="session")
def live_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from serving.app import create_app

    settings = tiny_settings(tmp_path_factory.mktemp("server-data"), tiny_model_dir)
    server = LiveServer(create_app(settings)).start()
    yield server
    server.stop()
