"""Fixtures for ingest tests: the real embedder (once per session) and a service on a fresh data directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from assistant.embedding import Embedder
from ingest.ingest_service import IngestService
from tests.fixtures.retrieval_env import make_settings, shared_embedder


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return shared_embedder()


@pytest.fixture
def make_service(tmp_path: Path, embedder: Embedder) -> Callable[..., IngestService]:
    """Open (or reopen) an IngestService on `tmp_path/data`; keyword arguments become ingest settings."""

    def factory(**ingest: Any) -> IngestService:
        return IngestService.open(make_settings(tmp_path / "data", **ingest), embedder)

    return factory


@pytest.fixture
def service(make_service: Callable[..., IngestService]) -> IngestService:
    return make_service()
