"""ID-token verification and session cookies of the OpenID Connect sign-in (serving/services/oidc_service.py), no
browser.

Tokens are signed here with joserfc (Authlib's JOSE successor) by a local RSA key published as a JWKS; a forged
(another key under the same key id), expired, wrongly addressed or replayed token must be refused. The whole callback
step (`OIDCSignIn.finish`) runs against a provider whose HTTP answers (discovery, JWKS, token endpoint) come from
an httpx transport in the test, so the code exchange, the PKCE verifier and the group mapping are checked too.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import stat
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from assistant.errors import AuthenticationError, PermissionDeniedError
from assistant.settings import Settings
from serving.auth import authenticate
from serving.principal import Role
from serving.request_guards import CrossSiteGuard
from serving.services.oidc_service import (
    SESSION_COOKIE,
    OIDCSignIn,
    SessionSeal,
    map_groups,
    session_secret,
    verify_id_token,
)
from serving.state import AppState

ISSUER = "https://idp.example.com"
CLIENT = "assistant-console"
NONCE = "nonce-0123456789"
GROUPS = {"hr": {"collections": ["hr"]}, "finance": {"collections": ["finance", "hr"]}, "ops": {"role": "admin"}}


def oidc_settings(tmp_path: Path, **extra: Any) -> Settings:
    oidc = {"issuer": ISSUER, "client_id": CLIENT, "client_secret": "s3cret", "groups": GROUPS}
    redirect = "https://assistant.example.com/auth/callback"
    return Settings(data_dir=tmp_path, oidc={**oidc, "redirect_url": redirect, **extra})


@pytest.fixture(scope="module")
def key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "idp-1"}, private=True)


def jwks_of(*keys: RSAKey) -> dict[str, Any]:
    return KeySet(list(keys)).as_dict(private=False)


def id_token(key: RSAKey | OctKey, alg: str = "RS256", **changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "u-1", "aud": CLIENT, "iat": now, "exp": now + 300, "nonce": NONCE}
    claims.update({"email": "hanna@example.com", "groups": ["hr"]})
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": "idp-1"}, claims, key, algorithms=[alg])


def verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    return verify_id_token(token, jwks, issuer=ISSUER, client_id=CLIENT, nonce=NONCE)


def test_a_valid_id_token_gives_its_claims(key: RSAKey) -> None:
    claims = verify(id_token(key), jwks_of(key))
    assert (claims["sub"], claims["email"], claims["groups"]) == ("u-1", "hanna@example.com", ["hr"])
    assert verify(id_token(key, aud=[CLIENT, "other"], azp=CLIENT), jwks_of(key))["sub"] == "u-1"


def test_a_forged_signature_is_refused(key: RSAKey) -> None:
    forger = RSAKey.generate_key(2048, parameters={"kid": "idp-1"}, private=True)  # same key id, another key
    with pytest.raises(AuthenticationError, match="not signed by the identity provider"):
        verify(id_token(forger), jwks_of(key))
    token = id_token(key)
    header, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["groups"] = ["ops"]  # an edited payload under the genuine signature
    edited = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(AuthenticationError):
        verify(f"{header}.{edited}.{signature}", jwks_of(key))


def test_symmetric_and_unsigned_tokens_are_refused(key: RSAKey) -> None:
    public_as_secret = OctKey.import_key(json.dumps(key.as_dict(private=False)).encode())
    with pytest.raises(AuthenticationError):
        verify(id_token(public_as_secret, alg="HS256"), jwks_of(key))
    unsigned = id_token(key).rsplit(".", 1)[0].split(".")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    with pytest.raises(AuthenticationError):
        verify(f"{none_header}.{unsigned[1]}.", jwks_of(key))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"exp": int(time.time()) - 3600}, "not valid"),  # expired an hour ago (beyond the clock-skew leeway)
        ({"aud": "another-app"}, "another client"),
        ({"aud": [CLIENT, "another-app"], "azp": "another-app"}, "another client"),
        ({"iss": "https://evil.example.com"}, "not valid"),
        ({"nonce": "a-replayed-nonce"}, "not valid"),
        ({"nonce": None}, "not valid"),
        ({"exp": None}, "not valid"),
    ],
    ids=["expired", "wrong-audience", "other-azp", "wrong-issuer", "wrong-nonce", "no-nonce", "no-expiry"],
)
def test_expired_misaddressed_and_replayed_tokens_are_refused(key: RSAKey, changes: dict[str, Any], words: str) -> None:
    with pytest.raises(AuthenticationError, match=words):
        verify(id_token(key, **changes), jwks_of(key))


def test_groups_map_to_the_highest_role_and_every_collection(tmp_path: Path) -> None:
    config = oidc_settings(tmp_path).oidc
    assert config is not None
    assert map_groups(config, ["hr"]) == (grant := map_groups(config, "hr")) and grant is not None
    assert (grant.role, grant.collections) == (Role.MEMBER, ("hr",))
    both = map_groups(config, ["hr", "finance", "unmapped"])
    assert both is not None and both.collections == ("finance", "hr")
    admin = map_groups(config, ["hr", "ops"])
    assert admin is not None and (admin.role, admin.collections) == (Role.ADMIN, None)
    assert map_groups(config, []) is None and map_groups(config, ["eng"]) is None and map_groups(config, None) is None


def test_session_seal_refuses_tampering_expiry_and_other_purposes() -> None:
    seal = SessionSeal(b"k" * 40)
    value = seal.seal("session", {"sub": "u-1", "role": "member"}, 60)
    opened = seal.open("session", value)
    assert opened is not None and (opened["sub"], opened["role"]) == ("u-1", "member")
    mac = value.split(".")[1]
    forged_body = base64.urlsafe_b64encode(b'{"sub":"u-1","role":"admin","purpose":"session","exp":9999999999}')
    assert seal.open("session", f"{forged_body.rstrip(b'=').decode()}.{mac}") is None
    assert seal.open("login", value) is None  # a session cookie is no pending login, and the reverse
    assert SessionSeal(b"x" * 40).open("session", value) is None
    assert seal.open("session", seal.seal("session", {"sub": "u-1"}, -1)) is None
    assert seal.open("session", "garbage") is None and seal.open("session", None) is None


def test_session_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = oidc_settings(tmp_path)
    first = session_secret(settings)
    path = tmp_path / "oidc-session.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) >= 32
    assert session_secret(settings) == first
    assert session_secret(oidc_settings(tmp_path, session_secret="x" * 40)) == b"x" * 40


class FakeProvider:
    """The provider's HTTP side for `OIDCSignIn`: discovery, JWKS and a token endpoint that checks PKCE."""

    def __init__(self, key: RSAKey) -> None:
        self.key = key
        self.token_claims: dict[str, Any] = {}
        self.challenge = ""
        self.jwks_reads = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/openid-configuration":
            endpoints = {"authorization_endpoint": "/authorize", "token_endpoint": "/token", "jwks_uri": "/jwks"}
            return httpx.Response(200, json={"issuer": ISSUER, **{k: ISSUER + v for k, v in endpoints.items()}})
        if request.url.path == "/jwks":
            self.jwks_reads += 1
            return httpx.Response(200, json=jwks_of(self.key))
        form = parse_qs(request.content.decode())
        verifier = form["code_verifier"][0]
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        expected_auth = "Basic " + base64.b64encode(f"{CLIENT}:s3cret".encode()).decode()
        if (
            digest != self.challenge
            or form["code"] != ["the-code"]
            or request.headers["authorization"] != expected_auth
        ):
            return httpx.Response(400, json={"error": "invalid_grant", "error_description": "PKCE verification failed"})
        return httpx.Response(200, json={"id_token": id_token(self.key, **self.token_claims), "token_type": "Bearer"})


async def sign_in(client: OIDCSignIn, provider: FakeProvider, state_override: str | None = None) -> tuple[str, Any]:
    url, pending = await client.start()
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["code_challenge_method"] == "S256" and query["client_id"] == CLIENT
    provider.challenge = query["code_challenge"]
    provider.token_claims.setdefault("nonce", query["nonce"])
    return await client.finish("the-code", state_override or query["state"], pending)


def test_the_callback_step_signs_in_maps_groups_and_refuses(tmp_path: Path, key: RSAKey) -> None:
    settings = oidc_settings(tmp_path)
    provider = FakeProvider(key)
    assert settings.oidc is not None
    client = OIDCSignIn(settings.oidc, session_secret(settings), httpx.MockTransport(provider.handle))
    cookie, principal = asyncio.run(sign_in(client, provider))
    assert (principal.name, principal.role, principal.collections) == ("hanna@example.com", Role.MEMBER, {"hr"})
    assert principal.owner == "oidc:u-1" and client.principal(f"other=1; {SESSION_COOKIE}={cookie}") == principal
    with pytest.raises(AuthenticationError, match="state mismatch"):
        asyncio.run(sign_in(client, provider, state_override="someone-elses-state"))
    provider.token_claims = {"nonce": "a-replayed-nonce"}
    with pytest.raises(AuthenticationError, match="not valid"):
        asyncio.run(sign_in(client, provider))
    provider.token_claims = {"groups": ["eng"]}
    with pytest.raises(PermissionDeniedError, match="in no group"):
        asyncio.run(sign_in(client, provider))
    provider.key = RSAKey.generate_key(2048, parameters={"kid": "idp-1"}, private=True)  # the provider rotates
    provider.token_claims = {}
    reads = provider.jwks_reads
    assert asyncio.run(sign_in(client, provider))[1] == principal and provider.jwks_reads == reads + 1


def test_the_session_cookie_is_a_credential_only_without_a_bearer_key(tmp_path: Path) -> None:
    settings = oidc_settings(tmp_path)
    assert settings.oidc is not None
    client = OIDCSignIn(settings.oidc, session_secret(settings))
    value = client.seal.seal("session", {"sub": "u-1", "email": None, "role": "member", "collections": ["hr"]}, 60)
    state = cast(AppState, SimpleNamespace(settings=settings, extras={"oidc": client}))
    principal = authenticate(state, None, f'theme={{"dark": 1}}; bad"name=1; {SESSION_COOKIE}={value}')
    assert (principal.name, principal.owner, principal.collections) == ("u-1", "oidc:u-1", frozenset({"hr"}))
    with pytest.raises(AuthenticationError):  # with oidc configured nobody is an anonymous admin
        authenticate(state, None, None)
    with pytest.raises(AuthenticationError):
        authenticate(state, None, f"{SESSION_COOKIE}={value[:-2]}xx")
    with pytest.raises(AuthenticationError):  # a wrong key is not rescued by a valid cookie
        authenticate(state, "Bearer wrong-key-0123456789", f"{SESSION_COOKIE}={value}")


def test_cookie_requests_that_change_something_must_come_from_this_site(tmp_path: Path) -> None:
    guard = CrossSiteGuard(lambda *a: None, oidc_settings(tmp_path))  # type: ignore[arg-type,return-value]

    def scope(**headers: str) -> dict[str, Any]:
        items = [(k.replace("_", "-").encode(), v.encode()) for k, v in {"host": "a.example", **headers}.items()]
        return {"type": "http", "method": "POST", "headers": items}

    cookie = f"{SESSION_COOKIE}=sealed"
    assert guard.refusal(scope(cookie=cookie, content_type="application/x-www-form-urlencoded")) is not None
    assert guard.refusal(scope(cookie=cookie, origin="https://evil.example", content_type="application/json"))
    assert guard.refusal(scope(cookie=cookie, sec_fetch_site="cross-site", x_requested_with="x")) is not None
    assert guard.refusal(scope(cookie=cookie, origin="http://a.example", content_type="application/json")) is None
    assert guard.refusal(scope(cookie=cookie, x_requested_with="assistant-console")) is None


def test_sign_in_routes_are_public_and_exist_only_when_configured(tmp_path: Path) -> None:
    from serving.access import Access, route_access
    from serving.app import create_app

    configured = create_app(oidc_settings(tmp_path))
    levels = {r.path: route_access(r, configured) for r in configured.routes if r.path.startswith("/auth/")}
    assert levels == {p: [Access.PUBLIC] for p in ("/auth/config", "/auth/logout", "/auth/login", "/auth/callback")}
    plain = create_app(Settings(data_dir=tmp_path))
    assert {r.path for r in plain.routes if r.path.startswith("/auth/")} == {"/auth/config", "/auth/logout"}
