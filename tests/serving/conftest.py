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


@pytest.fixture(scope="session")
def team_server(
    tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The real vLLM-backed server shared by two teams and an admin (keys in `tests.fixtures.teams`).

    Seeded with one document in `hr` (a secret the eng key must never read) and one in `eng`, and two registered
    versions of the adapter 'team'.
    """
    import httpx

    from serving.app import create_app
    from tests.fixtures.teams import ADMIN_KEY, API_KEYS, ENG_TEXT, HR_SECRET, bearer
    from training.registry import AdapterRegistry

    settings = tiny_settings(
        tmp_path_factory.mktemp("team-data"),
        tiny_model_dir,
        server={"api_keys": API_KEYS, "max_upload_mb": 3, "sync_upload_mb": 0.05, "max_json_mb": 1},
        retrieval={"top_k": 3, "relevance_threshold": 0.0},
    )
    server = LiveServer(create_app(settings)).start()
    for collection, text in (("hr", HR_SECRET), ("eng", ENG_TEXT)):
        files = [("files", (f"{collection}-handbook.txt", text.encode()))]
        response = httpx.post(
            f"{server.base_url}/v1/documents",
            files=files,
            data={"collection": collection},
            headers=bearer(ADMIN_KEY),
            timeout=120,
        )
        assert response.status_code == 200, response.text
    registry = AdapterRegistry(server.state.db, settings.adapters_dir)
    for _ in range(2):
        registry.register("team", tiny_adapter_dir, base_model="tiny", method="sft", lineage={}, metrics={})
    yield server
    server.stop()
