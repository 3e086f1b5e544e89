"""The adapter service is the engine plus the registry (issue 28): without an engine (the CLI's `assistant adapters
activate|rollback`) it activates and rolls back through the registry alone, refuses what the engine could not load
before anything changes, and lets one activation run at a time. The through-the-server path (hot-loading into vLLM)
is tests/serving/test_feedback_adapters.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from assistant.errors import AssistantError, ConflictError, NotFoundError, UnprocessableError
from assistant.parts import Parts
from assistant.settings import Settings
from serving.services.adapter_service import AdapterService
from training.registry import AdapterRegistry


def fake_adapter(path: Path, rank: int) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x", "r": rank}))
    (path / "adapter_model.safetensors").write_bytes(b"0")
    return path


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    settings = Settings(data_dir=tmp_path / "data", engine={"max_lora_rank": 8})  # type: ignore[arg-type]
    parts = Parts(settings)
    registry = AdapterRegistry.of(parts)
    for version, rank in ((1, 4), (2, 8), (3, 64)):
        source = fake_adapter(tmp_path / f"run{version}", rank)
        registry.register("kb", source, base_model="b", method="sft", lineage={}, metrics={})
    return parts


def statuses(parts: Parts) -> list[str]:
    return [record.status for record in AdapterRegistry.of(parts).versions("kb")]


def test_activate_and_rollback_without_an_engine(parts: Parts) -> None:
    service = AdapterService.of(parts, engine=None)
    assert service.registry is AdapterRegistry.of(parts) and service.catalog.registry is service.registry
    assert asyncio.run(service.activate("kb", 1)).status == "active"
    assert asyncio.run(service.activate("kb", 2)).identity == "kb@v2"
    assert statuses(parts) == ["inactive", "active", "candidate"]
    assert [r.status for r in service.list()] == statuses(parts)
    assert asyncio.run(service.rollback("kb")).version == 1
    assert statuses(parts) == ["active", "inactive", "candidate"]
    with pytest.raises(NotFoundError, match="no adapter named 'nobody'"):
        asyncio.run(service.rollback("nobody"))


def test_what_the_engine_could_not_load_changes_nothing(parts: Parts) -> None:
    service = AdapterService.of(parts, engine=None)
    with pytest.raises(UnprocessableError, match=r"kb@v3 has LoRA rank 64, above .* engine\.max_lora_rank 8"):
        asyncio.run(service.activate("kb"))  # the newest candidate is v3
    assert statuses(parts) == ["candidate", "candidate", "candidate"]
    with pytest.raises(ConflictError, match="no earlier active version"):
        asyncio.run(service.rollback("kb"))


def test_one_activation_at_a_time(parts: Parts) -> None:
    service = AdapterService.of(parts, engine=None)

    async def both() -> list[object]:
        return await asyncio.gather(service.activate("kb", 1), service.activate("kb", 2), return_exceptions=True)

    first, second = asyncio.run(both())
    assert getattr(first, "version", None) == 1
    assert isinstance(second, AssistantError) and second.code == "busy"
    assert statuses(parts) == ["active", "candidate", "candidate"]
