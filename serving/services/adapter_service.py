"""The adapter lifecycle as the server sees it: the engine plus the registry (`training.registry.AdapterRegistry`).

Contract:
- The registry owns every adapter row (registering, the gate's verdict, the active and previous versions, the status
  switch); this service adds what only a server has: the running engine, and one activation at a time. It returns
  domain values (`training.registry.AdapterRecord`); their REST JSON is made in `serving.rest_format`.
  `AdapterService.of(parts, engine)` is how the server and the CLI build it.
- `list()` returns every adapter version with lineage, metrics, gate result and status.
- `activate(name, version=None, force=False)`: the registry picks and checks the version (default: the newest
  candidate; 404 if missing, 422 for a reward model, 409 if its gate result says it is worse than the active version
  and `force` is false); it is loaded into the running engine under its own identity `NAME@vN` (a load failure is a
  422 and changes nothing), and only then the registry makes it active in one transaction (the previous active
  version becomes 'inactive'). Requests naming the alias `NAME` follow the active version from the next request on;
  requests already running finish on the version they started with, so no request fails during the swap. One
  activation runs at a time per app: a second one arriving meanwhile is refused with 409.
- `rollback(name)` re-activates the registry's `previous(name)` (404 unknown name, 409 when there is none).
"""

from __future__ import annotations

import asyncio
import builtins

from assistant.engine import GenerationEngine
from assistant.errors import ConflictError, UnprocessableError
from assistant.parts import Parts
from serving.catalog import ModelCatalog
from training.registry import AdapterRecord, AdapterRegistry


class AdapterService:
    """Lists, activates and rolls back adapter versions (see the module contract); returns `AdapterRecord`s."""

    def __init__(self, registry: AdapterRegistry, catalog: ModelCatalog, engine: GenerationEngine | None) -> None:
        self.registry = registry
        self.catalog = catalog
        self.engine = engine
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, parts: Parts, engine: GenerationEngine | None) -> AdapterService:
        """The service over the registry and catalog of `parts`; `engine=None` (the CLI): nothing is hot-loaded."""
        return cls(AdapterRegistry.of(parts), ModelCatalog.of(parts), engine)

    def list(self) -> builtins.list[AdapterRecord]:
        """Every version of every adapter, by name and version."""
        return self.registry.list()

    async def activate(self, name: str, version: int | None = None, force: bool = False) -> AdapterRecord:
        if self._lock.locked():
            raise ConflictError("another activation is in progress; retry when it has finished", code="busy")
        async with self._lock:
            record = self.registry.activatable(name, version, force)
            await self._load(record)
            return await asyncio.to_thread(self.registry.activate, record.name, record.version)

    async def rollback(self, name: str) -> AdapterRecord:
        target = self.registry.rollback_target(name)
        return await self.activate(name, target.version, force=True)

    async def _load(self, record: AdapterRecord) -> None:
        """Load the version into the running engine; no engine (the CLI): a running server loads it on the next
        request. A load failure changes nothing."""
        ref = self.catalog.resolve(record.identity)
        assert ref is not None
        if self.engine is None:
            return
        try:
            await self.engine.add_adapter(ref)
        except Exception as exc:  # the engine could not load it: nothing has changed
            raise UnprocessableError(f"{record.identity} could not be loaded: {exc}") from exc
