"""The adapter registry as the server sees it: listing, activation with hot-loading, rollback.

Contract:
- The service returns domain values (`training.registry.AdapterRecord`); their REST JSON is made in
  `serving.rest_format`. `AdapterService.of(parts, engine)` is how the server and the CLI build it.
- `list()` returns every adapter version with lineage, metrics, gate result and status.
- `activate(name, version=None, force=False)`: the named version (default: the newest candidate) is checked (404 if
  missing, 409 if its gate result says it is worse than the active version and `force` is false), loaded into the
  running engine under its own identity `NAME@vN` (a load failure is a 422 and changes nothing), and only then made
  active in one transaction (the previous active version becomes 'inactive'). Requests naming the alias `NAME`
  follow the active version from the next request on; requests already running finish on the version they
  started with, so no request fails during the swap. One activation runs at a time per app: a second one arriving
  meanwhile is refused with 409.
- `rollback(name)` re-activates the version that was active before the current one (409 when there is none).
"""

from __future__ import annotations

import asyncio
import builtins
from datetime import UTC, datetime

from sqlalchemy import select

from assistant.adapters import AdapterStatus
from assistant.engine import GenerationEngine
from assistant.errors import ConflictError, NotFoundError, UnprocessableError
from assistant.parts import Parts
from assistant.storage import Adapter, Database
from serving.catalog import ModelCatalog, engine_identity
from training.registry import AdapterRecord


class AdapterService:
    """Lists, activates and rolls back adapter versions (see the module contract); returns `AdapterRecord`s."""

    def __init__(self, db: Database, catalog: ModelCatalog, engine: GenerationEngine | None) -> None:
        self.db = db
        self.catalog = catalog
        self.engine = engine
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, parts: Parts, engine: GenerationEngine | None) -> AdapterService:
        """The service over `parts.db` and its catalog; `engine=None` (the CLI): nothing is hot-loaded here."""
        return cls(parts.db, ModelCatalog.of(parts), engine)

    def list(self) -> builtins.list[AdapterRecord]:
        """Every version of every adapter, by name and version."""
        return [AdapterRecord.from_row(row) for row in self.catalog.adapters()]

    async def activate(self, name: str, version: int | None = None, force: bool = False) -> AdapterRecord:
        if self._lock.locked():
            raise ConflictError("another activation is in progress; retry when it has finished", code="busy")
        async with self._lock:
            row = self._find(name, version)
            if row.kind != "lm":  # a reward model scores answers (POST /v1/rewards/score); it is never served
                raise UnprocessableError(f"{engine_identity(row)} is a {row.kind} model, not a chat adapter")
            self._check_gate(row, force)
            ref = self.catalog.resolve(engine_identity(row))
            assert ref is not None
            try:
                if self.engine is not None:  # no engine (the CLI): a running server loads it on the next request
                    await self.engine.add_adapter(ref)
            except Exception as exc:  # the engine could not load it: nothing has changed
                raise UnprocessableError(f"{engine_identity(row)} could not be loaded: {exc}") from exc
            return await asyncio.to_thread(self._make_active, row.id)

    async def rollback(self, name: str) -> AdapterRecord:
        rows = [row for row in self.catalog.adapters() if row.name == name]
        if not rows:
            raise NotFoundError(f"no adapter named {name!r}", param="name")
        current = next((row for row in rows if row.status == AdapterStatus.ACTIVE), None)
        earlier = sorted(
            (row for row in rows if row.activated_at is not None and row is not current),
            key=lambda row: row.activated_at or datetime.min.replace(tzinfo=UTC),
        )
        if current is None or not earlier:
            raise ConflictError(f"{name} has no earlier active version to roll back to")
        return await self.activate(name, earlier[-1].version, force=True)

    def _find(self, name: str, version: int | None) -> Adapter:
        query = select(Adapter).where(Adapter.name == name)
        if version is not None:
            query = query.where(Adapter.version == version)
        else:
            query = query.where(Adapter.status == AdapterStatus.CANDIDATE)
        with self.db.session() as session:
            row = session.scalars(query.order_by(Adapter.version.desc())).first()
        if row is None:
            what = f"version {version} of adapter {name!r}" if version is not None else f"a candidate of {name!r}"
            raise NotFoundError(f"there is no {what} in the registry", param="version" if version else "name")
        return row

    @staticmethod
    def _check_gate(row: Adapter, force: bool) -> None:
        gate = row.gate or {}
        if gate.get("passed") is False and not force:  # None: nothing was measured, activation is the user's call
            reasons = "; ".join(gate.get("reasons", [])) or "it scored worse than the active version"
            raise ConflictError(
                f"{engine_identity(row)} failed the evaluation gate ({reasons}); pass force=true to activate anyway",
                code="gate_failed",
            )

    def _make_active(self, adapter_id: str) -> AdapterRecord:
        with self.db.session() as session:
            row = session.get(Adapter, adapter_id)
            assert row is not None
            for other in session.scalars(
                select(Adapter).where(Adapter.name == row.name, Adapter.status == AdapterStatus.ACTIVE)
            ):
                other.status = AdapterStatus.INACTIVE
            row.status = AdapterStatus.ACTIVE
            row.activated_at = datetime.now(UTC)
            session.flush()
            return AdapterRecord.from_row(row)
