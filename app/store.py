"""The store for results, keys and their deliveries: classes with the engine injected.

Routes call one method each; every method is one transaction and returns domain objects
(frozen dataclasses), never ORM rows or sessions. Database errors that mean "the store is not
reachable" surface as ``StoreUnavailable`` so the API can answer 503 instead of 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlmodel import Session

from app.destinations import Target
from app.ids import new_id
from schemas.tables import DEFAULT_TENANT, TENANT_NAME, ApiKey
from store.errors import (  # re-exported: the API maps these to HTTP answers
    IdempotencyConflict as IdempotencyConflict,
)
from store.errors import NotFound as NotFound
from store.errors import StoreError as StoreError
from store.errors import StoreUnavailable as StoreUnavailable
from store.errors import translated


def utcnow() -> datetime:
    """Aware UTC now; every timestamp in the store is UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Backends may hand back naive datetimes (SQLite): read them as UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
class NewAttachment:
    """A file about to be stored."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class NewResult:
    """Everything ``ResultStore.create`` needs, already validated."""

    key_id: str
    tenant: str
    idempotency_key: str | None
    request_hash: str
    workflow_id: str | None
    title: str | None
    summary: str | None
    body: str | None
    fields: list[dict[str, Any]]
    url: str | None
    color: int | None
    level: str | None
    metadata: dict[str, Any]
    mode: str
    targets: Sequence[Target]
    attachments: Sequence[NewAttachment] = ()
    content: str | None = None
    embeds: list[dict[str, Any]] = field(default_factory=list)
    discord_user_ids: Sequence[str] = ()  # besides the users its DM and interaction destinations name
    silent: bool = False


@dataclass(frozen=True)
class AttachmentMeta:
    """A stored file without its bytes."""

    index: int
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DeliveryView:
    """One destination of a result as the API and admin page show it (no secrets in ``stored``)."""

    id: int
    position: int
    destination_key: str
    kind: str
    stored: dict[str, Any]
    status: str
    attempts: int
    message_ids: list[str]
    last_error_status: int | None
    last_error_code: int | None
    last_error_message: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


@dataclass(frozen=True)
class ResultView:
    """A result with its current deliveries and attachment metadata."""

    id: str
    tenant: str
    status: str
    workflow_id: str | None
    title: str | None
    mode: str
    created_at: datetime
    updated_at: datetime
    generation: int
    deliveries: list[DeliveryView] = field(default_factory=list)
    attachments: list[AttachmentMeta] = field(default_factory=list)


@dataclass(frozen=True)
class ResultContentView:
    """The whole original result."""

    id: str
    workflow_id: str | None
    title: str | None
    summary: str | None
    body: str | None
    fields: list[dict[str, Any]]
    url: str | None
    color: int | None
    level: str | None
    metadata: dict[str, Any]
    attachments: list[AttachmentMeta]
    content: str | None = None
    embeds: list[dict[str, Any]] = field(default_factory=list)
    silent: bool = False


@dataclass(frozen=True)
class ResultFilter:
    """Filters shared by the listing, bulk redelivery and the admin page (``tenant`` None: every tenant)."""

    tenant: str | None = None
    status: Sequence[str] = ()
    workflow_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    destination: str | None = None
    search: str | None = None


@dataclass(frozen=True)
class KeyInfo:
    """A producer key without its secret."""

    id: str
    name: str
    tenant: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class Database:
    """Owns the engine and translates connection failures into ``StoreUnavailable``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write_engine = engine.execution_options(sqlite_write=True)

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction, committed on success; write sessions lock early on SQLite."""
        with translated(), Session(self._write_engine if write else self.engine, expire_on_commit=False) as session:
            yield session
            session.commit()

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless a trivial query succeeds."""
        with self.session() as session:
            session.exec(select(1))  # type: ignore[call-overload]


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_configured_key(entry: str) -> tuple[str, str]:
    """``(tenant, key)`` of a ``RELAY_API_KEYS`` entry written ``tenant:key`` or just ``key``."""
    tenant, sep, key = entry.partition(":")
    if sep and TENANT_NAME.match(tenant) and key:
        return tenant, key
    return DEFAULT_TENANT, entry


class KeyStore:
    """Producer keys: created here, verified in constant time, revoked, never stored in clear."""

    def __init__(self, db: Database, *, configured_keys: Sequence[str] = (), cache_ttl: float = 5.0) -> None:
        self._db = db
        # A configured key's id comes from its hash, not its position: reordering RELAY_API_KEYS must
        # never hand one key's results (stored under its id) to another key.
        self._configured: list[tuple[Producer, str]] = []
        for entry in configured_keys:
            tenant, key = parse_configured_key(entry)
            digest = _hash_key(key)
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
        row = ApiKey(id=key_id, name=name, tenant=tenant, key_hash=_hash_key(clear), created_at=utcnow())
        with self._db.session(write=True) as session:
            session.add(row)
        return _key_info(row), clear

    def count_active(self) -> int:
        """How many keys (stored or configured) can authenticate."""
        with self._db.session() as session:
            stored = session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None)))
        return int(stored or 0) + len(self._configured)

    def list(self) -> list[KeyInfo]:
        """Every stored key, newest first."""
        with self._db.session() as session:
            rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc())).all()
        return [_key_info(r) for r in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; False when no such key exists."""
        with self._db.session(write=True) as session:
            done = session.execute(
                update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
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
        digest = _hash_key(presented)
        if (configured := self._configured_key(digest)) is not None:
            return configured, False
        hit = self._cache.get(digest)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1], hit[2]

    def verify(self, presented: str) -> tuple[Producer, bool] | None:
        """``(producer, revoked)`` for a known key, None for an unknown one. Hashes compared in constant time."""
        digest = _hash_key(presented)
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
    return KeyInfo(id=row.id, name=row.name, tenant=row.tenant, created_at=as_utc(row.created_at),  # type: ignore[arg-type]
                   revoked_at=as_utc(row.revoked_at), last_used_at=as_utc(row.last_used_at))


def encode_cursor(created_at: datetime, result_id: str) -> str:
    """An opaque cursor: the position of the last item of a page."""
    raw = f"{as_utc(created_at).isoformat()}|{result_id}"  # type: ignore[union-attr]
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of ``encode_cursor``; ``ValueError`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, result_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), result_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("is not a cursor this relay issued") from exc
