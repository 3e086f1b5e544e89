"""The models the API serves: the base model and the LoRA adapters of the registry, and who may name which.

Contract: `ModelCatalog.resolve(name, principal)` maps a request's `model` field to `None` (the base model) or an
`AdapterRef`; an adapter is named either by its alias `NAME` or exactly as `NAME@vN` (`assistant.adapter_refs.
parse_adapter_ref` also reads `NAME@N`, `NAME:vN`). Each version gets its own engine identity (`NAME@vN`) and integer
id, so no cached state of another version is reused.

Which versions a caller may name (`servable`, the one place this is decided):
- Only language-model adapters (`kind == "lm"`) whose LoRA rank fits `engine.max_lora_rank` are servable at all: a
  reward model or an oversized rank is refused (400 / 422) before the engine ever sees it, because a LoRA load that
  fails inside an engine step kills the engine for everyone.
- Admins (and the trusted internal callers, `principal=None`) may name any servable version: candidates, versions
  that failed the gate, inactive ones; the alias follows the active version, else the newest.
- Members may name the base model and the *active* version of an adapter (alias or exact name): a candidate or an
  inactive version is 403, an alias with no active version 404. And only when the adapter's training data is within
  the key's scope: the collections recorded in its lineage (`lineage["collections"]`) must all be readable by the key.
  A key that may read every collection may use every active adapter; a key limited to some collections may not use
  an adapter whose lineage does not say which collections its data came from (adapters registered before lineage
  recorded them): an admin re-registers or retrains it.
Unknown names raise `NotFoundError` (404, code `model_not_found`). `ModelCatalog.of(parts)` is the one catalog of a
`Parts` (the server, the CLI and the adapter service share it). The versions, and which one is active, come from the
registry (`training.registry.AdapterRegistry`, the lifecycle's one owner) as `AdapterRecord`s; the catalog reads no
table itself.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from pathlib import Path

from assistant.adapter_refs import AdapterStatus, parse_adapter_ref
from assistant.engine import AdapterRef
from assistant.errors import InvalidRequestError, NotFoundError, PermissionDeniedError, UnprocessableError
from assistant.model_files import served_model_name
from assistant.parts import Parts
from serving.principal import Principal
from training.registry import AdapterRecord, AdapterRegistry

log = logging.getLogger(__name__)


def engine_identity(row: AdapterRecord) -> str:
    return row.identity


def adapter_rank(path: str | Path) -> int | None:
    """The largest LoRA rank in a PEFT directory's adapter_config.json (`r` and any `rank_pattern`); None if unread."""
    try:
        config = json.loads((Path(path) / "adapter_config.json").read_text())
        ranks = [int(config.get("r") or 0), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return max(ranks)


def lineage_collections(row: AdapterRecord) -> list[str] | None:
    """The collections the adapter's training data came from, as its lineage records them (None: not recorded)."""
    collections = row.lineage.get("collections")
    if not isinstance(collections, list):
        return None
    return sorted(str(c) for c in collections)


class ModelCatalog:
    """Resolves model names against the base model and the adapter registry (see the module contract)."""

    def __init__(self, base_name: str, registry: AdapterRegistry, max_lora_rank: int | None = None) -> None:
        self.base_name = base_name
        self.registry = registry
        self.max_lora_rank = max_lora_rank
        self.created = int(time.time())
        self._int_ids: dict[str, int] = {}
        self._counter = itertools.count(1)
        self._ranks: dict[Path, int | None] = {}

    @classmethod
    def of(cls, parts: Parts) -> ModelCatalog:
        """The catalog of the configured base model over the registry of `parts`, built once per `Parts`."""
        rank = parts.settings.engine.max_lora_rank if parts.settings.engine.enable_lora else None
        return parts.attach("catalog", lambda p: cls(served_model_name(p.settings), AdapterRegistry.of(p), rank))

    def resolve(self, model: str, principal: Principal | None = None) -> AdapterRef | None:
        """The base model (None) or the adapter `model` names, if `principal` may name it (None: trusted caller)."""
        if model == self.base_name:
            return None
        row = self._lookup(model, principal)
        if row is None:
            raise NotFoundError(
                f"the model '{model}' does not exist; GET /v1/models lists the models this key may use",
                param="model",
                code="model_not_found",
            )
        self.check_servable(row)
        if principal is not None and not principal.is_admin:
            self.check_member_may_use(row, principal, model)
        return self._ref(row)

    def check_servable(self, row: AdapterRecord) -> None:
        """Refuse what the engine must never be asked to load: a non-LM adapter, a rank above the engine's limit."""
        identity = engine_identity(row)
        if row.kind != "lm":
            raise InvalidRequestError(
                f"{identity} is a {row.kind} model: it scores answers (POST /v1/rewards/score) and cannot chat",
                param="model",
                code="model_not_chat",
            )
        rank = self.rank(row)
        if self.max_lora_rank is not None and rank is not None and rank > self.max_lora_rank:
            raise UnprocessableError(
                f"{identity} has LoRA rank {rank}, above this server's engine.max_lora_rank {self.max_lora_rank}: "
                "raise engine.max_lora_rank and restart, or retrain with a smaller lora_r",
                param="model",
            )

    def check_member_may_use(self, row: AdapterRecord, principal: Principal, model: str) -> None:
        identity = engine_identity(row)
        if row.status != AdapterStatus.ACTIVE:
            raise PermissionDeniedError(
                f"{identity} is not the active version of {row.name}; member keys may use only active versions "
                "(an admin activates one with POST /v1/adapters/{name}/activate)",
                param="model",
            )
        if principal.collections is None:
            return
        trained_on = lineage_collections(row)
        if trained_on is None or not set(trained_on) <= principal.collections:
            raise PermissionDeniedError(
                f"{model} was trained on data from collections this API key may not read", param="model"
            )

    def may_use(self, row: AdapterRecord, principal: Principal | None) -> bool:
        """Whether `principal` may name this version (the listing of GET /v1/models)."""
        try:
            self.check_servable(row)
            if principal is not None and not principal.is_admin:
                self.check_member_may_use(row, principal, engine_identity(row))
        except (InvalidRequestError, UnprocessableError, PermissionDeniedError):
            return False
        return True

    def rank(self, row: AdapterRecord) -> int | None:
        if row.path not in self._ranks:  # a version's directory never changes once registered
            self._ranks[row.path] = adapter_rank(row.path)
        return self._ranks[row.path]

    def _lookup(self, model: str, principal: Principal | None) -> AdapterRecord | None:
        """The version `model` names: exact, or the alias (the active version, else the newest: members only the
        active one)."""
        ref = parse_adapter_ref(model)
        if ref is None:
            return None
        if ref.version is not None:
            return self.registry.get(ref.name, ref.version)
        row = self.registry.alias(ref.name)
        if row is not None and row.status != AdapterStatus.ACTIVE and principal is not None and not principal.is_admin:
            raise NotFoundError(
                f"the adapter '{model}' has no active version yet; an admin activates one",
                param="model",
                code="model_not_found",
            )
        return row

    def _ref(self, row: AdapterRecord) -> AdapterRef:
        identity = engine_identity(row)
        if identity not in self._int_ids:
            self._int_ids[identity] = next(self._counter)
        return AdapterRef(name=identity, int_id=self._int_ids[identity], path=str(row.path))

    def adapters(self) -> list[AdapterRecord]:
        """Every version of every adapter, by name and version (the registry's `list`)."""
        return self.registry.list()
