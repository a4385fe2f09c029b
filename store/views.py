"""What the store hands the API and the admin page: frozen views, filters and page cursors.

Never ORM rows or sessions: a view is read in one transaction and stays valid after it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.targets import Target
from store.session import as_utc


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


def encode_cursor(created_at: datetime, result_id: str) -> str:
    """An opaque cursor: the position of the last item of a page."""
    raw = f"{as_utc(created_at).isoformat()}|{result_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of ``encode_cursor``; ``ValueError`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, result_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), result_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("is not a cursor this relay issued") from exc
