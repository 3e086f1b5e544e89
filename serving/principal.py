"""Who is calling: the API key's name and the collections it may read.

Contract: `Principal.check_collections(requested)` returns the collections a request may search (the requested ones
when all are allowed; all allowed ones when none are named; None = no restriction) or raises 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from assistant.errors import PermissionDeniedError


@dataclass(frozen=True)
class Principal:
    name: str
    collections: frozenset[str] | None  # None: every collection

    def check_collections(self, requested: list[str] | None) -> list[str] | None:
        """The collections a request may search: the requested ones if all allowed, else 403."""
        if self.collections is None:
            return requested
        if requested is None:
            return sorted(self.collections)
        denied = [c for c in requested if c not in self.collections]
        if denied:
            raise PermissionDeniedError(
                f"this API key may not read the collection(s) {', '.join(denied)}", param="collections"
            )
        return requested


ANONYMOUS = Principal(name="anonymous", collections=None)
