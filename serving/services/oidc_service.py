"""OpenID Connect sign-in for the console: the provider's metadata and keys, the login round trip, session cookies.

Contract:
- `OIDCSignIn(settings, secret)` (one per app, on `state.extras["oidc"]`, built by `OIDCSignIn.of(settings)`, which
  reads or creates the session key) talks to the provider named by `settings.oidc.issuer`: its discovery document
  (`/.well-known/openid-configuration`) and its JWKS are fetched once and cached; the JWKS is fetched again when an ID
  token names a key id it does not hold (the provider rotated its keys).
- `start()` returns the provider URL to send the browser to and the pending login (state, nonce, PKCE verifier) sealed
  for a short-lived cookie; `finish(code, state, pending)` checks the state, exchanges the code (with the verifier and,
  if set, the client secret), verifies the ID token (`verify_id_token`: signature against the JWKS, issuer, audience,
  expiry, nonce) and maps its groups to a role and collections (`map_groups`). It returns the sealed session cookie
  value. A bad state, token or login is `AuthenticationError` (401), a user in no mapped group
  `PermissionDeniedError` (403), an unreachable provider `ServiceUnavailableError` (503).
- `principal(cookie_header)` resolves a session cookie to a `Principal` synchronously without I/O (None when absent,
  tampered with or expired): `serving.auth.authenticate` calls it when a request has no `Authorization` header.
- Cookies are sealed with HMAC-SHA256 (`SessionSeal`): JSON, its purpose (login or session) and expiry inside, so a
  login cookie cannot pass as a session. Sessions are stateless: sign-out clears the cookie in the browser, and a
  copied cookie stays valid until it expires (`oidc.session_hours`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.requests import cookie_parser

from assistant.errors import AuthenticationError, ConfigError, PermissionDeniedError, ServiceUnavailableError
from assistant.settings import OIDCSettings, Settings
from serving.principal import Principal, Role

log = logging.getLogger(__name__)
SESSION_COOKIE = "assistant_session"
LOGIN_COOKIE = "assistant_oidc_login"
LOGIN_TTL_S = 600  # a sign-in must come back from the provider within ten minutes
# Asymmetric algorithms only: a token "signed" with HS256 using the provider's public key as the secret is refused.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_S = 60  # clock skew tolerated between this server and the provider


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSeal:
    """HMAC-signed expiring JSON for cookies; `open` answers None when tampered with, expired or mis-purposed."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def seal(self, purpose: str, data: dict[str, Any], ttl_s: float) -> str:
        body = _b64(json.dumps({**data, "purpose": purpose, "exp": int(time.time() + ttl_s)}).encode())
        return f"{body}.{self._mac(body)}"

    def open(self, purpose: str, value: str | None) -> dict[str, Any] | None:
        body, _, mac = (value or "").partition(".")
        if not body or not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        try:
            data = json.loads(_unb64(body))
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("purpose") != purpose or data.get("exp", 0) < time.time():
            return None
        return data

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self.secret, body.encode(), hashlib.sha256).digest())


def session_secret(settings: Settings) -> bytes:
    """`oidc.session_secret`, else a key generated once into the data dir (mode 0600) and read back later."""
    assert settings.oidc is not None
    if settings.oidc.session_secret:
        return settings.oidc.session_secret.encode()
    path = settings.data_dir / "oidc-session.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(48))
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    secret = path.read_text().strip().encode()
    if len(secret) < 32:
        raise ConfigError(f"{path} holds no usable session key (fewer than 32 characters); delete it to make a new one")
    return secret


@dataclass(frozen=True)
class Grant:
    """What a signed-in user may do: the role and collections their groups map to (None: every collection)."""

    role: Role
    collections: tuple[str, ...] | None
    tokens_per_day: int | None = None  # the most generous of the user's groups (None: unlimited)
    requests_per_minute: int | None = None


def map_groups(config: OIDCSettings, groups: object) -> Grant | None:
    """The highest role and every collection the user's mapped groups give; None when no group is mapped."""
    names = [groups] if isinstance(groups, str) else groups if isinstance(groups, list) else []
    mapped = [config.groups[g] for g in names if isinstance(g, str) and g in config.groups]
    if not mapped:
        return None
    tokens = _most_generous([m.tokens_per_day for m in mapped])
    requests = _most_generous([m.requests_per_minute for m in mapped])
    if any(m.role == "admin" for m in mapped):
        return Grant(Role.ADMIN, None, tokens, requests)
    if any(m.collections is None for m in mapped):
        return Grant(Role.MEMBER, None, tokens, requests)
    return Grant(Role.MEMBER, tuple(sorted({c for m in mapped for c in m.collections or []})), tokens, requests)


def _most_generous(limits: list[int | None]) -> int | None:
    return None if any(limit is None for limit in limits) else max(limit for limit in limits if limit is not None)


def verify_id_token(
    token: str, jwks: dict[str, Any], *, issuer: str, client_id: str, nonce: str, now: int | None = None
) -> dict[str, Any]:
    """The ID token's claims once its signature (against `jwks`), issuer, audience, expiry and nonce hold."""
    try:
        decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=ALGORITHMS)  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise AuthenticationError(f"the ID token is not signed by the identity provider's keys ({exc})") from exc
    claims = dict(decoded.claims)
    checks = jwt.JWTClaimsRegistry(
        now=now,
        leeway=LEEWAY_S,
        iss={"essential": True, "value": issuer},
        sub={"essential": True},
        exp={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        checks.validate(claims)
    except JoseError as exc:
        raise AuthenticationError(f"the ID token is not valid for this sign-in ({exc})") from exc
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    if client_id not in audiences or (len(audiences) > 1 and claims.get("azp") != client_id):
        raise AuthenticationError(f"the ID token was issued to another client (aud {audience!r}, not {client_id!r})")
    return claims


def principal_of_session(data: dict[str, Any]) -> Principal:
    role = Role(data["role"])
    collections = data.get("collections")
    allowed = frozenset(collections) if collections is not None and role is Role.MEMBER else None
    return Principal(
        name=str(data.get("email") or data["sub"]),
        collections=allowed,
        role=role,
        owner=f"oidc:{data['sub']}",
        authenticated=True,
        tokens_per_day=data.get("tokens_per_day"),
        requests_per_minute=data.get("requests_per_minute"),
    )


class OIDCSignIn:
    """The provider client and the cookies of one app (see the module contract)."""

    def __init__(self, config: OIDCSettings, secret: bytes, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.seal = SessionSeal(secret)
        self.transport = transport  # tests may route the provider's HTTP elsewhere
        self._metadata: dict[str, Any] | None = None
        self._jwks: dict[str, Any] | None = None

    @classmethod
    def of(cls, settings: Settings) -> OIDCSignIn:
        if settings.oidc is None:
            raise ConfigError("OpenID Connect sign-in is not configured (set the `oidc` section)")
        return cls(settings.oidc, session_secret(settings))

    @property
    def session_ttl_s(self) -> float:
        return self.config.session_hours * 3600

    def principal(self, cookie_header: str | None) -> Principal | None:
        if not cookie_header:
            return None
        # Starlette's lenient parser: http.cookies drops every cookie of a header once one of them is malformed
        # (another app's cookie on the same host would sign the user out)
        data = self.seal.open("session", cookie_parser(cookie_header).get(SESSION_COOKIE))
        return principal_of_session(data) if data is not None else None

    async def _get(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=10, transport=self.transport) as client:
                response = await client.get(url)
                response.raise_for_status()
                body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ServiceUnavailableError(f"the identity provider could not be read at {url} ({exc})") from exc
        if not isinstance(body, dict):
            raise ServiceUnavailableError(f"the identity provider answered {url} with no JSON object")
        return body

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            found = await self._get(url)
            if found.get("issuer") != self.config.issuer:
                raise ServiceUnavailableError(
                    f"the provider's discovery document names the issuer {found.get('issuer')!r}, not "
                    f"{self.config.issuer!r} (oidc.issuer must match it exactly)"
                )
            self._metadata = found
        return self._metadata

    async def jwks(self, refresh: bool = False) -> dict[str, Any]:
        if self._jwks is None or refresh:
            self._jwks = await self._get(str((await self.metadata())["jwks_uri"]))
        return self._jwks

    async def start(self) -> tuple[str, str]:
        """The provider's authorization URL and the sealed pending login (for the login cookie)."""
        metadata = await self.metadata()
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        query = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_url,
            "scope": " ".join(self.config.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        pending = self.seal.seal("login", {"state": state, "nonce": nonce, "verifier": verifier}, LOGIN_TTL_S)
        return f"{metadata['authorization_endpoint']}?{urlencode(query)}", pending

    async def finish(self, code: str, state: str, pending_cookie: str | None) -> tuple[str, Principal]:
        """The sealed session cookie value and its principal, once the provider's answer checks out."""
        pending = self.seal.open("login", pending_cookie)
        if pending is None:
            raise AuthenticationError("this sign-in expired or was started in another browser; sign in again")
        if not code or not hmac.compare_digest(state.encode(), str(pending["state"]).encode()):
            raise AuthenticationError("the sign-in answer does not belong to this browser's sign-in (state mismatch)")
        id_token = await self._exchange(code, str(pending["verifier"]))
        claims = await self._verify(id_token, str(pending["nonce"]))
        grant = map_groups(self.config, claims.get(self.config.groups_claim))
        who = str(claims.get("email") or claims["sub"])
        if grant is None:
            raise PermissionDeniedError(
                f"{who} is signed in at the identity provider but in no group this server maps to a role "
                f"(oidc.groups); ask an administrator to map one of your groups"
            )
        data = {"sub": str(claims["sub"]), "email": claims.get("email"), "role": str(grant.role)}
        data["collections"] = list(grant.collections) if grant.collections is not None else None
        data["tokens_per_day"], data["requests_per_minute"] = grant.tokens_per_day, grant.requests_per_minute
        log.info("oidc sign-in: %s as %s", who, grant.role)
        return self.seal.seal("session", data, self.session_ttl_s), principal_of_session(data)

    async def _exchange(self, code: str, verifier: str) -> str:
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.config.redirect_url,
            "code_verifier": verifier,
            "client_id": self.config.client_id,
        }
        secret = self.config.client_secret
        auth = httpx.BasicAuth(self.config.client_id, secret) if secret else httpx.USE_CLIENT_DEFAULT
        try:
            async with httpx.AsyncClient(timeout=10, transport=self.transport) as client:
                response = await client.post(str(metadata["token_endpoint"]), data=form, auth=auth)
        except httpx.HTTPError as exc:
            message = f"the identity provider's token endpoint could not be reached ({exc})"
            raise ServiceUnavailableError(message) from exc
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.status_code != 200 or not isinstance(body.get("id_token"), str):
            reason = body.get("error_description") or body.get("error") or response.status_code
            raise AuthenticationError(f"the identity provider refused the sign-in code ({reason})")
        return str(body["id_token"])

    async def _verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        issuer, client = self.config.issuer, self.config.client_id
        try:
            return verify_id_token(id_token, await self.jwks(), issuer=issuer, client_id=client, nonce=nonce)
        except AuthenticationError:
            # a key id the cached JWKS lacks: the provider may have rotated its keys since they were fetched
            keys = await self.jwks(refresh=True)
            return verify_id_token(id_token, keys, issuer=issuer, client_id=client, nonce=nonce)
