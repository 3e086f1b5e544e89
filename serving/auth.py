"""API keys: when `server.api_keys` is non-empty, every route not declared public needs `Authorization: Bearer KEY`.

Contract: the token's sha256 digest is compared in constant time with every configured key's digest
(`hmac.compare_digest`, no early exit, so the time taken does not reveal which key or how much of it matched; keys
may be configured as digests, so the server never needs the token itself); a missing or wrong key is 401. The
resolved `Principal` carries the key's role, its owner fingerprint and the collections it may read (None = all);
services refuse (403) a request naming a collection outside it and limit unscoped retrieval to the allowed ones.
Which role each route needs is declared in `serving.access`, not here.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from assistant.errors import AuthenticationError
from assistant.settings import APIKey
from serving.principal import ANONYMOUS, Principal, Role
from serving.state import StateDep


def _match(token: str, keys: list[APIKey]) -> APIKey | None:
    digest = hashlib.sha256(token.encode()).hexdigest().encode()
    found = None
    for key in keys:  # no early exit: every key is compared, whatever matches
        if hmac.compare_digest(digest, key.digest.encode()):
            found = key
    return found


def principal_of(key: APIKey) -> Principal:
    role = Role(key.role)
    allowed = frozenset(key.collections) if key.collections is not None and role is Role.MEMBER else None
    return Principal(
        name=key.name or "key",
        collections=allowed,
        role=role,
        owner=f"key:{key.digest[:16]}",
        authenticated=True,
    )


def require_api_key(request: Request, state: StateDep) -> Principal:
    keys = state.settings.server.api_keys
    if not keys:
        return ANONYMOUS
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("missing API key: send the header 'Authorization: Bearer YOUR_KEY'")
    key = _match(token.strip(), keys)
    if key is None:
        raise AuthenticationError("invalid API key")
    return principal_of(key)


PrincipalDep = Annotated[Principal, Depends(require_api_key)]
