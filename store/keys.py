"""Producer keys: created here, verified in constant time, revoked, never stored in clear."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlmodel import col

from schemas.tables import DEFAULT_TENANT, TENANT_NAME, ApiKey
from store.ids import new_id
from store.session import Database, Store, as_utc, utcnow


@dataclass(frozen=True)
class Producer:
    """An authenticated producer key and the tenant it belongs to: the scope of every ``/v1`` call."""

    key_id: str
    tenant: str = DEFAULT_TENANT


def check_tenant(name: str) -> str:
    """``name`` if it is a valid tenant name, else ``ValueError`` saying what one looks like."""
    if not TENANT_NAME.match(name):
        raise ValueError(f"invalid tenant {name!r}: 1-40 characters of a-z, 0-9, '_' and '-', starting alphanumeric")
    return name


@dataclass(frozen=True)
class KeyInfo:
    """A producer key without its secret."""

    id: str
    name: str
    tenant: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def token_digest(token: str) -> str:
    """The sha256 hex digest under which a credential (a producer key, the admin token) is kept and compared.

    The credentials are long random strings, so a plain digest cannot be reversed by guessing.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def parse_configured_key(entry: str) -> tuple[str, str]:
    """``(tenant, key)`` of a ``RELAY_API_KEYS`` entry written ``tenant:key`` or just ``key``."""
    tenant, sep, key = entry.partition(":")
    if sep and TENANT_NAME.match(tenant) and key:
        return tenant, key
    return DEFAULT_TENANT, entry


class KeyStore(Store):
    """Producer keys: created here, verified in constant time, revoked, never stored in clear."""

    def __init__(self, db: Database, *, configured_keys: Sequence[str] = (), cache_ttl: float = 5.0) -> None:
        super().__init__(db)
        # A configured key's id comes from its hash, not its position: reordering RELAY_API_KEYS must
        # never hand one key's results (stored under its id) to another key.
        self._configured: list[tuple[Producer, str]] = []
        for entry in configured_keys:
            tenant, key = parse_configured_key(entry)
            digest = token_digest(key)
            self._configured.append((Producer(key_id=f"env-{digest[:12]}", tenant=tenant), digest))
        # Verified keys, by hash: every request of a busy producer would otherwise cost a query.
        # A key revoked from another process keeps working here for at most ``cache_ttl`` seconds.
        self._cache: dict[str, tuple[float, Producer, bool]] = {}
        self._cache_ttl = cache_ttl

    def create(self, *, name: str = "", tenant: str = DEFAULT_TENANT) -> tuple[KeyInfo, str]:
        """A new key of ``tenant``; the clear text is returned once and never again."""
        check_tenant(tenant)
        key_id = new_id("key")
        clear = f"rrk_{key_id[4:]}.{secrets.token_urlsafe(32)}"
        row = ApiKey(id=key_id, name=name, tenant=tenant, key_hash=token_digest(clear), created_at=utcnow())
        with self._db.session(write=True) as session:
            session.add(row)
        return _key_info(row), clear

    def count_active(self) -> int:
        """How many keys (stored or configured) can authenticate."""
        with self._db.session() as session:
            stored = session.scalar(select(func.count()).select_from(ApiKey).where(col(ApiKey.revoked_at).is_(None)))
        return int(stored or 0) + len(self._configured)

    def list(self) -> list[KeyInfo]:
        """Every stored key, newest first."""
        with self._db.session() as session:
            rows = session.scalars(select(ApiKey).order_by(col(ApiKey.created_at).desc())).all()
        return [_key_info(r) for r in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; False when no such key exists."""
        with self._db.session(write=True) as session:
            done = session.execute(
                update(ApiKey).where(col(ApiKey.id) == key_id,
                                     col(ApiKey.revoked_at).is_(None)).values(revoked_at=utcnow())
            )
            revoked = bool(done.rowcount)  # type: ignore[attr-defined]
        self._cache.clear()
        return revoked

    def _configured_key(self, digest: str) -> Producer | None:
        """The producer of a ``RELAY_API_KEYS`` key with this hash (every one compared, in constant time)."""
        found = None
        for producer, expected in self._configured:
            if hmac.compare_digest(digest, expected):
                found = producer
        return found

    def cached(self, presented: str) -> tuple[Producer, bool] | None:
        """A recent verdict on this key, if there is one (no I/O: safe on the event loop)."""
        digest = token_digest(presented)
        if (configured := self._configured_key(digest)) is not None:
            return configured, False
        hit = self._cache.get(digest)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1], hit[2]

    def verify(self, presented: str) -> tuple[Producer, bool] | None:
        """``(producer, revoked)`` for a known key, None for an unknown one. Hashes compared in constant time."""
        digest = token_digest(presented)
        if (configured := self._configured_key(digest)) is not None:
            return configured, False
        if not presented.startswith("rrk_") or "." not in presented:
            return None
        key_id = "key_" + presented[4:].split(".", 1)[0]
        with self._db.session() as session:
            row = session.get(ApiKey, key_id)
        if row is None or not hmac.compare_digest(digest, row.key_hash):
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        producer = Producer(key_id=key_id, tenant=row.tenant)
        self._cache[digest] = (time.monotonic() + self._cache_ttl, producer, row.revoked_at is not None)
        return producer, row.revoked_at is not None


def _key_info(row: ApiKey) -> KeyInfo:
    return KeyInfo(id=row.id, name=row.name, tenant=row.tenant, created_at=as_utc(row.created_at),
                   revoked_at=as_utc(row.revoked_at), last_used_at=as_utc(row.last_used_at))
