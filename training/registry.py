"""The adapter registry: versioned PEFT adapters on disk plus their lineage rows in the `adapters` table.

Contract: `AdapterRegistry(db, adapters_dir).register(name, source_dir, ...)` copies a finished PEFT adapter
(adapter_config.json + adapter_model.safetensors, the files vLLM loads) into a temporary sibling directory, renames it
to `<adapters_dir>/<name>/v<N>` (N = next version of that name) and only then inserts the `Adapter` row; if the
insert fails the directory is removed, so a failure leaves neither a row nor a partial directory. `resolve(ref)`
finds an adapter by `name` (newest version), a versioned reference (`assistant.adapters`), id, or a PEFT directory path.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from assistant.adapters import parse_adapter_ref, versioned_name
from assistant.durable import fsync_dir, fsync_tree
from assistant.errors import InvalidRequestError, NotFoundError
from assistant.parts import Parts
from assistant.storage.db import Database
from assistant.storage.models import Adapter

log = logging.getLogger(__name__)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class AdapterRecord:
    """A registered adapter version (a detached copy of its row)."""

    id: str
    name: str
    version: int
    path: Path
    base_model: str
    method: str
    parent_id: str | None
    lineage: dict[str, Any]
    metrics: dict[str, Any]
    status: str
    kind: str = "lm"  # 'reward' for reward models (issue 11): scored, never served as a chat adapter
    gate: dict[str, Any] | None = None  # the evaluation gate's verdict; None: not evaluated
    job_id: str | None = None
    created_at: datetime | None = None
    activated_at: datetime | None = None

    @property
    def identity(self) -> str:
        """`NAME@vN`: how the engine and the API name this version."""
        return versioned_name(self.name, self.version)

    @classmethod
    def from_row(cls, row: Adapter) -> AdapterRecord:
        return cls(
            row.id,
            row.name,
            row.version,
            Path(row.path),
            row.base_model,
            row.method,
            row.parent_id,
            dict(row.lineage or {}),
            dict(row.metrics or {}),
            row.status,
            row.kind or "lm",
            row.gate,
            row.job_id,
            row.created_at,
            row.activated_at,
        )


def check_adapter_dir(path: Path) -> None:
    missing = [f for f in ADAPTER_FILES if not (path / f).is_file()]
    if missing:
        raise InvalidRequestError(f"{path} is not a PEFT adapter directory (missing {', '.join(missing)})")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidRequestError(
            f"adapter name {name!r} must be 1-100 of letters, digits, '.', '_', '-'", param="name"
        )
    return name


class AdapterRegistry:
    """Versioned adapters under `adapters_dir`, rows in the database."""

    def __init__(self, db: Database, adapters_dir: Path) -> None:
        self.db = db
        self.adapters_dir = Path(adapters_dir)

    @classmethod
    def of(cls, parts: Parts) -> AdapterRegistry:
        """The registry over `parts.db` and `adapters_dir`, built once per `Parts`."""
        return parts.attach("registry", lambda p: cls(p.db, p.settings.adapters_dir))

    def next_version(self, name: str) -> int:
        with self.db.session() as session:
            current = session.scalar(select(func.max(Adapter.version)).where(Adapter.name == name))
        on_disk = [int(p.name[1:]) for p in (self.adapters_dir / name).glob("v*") if p.name[1:].isdigit()]
        return max([current or 0, *on_disk]) + 1

    def resolve(self, ref: str) -> AdapterRecord:
        """By id, or a reference `assistant.adapters.parse_adapter_ref` reads; NotFoundError when absent."""
        parsed = parse_adapter_ref(ref)
        with self.db.session() as session:
            row = session.get(Adapter, ref)
            if row is None and parsed is not None:
                query = select(Adapter).where(Adapter.name == parsed.name)
                if parsed.version is not None:
                    query = query.where(Adapter.version == parsed.version)
                row = session.scalars(query.order_by(Adapter.version.desc())).first()
            if row is None:
                raise NotFoundError(f"no adapter {ref!r} in the registry", param="base_adapter")
            return AdapterRecord.from_row(row)

    def register(
        self,
        name: str,
        source_dir: Path,
        *,
        base_model: str,
        method: str,
        lineage: dict[str, Any],
        metrics: dict[str, Any],
        parent_id: str | None = None,
        job_id: str | None = None,
        kind: str = "lm",
        gate: dict[str, Any] | None = None,
    ) -> AdapterRecord:
        """Copy `source_dir` into the next version directory atomically, then insert the row (with the gate's
        verdict when the candidate was gated before it was registered)."""
        check_name(name)
        check_adapter_dir(source_dir)
        version = self.next_version(name)
        final = self.adapters_dir / name / f"v{version}"
        self._install(source_dir, final)
        try:
            with self.db.session() as session:
                row = Adapter(
                    name=name,
                    version=version,
                    path=str(final.resolve()),
                    base_model=base_model,
                    method=method,
                    parent_id=parent_id,
                    lineage=lineage,
                    metrics=metrics,
                    job_id=job_id,
                    kind=kind,
                    gate=gate,
                )
                session.add(row)
                session.flush()
                record = AdapterRecord.from_row(row)
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        log.info("registered adapter %s v%d at %s", name, version, final)
        return record

    @staticmethod
    def _install(source_dir: Path, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(source_dir, tmp)
            fsync_tree(tmp)  # the files are on disk before the row that points to them commits
            os.rename(tmp, final)  # fails if `final` appeared meanwhile: never overwrite a version
            fsync_dir(final.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
