"""API keys issued through the API (`/v1/keys`): stored as sha256 digests, cached in memory, refreshed from the DB.

Contract:
- `KeyStore(db, clock)` is one per server process. `create(spec, by)` stores a new key and returns the `IssuedKey`
  with its secret (the only time the secret exists outside the caller: the database keeps its sha256 digest and a
  short prefix); `list()` returns every key, revoked ones included; `revoke(id)` and `rotate(id)` (a new secret for
  the same key, the old one refused at once) raise 404 for an unknown id and 409 for a revoked key (rotate).
- `lookup(digest)` reads only the in-memory cache (no I/O: it runs before a request body is read). A key created,
  revoked or rotated through this process is applied to the cache at once; `refresh()` reloads it from the database
  and writes the last-use times noted by `touch(id)`. The server calls it every `server.key_sync_s` seconds
  (`run_key_sync`), so a revocation made through another replica is honoured within one interval.
- `any_stored` is True once the database holds any key row (revoked ones too): from then on the server requires keys
  even when the settings file has none, so revoking the last key locks the server instead of opening it.
- `stored_keys_exist(url)` answers the same from the database without creating or migrating anything (the exposure
  check at start-up).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import create_engine, select, text, update
from sqlalchemy.orm import Session

from assistant.errors import ConflictError, InvalidRequestError, NotFoundError
from assistant.storage import Database
from assistant.storage.orm import ApiKeyRecord

log = logging.getLogger(__name__)

SECRET_PREFIX = "sk-"
SHOWN_PREFIX_CHARS = 8


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_hex(24)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes: they are UTC."""
    return value.replace(tzinfo=value.tzinfo or UTC) if value is not None else None


@dataclass(frozen=True)
class KeySpec:
    """What `POST /v1/keys` asks for (validated by the route's schema)."""

    name: str
    role: str = "member"
    collections: list[str] | None = None
    expires_at: datetime | None = None
    tokens_per_day: int | None = None
    requests_per_minute: int | None = None


@dataclass(frozen=True)
class StoredKey:
    """A key as the API lists it and as the cache holds it (never the secret)."""

    id: str
    name: str
    prefix: str
    role: str
    collections: list[str] | None
    owner: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_at: datetime | None
    tokens_per_day: int | None
    requests_per_minute: int | None
    digest: str = ""

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    @classmethod
    def of(cls, row: ApiKeyRecord) -> StoredKey:
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            role=row.role,
            collections=list(row.collections) if row.collections is not None else None,
            owner=row.created_by,
            created_at=_aware(row.created_at) or datetime.now(UTC),
            last_used_at=_aware(row.last_used_at),
            expires_at=_aware(row.expires_at),
            revoked_at=_aware(row.revoked_at),
            rotated_at=_aware(row.rotated_at),
            tokens_per_day=row.tokens_per_day,
            requests_per_minute=row.requests_per_minute,
            digest=row.digest,
        )


@dataclass(frozen=True)
class IssuedKey:
    """A key just created or rotated, with its secret (shown once)."""

    key: StoredKey
    secret: str


class KeyStore:
    """The database's keys and this process's cache of them (module contract)."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.clock = clock
        self._lock = threading.Lock()
        self._by_digest: dict[str, StoredKey] = {}
        self._by_id: dict[str, StoredKey] = {}
        self._used: dict[str, datetime] = {}  # key id -> last use not yet written
        self.any_stored = False
        self.refreshed_at: datetime | None = None

    # ------------------------------------------------------------------ the cache (no I/O)

    def lookup(self, digest: str) -> StoredKey | None:
        """The usable key with this secret digest, or None (revoked, expired or unknown)."""
        key = self._by_digest.get(digest)
        return key if key is not None and key.usable(self.clock()) else None

    def touch(self, key_id: str) -> None:
        with self._lock:
            self._used[key_id] = self.clock()

    def get(self, key_id: str) -> StoredKey | None:
        """The cached usable key with this id (its limits), or None."""
        return self._by_id.get(key_id)

    def _cache(self, keys: list[StoredKey], any_stored: bool) -> None:
        with self._lock:
            pending = dict(self._used)
        live = {
            k.digest: replace(k, last_used_at=pending.get(k.id, k.last_used_at)) for k in keys if k.revoked_at is None
        }
        self._by_digest = live  # one assignment: a concurrent lookup sees the old or the new map, never a mix
        self._by_id = {k.id: k for k in live.values()}
        self.any_stored = any_stored
        self.refreshed_at = self.clock()

    # ------------------------------------------------------------------ database

    def refresh(self) -> None:
        """Write noted last-use times, then reload every key from the database."""
        with self._lock:
            used, self._used = self._used, {}
        with self.db.session() as session:
            for key_id, when in used.items():
                session.execute(update(ApiKeyRecord).where(ApiKeyRecord.id == key_id).values(last_used_at=when))
            rows = [StoredKey.of(row) for row in session.scalars(select(ApiKeyRecord))]
        self._cache(rows, bool(rows))

    def list(self) -> list[StoredKey]:
        self.refresh()
        with self.db.session() as session:
            rows = session.scalars(select(ApiKeyRecord).order_by(ApiKeyRecord.created_at, ApiKeyRecord.id)).all()
            return [StoredKey.of(row) for row in rows]

    def create(self, spec: KeySpec, by: str) -> IssuedKey:
        now = self.clock()
        if spec.expires_at is not None and _aware(spec.expires_at) <= now:  # type: ignore[operator]
            raise InvalidRequestError("expires_at is in the past; give a future time", param="expires_at")
        secret = new_secret()
        row = ApiKeyRecord(
            name=spec.name,
            digest=digest_of(secret),
            prefix=secret[:SHOWN_PREFIX_CHARS],
            role=spec.role,
            collections=spec.collections if spec.role == "member" else None,
            created_by=by,
            created_at=now,
            expires_at=_aware(spec.expires_at),
            tokens_per_day=spec.tokens_per_day,
            requests_per_minute=spec.requests_per_minute,
        )
        with self.db.session() as session:
            session.add(row)
            session.flush()
            stored = StoredKey.of(row)
        self.refresh()
        log.info("API key %s (%r, %s) issued by %s", stored.id, stored.name, stored.role, by)
        return IssuedKey(stored, secret)

    def revoke(self, key_id: str) -> StoredKey:
        with self.db.session() as session:
            row = self._row(session, key_id)
            if row.revoked_at is None:
                row.revoked_at = self.clock()
            session.flush()
            stored = StoredKey.of(row)
        self.refresh()
        log.info("API key %s (%r) revoked", stored.id, stored.name)
        return stored

    def rotate(self, key_id: str) -> IssuedKey:
        secret = new_secret()
        with self.db.session() as session:
            row = self._row(session, key_id)
            if row.revoked_at is not None:
                raise ConflictError(f"the key {key_id} is revoked; create a new key instead", param="key_id")
            row.digest, row.prefix, row.rotated_at = digest_of(secret), secret[:SHOWN_PREFIX_CHARS], self.clock()
            session.flush()
            stored = StoredKey.of(row)
        self.refresh()
        log.info("API key %s (%r) rotated", stored.id, stored.name)
        return IssuedKey(stored, secret)

    @staticmethod
    def _row(session: Session, key_id: str) -> ApiKeyRecord:
        row = session.get(ApiKeyRecord, key_id)
        if row is None:
            message = f"no API key {key_id} (keys in the settings file cannot be changed through the API)"
            raise NotFoundError(message, param="key_id")
        return row


def stored_keys_exist(url: str) -> bool:
    """Whether the database at `url` holds any issued key, read without creating or migrating anything."""
    if url.startswith("sqlite:///"):
        from pathlib import Path

        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            return False
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT 1 FROM api_keys LIMIT 1")).first() is not None
    except Exception:  # no such table yet (not migrated), unreachable: no stored keys to rely on
        return False
    finally:
        engine.dispose()


async def run_key_sync(store: KeyStore, interval_s: float) -> None:
    """The lifespan task: `store.refresh()` every `interval_s` seconds; a failing pass is logged and retried."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(store.refresh)
        except Exception:
            log.exception("API key refresh failed")
