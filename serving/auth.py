"""API keys: every route not declared public needs `Authorization: Bearer KEY` once any key exists.

Contract: `authenticate(state, authorization)` resolves the `Authorization` header to a `Principal`, synchronously and
without I/O (it may run in an ASGI middleware before the request body is read). Keys come from two places: the
settings file (`server.api_keys`, the bootstrap) and the database (`POST /v1/keys`, cached by the
`serving.services.key_service.KeyStore` on `state.extras["keys"]`). When neither holds a key every caller is `ANONYMOUS`
(an unauthenticated admin on a loopback server); once either does, a missing or wrong key is 401, and so is a
revoked or expired stored key. The token's sha256 digest is compared in constant time with every settings key's
digest (`hmac.compare_digest`, no early exit, so the time taken does not reveal which key or how much of it matched);
stored keys are found by the digest alone (a dictionary lookup on a hash reveals nothing of the secret). The resolved
`Principal` carries the key's role, its owner fingerprint, the collections it may read (None = all) and, for a stored
key, its id (quotas). Without an `Authorization` header, a console session cookie (OpenID Connect sign-in,
`serving.services.oidc_service`, passed as `cookie`) names the caller instead; with `oidc` configured a credential is
always required. `serving.deps.require_api_key` is the FastAPI dependency over it. Which role each route needs is
declared in `serving.access`, not here.
"""

from __future__ import annotations

import hashlib
import hmac

from assistant.errors import AuthenticationError
from assistant.settings import APIKey
from serving.principal import ANONYMOUS, Principal, Role
from serving.services.key_service import KeyStore, StoredKey
from serving.services.oidc_service import OIDCSignIn
from serving.state import AppState

MISSING_KEY = "missing API key: send the header 'Authorization: Bearer YOUR_KEY'"


def _match(digest: str, keys: list[APIKey]) -> APIKey | None:
    found = None
    for key in keys:  # no early exit: every key is compared, whatever matches
        if hmac.compare_digest(digest.encode(), key.digest.encode()):
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


def stored_principal(key: StoredKey) -> Principal:
    role = Role(key.role)
    allowed = frozenset(key.collections) if key.collections is not None and role is Role.MEMBER else None
    # The owner is the key's id, not its digest: chats and quotas stay with the key when it is rotated.
    return Principal(
        name=key.name, collections=allowed, role=role, owner=f"key:{key.id}", authenticated=True, key_id=key.id
    )


def key_store(state: AppState) -> KeyStore | None:
    store = state.extras.get("keys")
    return store if isinstance(store, KeyStore) else None


def keys_required(state: AppState) -> bool:
    store = key_store(state)
    signed_in_only = state.settings.oidc is not None  # with console sign-in nobody is an anonymous admin
    return bool(state.settings.server.api_keys) or (store is not None and store.any_stored) or signed_in_only


def authenticate(state: AppState, authorization: str | None, cookie: str | None = None) -> Principal:
    """The caller named by an `Authorization` header, else by a console session cookie (module contract); raises
    `AuthenticationError` (401)."""
    sign_in = state.extras.get("oidc")
    if not authorization and isinstance(sign_in, OIDCSignIn):
        session = sign_in.principal(cookie)
        if session is not None:
            return session
    if not keys_required(state):
        return ANONYMOUS
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(MISSING_KEY)
    digest = hashlib.sha256(token.encode()).hexdigest()
    bootstrap = _match(digest, state.settings.server.api_keys)
    if bootstrap is not None:
        return principal_of(bootstrap)
    store = key_store(state)
    stored = store.lookup(digest) if store is not None else None
    if stored is None or store is None:
        raise AuthenticationError("invalid API key (unknown, revoked or expired)")
    store.touch(stored.id)
    return stored_principal(stored)
