"""Who is calling: the API key's name, role, owner identity and the collections it may read.

Contract: `Principal.check_collections(requested)` returns the collections a request may search (the requested ones
when all are allowed; all allowed ones when none are named; None = no restriction) or raises 403.
`Principal.owner` is a stable identity of the key (a short sha256 fingerprint, never the key) stored on the chats the
key creates, so feedback and chat history can be limited to their owner. With no keys configured every caller is
`ANONYMOUS`: an unauthenticated admin (the server then only binds to loopback unless told otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from assistant.errors import PermissionDeniedError


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


@dataclass(frozen=True)
class Principal:
    name: str
    collections: frozenset[str] | None  # None: every collection
    role: Role = Role.ADMIN
    owner: str = "anonymous"
    authenticated: bool = False
    key_id: str | None = None  # a key issued through `/v1/keys` (quotas count per key); None for settings keys
    # A signed-in user's quotas (from their groups, `oidc.groups`); keys' quotas are read from the key store.
    tokens_per_day: int | None = None
    requests_per_minute: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def can_read(self, collection: str | None) -> bool:
        return self.collections is None or (collection is not None and collection in self.collections)

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

    def to_dict(self) -> dict[str, object]:
        collections = sorted(self.collections) if self.collections is not None else None
        role, authenticated = str(self.role), self.authenticated
        return {"name": self.name, "role": role, "collections": collections, "authenticated": authenticated}


ANONYMOUS = Principal(name="anonymous", collections=None)
