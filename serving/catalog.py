"""The models the API serves: the base model and the LoRA adapters of the registry.

Contract: `ModelCatalog.resolve(name)` maps a request's `model` field to `None` (the base model) or an `AdapterRef`;
an adapter is named either by its alias `NAME` (follows the active version, else the newest) or exactly as
`NAME@vN` (`assistant.adapters.parse_adapter_ref` also reads `NAME@N`, `NAME:vN`). Each version gets its own engine
identity (`NAME@vN`) and integer id, so no cached state of another version is reused.
Unknown names raise `NotFoundError` (404, code `model_not_found`). `ModelCatalog.of(parts)` is the one catalog of a
`Parts` (the server, the CLI and the adapter service share it).
"""

from __future__ import annotations

import itertools
import time

from sqlalchemy import select

from assistant.adapters import AdapterStatus, parse_adapter_ref, versioned_name
from assistant.engine import AdapterRef
from assistant.errors import NotFoundError
from assistant.models import served_model_name
from assistant.parts import Parts
from assistant.storage import Adapter, Database


def engine_identity(row: Adapter) -> str:
    return versioned_name(row.name, row.version)


class ModelCatalog:
    """Resolves model names against the base model and the adapter registry."""

    def __init__(self, base_name: str, db: Database) -> None:
        self.base_name = base_name
        self.db = db
        self.created = int(time.time())
        self._int_ids: dict[str, int] = {}
        self._counter = itertools.count(1)

    @classmethod
    def of(cls, parts: Parts) -> ModelCatalog:
        """The catalog of the configured base model over `parts.db`, built once per `Parts` (server and CLI)."""
        return parts.attach("catalog", lambda p: cls(served_model_name(p.settings), p.db))

    def resolve(self, model: str) -> AdapterRef | None:
        if model == self.base_name:
            return None
        row = self._lookup(model)
        if row is None:
            raise NotFoundError(
                f"the model '{model}' does not exist; GET /v1/models lists the base model and the adapters",
                param="model",
                code="model_not_found",
            )
        return self._ref(row)

    def _lookup(self, model: str) -> Adapter | None:
        ref = parse_adapter_ref(model)
        if ref is None:
            return None
        with self.db.session() as session:
            if ref.version is not None:
                query = select(Adapter).where(Adapter.name == ref.name, Adapter.version == ref.version)
                return session.scalars(query).first()
            rows = session.scalars(
                select(Adapter).where(Adapter.name == ref.name).order_by(Adapter.version.desc())
            ).all()
        active = [row for row in rows if row.status == AdapterStatus.ACTIVE]
        return next(iter(active or rows), None)

    def _ref(self, row: Adapter) -> AdapterRef:
        identity = engine_identity(row)
        if identity not in self._int_ids:
            self._int_ids[identity] = next(self._counter)
        return AdapterRef(name=identity, int_id=self._int_ids[identity], path=row.path)

    def adapters(self) -> list[Adapter]:
        with self.db.session() as session:
            return list(session.scalars(select(Adapter).order_by(Adapter.name, Adapter.version)).all())
