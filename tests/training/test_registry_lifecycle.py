"""The adapter registry is the one owner of the adapter lifecycle (issue 28): register -> gate -> activate ->
previous -> rollback through a real SQLite database, checked against the rows read back with `sqlite3` itself, and
a scan of the source proving no second path writes an adapter row or looks up the active version."""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from pathlib import Path

import pytest

from assistant.errors import ConflictError, NotFoundError, UnprocessableError
from assistant.storage.db import Database
from training.registry import AdapterRegistry

ROOT = Path(__file__).resolve().parents[2]
FAILED = {"passed": False, "reasons": ["preference accuracy 0.40 < 0.55 of the active version"]}


def fake_adapter(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x", "r": 4}))
    (path / "adapter_model.safetensors").write_bytes(b"0")
    return path


@pytest.fixture
def registry(tmp_path: Path) -> AdapterRegistry:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    db.migrate()
    return AdapterRegistry(db, tmp_path / "adapters")


def rows(tmp_path: Path) -> dict[int, tuple[str, str | None, object]]:
    """version -> (status, activated_at, gate) for 'kb', read with sqlite3 rather than through the registry."""
    with sqlite3.connect(tmp_path / "a.db") as conn:
        found = conn.execute("SELECT version, status, activated_at, gate FROM adapters WHERE name = 'kb'").fetchall()
    return {v: (s, a, json.loads(g) if g else None) for v, s, a, g in found}


def register(registry: AdapterRegistry, tmp_path: Path, **extra: object) -> int:
    source = fake_adapter(tmp_path / "runs" / uuid.uuid4().hex)
    record = registry.register("kb", source, base_model="b", method="sft", lineage={}, metrics={}, **extra)  # type: ignore[arg-type]
    return record.version


def test_register_activate_previous_rollback(registry: AdapterRegistry, tmp_path: Path) -> None:
    assert [register(registry, tmp_path) for _ in range(3)] == [1, 2, 3]
    assert {v: s for v, (s, _, _) in rows(tmp_path).items()} == {1: "candidate", 2: "candidate", 3: "candidate"}
    assert registry.active("kb") is None and registry.previous("kb") is None
    assert registry.alias("kb").version == 3  # type: ignore[union-attr]  # nothing active: the newest
    with pytest.raises(ConflictError, match="no earlier active version"):
        registry.rollback_target("kb")

    assert registry.activatable("kb").version == 3  # default: the newest candidate
    for version in (1, 2):
        registry.activate("kb", version)
    assert {v: s for v, (s, _, _) in rows(tmp_path).items()} == {1: "inactive", 2: "active", 3: "candidate"}
    assert registry.active("kb").version == 2 and registry.alias("kb").version == 2  # type: ignore[union-attr]
    assert registry.previous("kb").version == 1  # type: ignore[union-attr]
    assert registry.activatable("kb").version == 3  # 1 is inactive now, 3 is still the newest candidate

    target = registry.rollback_target("kb")
    assert target.version == 1
    registry.activate("kb", target.version)
    stored = rows(tmp_path)
    assert [stored[v][0] for v in (1, 2, 3)] == ["active", "inactive", "candidate"]
    assert stored[1][1] > stored[2][1]  # type: ignore[operator]  # activated_at moved on
    assert registry.previous("kb").version == 2  # type: ignore[union-attr]  # rolling back again returns to v2
    assert [r.status for r in registry.list()] == ["active", "inactive", "candidate"]


def test_the_gate_is_recorded_and_enforced(registry: AdapterRegistry, tmp_path: Path) -> None:
    register(registry, tmp_path)
    gated = register(registry, tmp_path, gate=FAILED)
    assert rows(tmp_path)[gated][2] == FAILED
    with pytest.raises(ConflictError, match="kb@v2 failed the evaluation gate \\(preference accuracy") as refused:
        registry.activatable("kb", gated)
    assert refused.value.code == "gate_failed"
    assert registry.activatable("kb", gated, force=True).version == gated

    first = registry.get("kb", 1)
    assert first is not None and first.gate is None  # not evaluated: activation is the user's call
    registry.record_gate(first.id, {"passed": False, "reasons": []})
    assert rows(tmp_path)[1][2] == {"passed": False, "reasons": []}
    with pytest.raises(ConflictError, match="it scored worse than the active version"):
        registry.activatable("kb", 1)
    assert {v: s for v, (s, _, _) in rows(tmp_path).items()} == {1: "candidate", 2: "candidate"}  # nothing written


def test_refusals_name_what_is_missing(registry: AdapterRegistry, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no adapter named 'kb'"):
        registry.rollback_target("kb")
    with pytest.raises(NotFoundError, match="a candidate of 'kb'"):
        registry.activatable("kb")
    register(registry, tmp_path, kind="reward")
    with pytest.raises(UnprocessableError, match="kb@v1 is a reward model"):
        registry.activatable("kb", 1)
    with pytest.raises(NotFoundError, match="version 7 of adapter 'kb'") as missing:
        registry.activatable("kb", 7)
    assert missing.value.param == "version"
    with pytest.raises(NotFoundError):
        registry.record_gate("ad-nope", FAILED)


# The second owner path this issue removed, as it was written (commit 7ce2dd7): each pattern must catch its line.
WRITES = {
    r"(?<!class )\bAdapter\(": "row = Adapter(name=name, version=version)",
    r"\b(update|insert|delete)\(\s*Adapter\b": "session.execute(update(Adapter).values(status='x'))",
    r"\.status\s*=\s*AdapterStatus\.": "other.status = AdapterStatus.INACTIVE",
    r"\.(activated_at|gate)\s*=[^=]": "row.activated_at = datetime.now(UTC)",
    r"(?i)\b(insert\s+into|update)\s+adapters\b": 'conn.execute("UPDATE adapters SET status = 1")',
}
ACTIVE_LOOKUPS = {
    r"status\s*==\s*(AdapterStatus\.ACTIVE|[\"']active[\"'])": "current = next((row for row in rows if row.status == "
    "AdapterStatus.ACTIVE), None)",
}


def offending_lines(patterns: dict[str, str], allowed: set[str]) -> list[str]:
    """`path:line: text` for every match outside the registry (migrations own the schema, not the rows)."""
    found = []
    for package in ("assistant", "ingest", "training", "serving", "cli"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in allowed or "/migrations/" in relative:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if any(re.search(p, line) for p in patterns):
                    found.append(f"{relative}:{number}: {line.strip()}")
    return found


# The listing's JSON names each name's active version from the records the registry listed: no lookup of its own.
OWNERS = {"row-writes": {"training/registry.py"}, "active-lookups": {"training/registry.py", "serving/rest_format.py"}}


@pytest.mark.parametrize(("kind", "patterns"), [("row-writes", WRITES), ("active-lookups", ACTIVE_LOOKUPS)])
def test_no_second_owner_of_adapter_rows(kind: str, patterns: dict[str, str]) -> None:
    for pattern, old_line in patterns.items():
        assert re.search(pattern, old_line), f"{pattern} no longer catches {old_line!r}"
    assert offending_lines(patterns, OWNERS[kind]) == [], (
        "only training/registry.py writes adapter rows and finds the active one"
    )
