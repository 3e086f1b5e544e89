"""The adapter registry: the one owner of the adapter lifecycle (versioned PEFT directories plus their `adapters` rows).

Contract (nothing else writes an `adapters` row or looks up which version is active; the serving side's
`serving.services.adapter_service.AdapterService` is the engine plus this registry):
- `register(name, source_dir, ...)` copies a finished PEFT adapter (adapter_config.json + adapter_model.safetensors,
  the files vLLM loads) into a temporary sibling directory, renames it to `<adapters_dir>/<name>/v<N>` (N = next
  version of that name) and only then inserts the row as a `candidate` with its lineage, metrics, parent and the
  gate's verdict (the worker gates a candidate before registering it); if the insert fails the directory is removed,
  so a failure leaves neither a row nor a partial directory. `record_gate(adapter_id, gate)` records a verdict
  reached after registration.
- Reads return detached `AdapterRecord`s: `list()` (by name, version), `versions(name)`, `get(name, version)`,
  `active(name)` (the version the alias serves, None: none active), `alias(name)` (the active version, else the
  newest), `previous(name)` (the version active before the current one; None without a current or an earlier one),
  `resolve(ref)` (by id, `NAME` = newest, or a versioned reference, `assistant.adapter_refs`; NotFoundError when
  absent).
- Activation is two steps so the server can load the version into its engine in between: `activatable(name,
  version, force)` picks the version (default: the newest candidate; 404 when absent) and refuses a non-LM model
  (422) or one whose gate verdict failed unless `force` (409 `gate_failed`); `activate(name, version)` then makes it
  `active` and the previously active version `inactive` in one transaction. `rollback_target(name)` is `previous`
  or an error (404 unknown name, 409 nothing to roll back to).
"""

from __future__ import annotations

import builtins
import logging
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from assistant.adapter_refs import AdapterStatus, parse_adapter_ref, versioned_name
from assistant.durable import fsync_dir, fsync_tree
from assistant.errors import ConflictError, InvalidRequestError, NotFoundError, UnprocessableError
from assistant.parts import Parts
from assistant.storage.db import Database
from assistant.storage.orm import Adapter

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
    created_at: datetime
    kind: str = "lm"  # 'reward' for reward models (issue 11): scored, never served as a chat adapter
    gate: dict[str, Any] | None = None  # the evaluation gate's verdict; None: not evaluated
    job_id: str | None = None
    activated_at: datetime | None = None

    @property
    def identity(self) -> str:
        """`NAME@vN`: how the engine and the API name this version."""
        return versioned_name(self.name, self.version)

    @classmethod
    def from_row(cls, row: Adapter) -> AdapterRecord:
        return cls(
            id=row.id,
            name=row.name,
            version=row.version,
            path=Path(row.path),
            base_model=row.base_model,
            method=row.method,
            parent_id=row.parent_id,
            lineage=dict(row.lineage or {}),
            metrics=dict(row.metrics or {}),
            status=row.status,
            created_at=row.created_at,
            kind=row.kind or "lm",
            gate=row.gate,
            job_id=row.job_id,
            activated_at=row.activated_at,
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


def check_gate(record: AdapterRecord, force: bool) -> None:
    """409 `gate_failed` when the gate found the version worse and `force` is false; no verdict passes (the user's
    call)."""
    gate = record.gate or {}
    if gate.get("passed") is False and not force:
        reasons = "; ".join(gate.get("reasons", [])) or "it scored worse than the active version"
        raise ConflictError(
            f"{record.identity} failed the evaluation gate ({reasons}); pass force=true to activate anyway",
            code="gate_failed",
        )


class AdapterRegistry:
    """Versioned adapters under `adapters_dir`, rows in the database: the lifecycle's one owner (module contract)."""

    def __init__(self, db: Database, adapters_dir: Path) -> None:
        self.db = db
        self.adapters_dir = Path(adapters_dir)

    @classmethod
    def of(cls, parts: Parts) -> AdapterRegistry:
        """The registry over `parts.db` and `adapters_dir`, built once per `Parts`."""
        return parts.attach("registry", lambda p: cls(p.db, p.settings.adapters_dir))

    # ------------------------------------------------------------------ reads

    def list(self) -> builtins.list[AdapterRecord]:
        """Every version of every adapter, by name and version."""
        return self._records(select(Adapter).order_by(Adapter.name, Adapter.version))

    def versions(self, name: str) -> builtins.list[AdapterRecord]:
        """Every version of `name`, oldest first (empty: no such adapter)."""
        return self._records(select(Adapter).where(Adapter.name == name).order_by(Adapter.version))

    def get(self, name: str, version: int) -> AdapterRecord | None:
        return self._first(select(Adapter).where(Adapter.name == name, Adapter.version == version))

    def active(self, name: str) -> AdapterRecord | None:
        """The version the alias `name` serves; None when none is active."""
        return self._first(select(Adapter).where(Adapter.name == name, Adapter.status == AdapterStatus.ACTIVE))

    def alias(self, name: str) -> AdapterRecord | None:
        """What the alias `name` names: the active version, else the newest one (None: no such adapter)."""
        return self.active(name) or self._first(self._newest(name))

    def previous(self, name: str) -> AdapterRecord | None:
        """The version that was active before the current one (latest `activated_at` among the others); None when
        no version is active or none other ever was."""
        current = self.active(name)
        if current is None:
            return None
        earlier = select(Adapter).where(
            Adapter.name == name, Adapter.id != current.id, Adapter.activated_at.is_not(None)
        )
        return self._first(earlier.order_by(Adapter.activated_at.desc(), Adapter.version.desc()))

    def next_version(self, name: str) -> int:
        with self.db.session() as session:
            current = session.scalar(select(func.max(Adapter.version)).where(Adapter.name == name))
        on_disk = [int(p.name[1:]) for p in (self.adapters_dir / name).glob("v*") if p.name[1:].isdigit()]
        return max([current or 0, *on_disk]) + 1

    def resolve(self, ref: str) -> AdapterRecord:
        """By id, or a reference `assistant.adapter_refs.parse_adapter_ref` reads; NotFoundError when absent."""
        parsed = parse_adapter_ref(ref)
        with self.db.session() as session:
            row = session.get(Adapter, ref)
            if row is None and parsed is not None:
                query = self._newest(parsed.name)
                if parsed.version is not None:
                    query = query.where(Adapter.version == parsed.version)
                row = session.scalars(query).first()
            if row is None:
                raise NotFoundError(f"no adapter {ref!r} in the registry", param="base_adapter")
            return AdapterRecord.from_row(row)

    # ------------------------------------------------------------------ writes

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
        """Copy `source_dir` into the next version directory atomically, then insert the candidate's row (with the
        gate's verdict when the candidate was gated before it was registered)."""
        check_name(name)
        check_adapter_dir(source_dir)
        version = self.next_version(name)
        final = self.adapters_dir / name / f"v{version}"
        self._install(source_dir, final)
        fields = {"base_model": base_model, "method": method, "parent_id": parent_id, "lineage": lineage,
                  "metrics": metrics, "job_id": job_id, "kind": kind, "gate": gate}  # fmt: skip
        try:
            record = self._insert(Adapter(name=name, version=version, path=str(final.resolve()), **fields))
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        log.info("registered adapter %s v%d at %s", name, version, final)
        return record

    def record_gate(self, adapter_id: str, gate: dict[str, Any]) -> AdapterRecord:
        """Record the gate's verdict on a registered version (one evaluated after it was registered)."""
        with self.db.session() as session:
            row = self._row(session, adapter_id)
            row.gate = gate
            session.flush()
            return AdapterRecord.from_row(row)

    def activatable(self, name: str, version: int | None = None, force: bool = False) -> AdapterRecord:
        """The version to activate (default: the newest candidate) once checked (module contract); writes nothing."""
        record = self._pick(name, version)
        if record.kind != "lm":  # a reward model scores answers (POST /v1/rewards/score); it is never served
            raise UnprocessableError(f"{record.identity} is a {record.kind} model, not a chat adapter")
        check_gate(record, force)
        return record

    def activate(self, name: str, version: int) -> AdapterRecord:
        """Make `name@v<version>` active and the previously active version inactive, in one transaction. The
        state switch only: `activatable` checks a version first."""
        with self.db.session() as session:
            row = session.scalars(select(Adapter).where(Adapter.name == name, Adapter.version == version)).first()
            if row is None:
                raise NotFoundError(f"there is no version {version} of adapter {name!r} in the registry")
            current = select(Adapter).where(Adapter.name == name, Adapter.status == AdapterStatus.ACTIVE)
            for other in session.scalars(current):
                other.status = AdapterStatus.INACTIVE
            row.status = AdapterStatus.ACTIVE
            row.activated_at = datetime.now(UTC)
            session.flush()
            return AdapterRecord.from_row(row)

    def rollback_target(self, name: str) -> AdapterRecord:
        """`previous(name)`, or NotFoundError (no adapter of that name) / ConflictError (nothing to roll back to)."""
        if not self.versions(name):
            raise NotFoundError(f"no adapter named {name!r}", param="name")
        target = self.previous(name)
        if target is None:
            raise ConflictError(f"{name} has no earlier active version to roll back to")
        return target

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _newest(name: str) -> Select[Adapter]:
        return select(Adapter).where(Adapter.name == name).order_by(Adapter.version.desc())

    def _pick(self, name: str, version: int | None) -> AdapterRecord:
        """Version `version` of `name`, or (None) its newest candidate; NotFoundError naming what is missing."""
        query = self._newest(name)
        if version is not None:
            query = query.where(Adapter.version == version)
        else:
            query = query.where(Adapter.status == AdapterStatus.CANDIDATE)
        record = self._first(query)
        if record is None:
            what = f"version {version} of adapter {name!r}" if version is not None else f"a candidate of {name!r}"
            raise NotFoundError(f"there is no {what} in the registry", param="version" if version else "name")
        return record

    def _records(self, query: Select[Adapter]) -> builtins.list[AdapterRecord]:
        with self.db.session() as session:
            return [AdapterRecord.from_row(row) for row in session.scalars(query)]

    def _first(self, query: Select[Adapter]) -> AdapterRecord | None:
        with self.db.session() as session:
            row = session.scalars(query).first()
            return AdapterRecord.from_row(row) if row is not None else None

    @staticmethod
    def _row(session: Session, adapter_id: str) -> Adapter:
        row = session.get(Adapter, adapter_id)
        if row is None:
            raise NotFoundError(f"no adapter {adapter_id!r} in the registry", param="adapter_id")
        return row

    def _insert(self, row: Adapter) -> AdapterRecord:
        with self.db.session() as session:
            session.add(row)
            session.flush()
            return AdapterRecord.from_row(row)

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
