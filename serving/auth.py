"""API keys: when `server.api_keys` is non-empty, every route but the health checks needs `Authorization: Bearer KEY`.

Contract: keys are compared in constant time (`hmac.compare_digest` against every configured key, so the time taken
does not reveal which key or how much of it matched); a missing or wrong key is 401. The resolved `Principal` says
which collections the key may read (None = all); services refuse (403) a request naming a collection outside it and
limit unscoped retrieval to the allowed ones.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from assistant.errors import AuthenticationError
from assistant.settings import APIKey
from serving.principal import ANONYMOUS, Principal
from serving.state import StateDep


def _match(token: str, keys: list[APIKey]) -> APIKey | None:
    found = None
    for key in keys:  # no early exit: every key is compared, whatever matches
        if hmac.compare_digest(token.encode(), key.key.encode()):
            found = key
    return found


def require_api_key(request: Request, state: StateDep) -> Principal:
    keys = state.settings.server.api_keys
    if not keys:
        return ANONYMOUS
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("missing API key: send the header 'Authorization: Bearer YOUR_KEY'")
    key = _match(token.strip(), keys)
    if key is None:
        raise AuthenticationError("invalid API key")
    allowed = frozenset(key.collections) if key.collections is not None else None
    return Principal(name=key.name or "key", collections=allowed)


PrincipalDep = Annotated[Principal, Depends(require_api_key)]
