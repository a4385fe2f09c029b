"""The stored data model: SQLModel tables, nothing that does I/O.

Tables and why they exist (see DESIGN.md, "Data model"):

- ``ApiKey``       producer credentials, hashed at rest, each belonging to one tenant. Results,
                   destinations and transcriptions carry their tenant: a producer sees only its own.
- ``Result``       what a producer sent, with its status and retention deadline.
- ``ResultViewer`` the Discord users a result belongs to: who may fetch it with ``/results``.
- ``Attachment``   the producer's files, bytes stored in the database so one backup holds everything.
- ``Destination``  one webhook / DM user / interaction: rate-limit state and the disabled flag live
                   here so every worker and replica sees the same bucket; a webhook's Discord
                   channel and guild, once learned, too.
- ``ChannelPacer`` Discord's hidden per-channel limit on webhook posts, shared by every webhook
                   (and every tenant's destination) of one channel: the send slots reserved in it.
- ``Delivery``     one per (result, destination, route generation): attempts, lease, last error.
- ``PlannedMessage`` the rendered messages of a delivery, each marked sent with its Discord id,
                   so a retry resumes at the first unsent message.
- ``DeliveryEvent``  the timeline of every attempt, shown by the admin page.
- ``AlertEvent``   something operators must hear about (a result undelivered, a destination
                   disabled, a Cloudflare ban), waiting to go out in the next alert digest.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# Every producer key belongs to a tenant; rows written before tenants existed belong to this one.
DEFAULT_TENANT = "default"
# Tenant names appear in destination keys and on the admin page: short, lower-case, no separators.
TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class ApiKey(SQLModel, table=True):
    """A producer key: ``rrk_<id>.<secret>``; only the sha256 of the whole key is stored."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(default="", max_length=200)
    tenant: str = Field(default=DEFAULT_TENANT, max_length=40)
    key_hash: str = Field(max_length=64)
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class Result(SQLModel, table=True):
    """One accepted result. ``status`` follows pending → delivering → delivered|undelivered → picked_up."""

    __tablename__ = "results"
    __table_args__ = (
        UniqueConstraint("key_id", "idempotency_key", name="uq_results_idempotency"),
        Index("ix_results_status_created", "status", "created_at"),
        Index("ix_results_workflow_created", "workflow_id", "created_at"),
        Index("ix_results_created", "created_at"),
        Index("ix_results_status_finished", "status", "finished_at"),
        Index("ix_results_tenant_created", "tenant", "created_at"),
        # A tenant's listing by status, newest first, is one range in order (bench/scale.py).
        Index("ix_results_tenant_status_created", "tenant", "status", "created_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    tenant: str = Field(default=DEFAULT_TENANT, max_length=40)
    key_id: str = Field(max_length=40)
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_hash: str = Field(max_length=64)
    workflow_id: str | None = Field(default=None, max_length=255)
    title: str | None = Field(default=None, sa_column=Column(Text))
    summary: str | None = Field(default=None, sa_column=Column(Text))
    body: str | None = Field(default=None, sa_column=Column(Text))
    fields_json: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Discord-native parts (``content`` above the embeds, ``embeds`` as Discord documents them).
    content: str | None = Field(default=None, sa_column=Column(Text))
    embeds_json: list[dict[str, Any]] = Field(default_factory=list,
                                              sa_column=Column(JSON, nullable=False, server_default="[]"))
    url: str | None = Field(default=None, sa_column=Column(Text))
    color: int | None = None
    level: str | None = Field(default=None, max_length=16)
    metadata_json: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    silent: bool = False  # sent with SUPPRESS_NOTIFICATIONS: nobody's phone buzzes
    mode: str = Field(default="first_success", max_length=16)
    status: str = Field(default="pending", max_length=16)
    generation: int = 1
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None  # retention counts from here (see ResultStore.purge)


class ResultViewer(SQLModel, table=True):
    """A Discord user a result was meant for: who may list and fetch it with ``/results``.

    Written with the result (its DM users, the users of its interactions, its ``discord_user_ids``)
    and with every new route, so ownership is one indexed lookup and never a scan of stored routes.
    """

    __tablename__ = "result_viewers"
    __table_args__ = (Index("ix_result_viewers_user", "user_id", "result_id"),)

    result_id: str = Field(primary_key=True, max_length=40)
    user_id: str = Field(primary_key=True, max_length=20)


class Attachment(SQLModel, table=True):
    """A producer file. Read back by byte range, so a plan never copies a whole 64 MiB blob eagerly."""

    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("result_id", "idx", name="uq_attachments_result_idx"),)

    id: int | None = Field(default=None, primary_key=True)
    result_id: str = Field(max_length=40, index=True)
    idx: int
    filename: str = Field(max_length=255)
    content_type: str = Field(default="application/octet-stream", max_length=255)
    size: int
    sha256: str = Field(max_length=64)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Destination(SQLModel, table=True):
    """Shared state of one Discord destination, keyed ``webhook:<id>``, ``dm:<user>``, ``interaction:<app>:<h>``."""

    __tablename__ = "destinations"

    key: str = Field(primary_key=True, max_length=120)
    tenant: str = Field(default=DEFAULT_TENANT, max_length=40)
    kind: str = Field(max_length=16)
    label: str = Field(default="", max_length=300)
    disabled: bool = False
    disabled_reason: str | None = Field(default=None, sa_column=Column(Text))
    disabled_at: datetime | None = None
    bucket: str | None = Field(default=None, max_length=100)
    remaining: int | None = None
    reset_at: datetime | None = None
    blocked_until: datetime | None = None
    dm_channel_id: str | None = Field(default=None, max_length=40)
    # A webhook's channel and guild as Discord reported them (message objects, GET /webhooks/{id}/{token}):
    # every destination of one channel shares that channel's pacer (see ``ChannelPacer``).
    channel_id: str | None = Field(default=None, max_length=40)
    guild_id: str | None = Field(default=None, max_length=40)
    lease_owner: str | None = Field(default=None, max_length=80)
    lease_expires_at: datetime | None = None
    updated_at: datetime


class ChannelPacer(SQLModel, table=True):
    """Send slots reserved in one Discord channel, so every worker and replica paces under one limit.

    ``slots_json`` holds the epoch seconds of the latest reserved sends (at most the limit's count);
    ``blocked_until`` is set by a ``shared``-scope 429: nothing goes into the channel before it.
    """

    __tablename__ = "channel_pacers"

    channel_id: str = Field(primary_key=True, max_length=40)
    slots_json: list[float] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    blocked_until: datetime | None = None
    updated_at: datetime


class Delivery(SQLModel, table=True):
    """Getting one result to one destination. ``target_json`` holds the (encrypted) secret parts."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_result", "result_id", "generation", "position"),
        Index("ix_deliveries_destination_next", "destination_key", "status", "created_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    result_id: str = Field(max_length=40)
    generation: int = 1
    position: int
    destination_key: str = Field(max_length=120)
    kind: str = Field(max_length=16)
    target_json: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime | None = None
    first_attempt_at: datetime | None = None
    last_error_status: int | None = None
    last_error_code: int | None = None
    last_error_message: str | None = Field(default=None, sa_column=Column(Text))
    lease_owner: str | None = Field(default=None, max_length=80)
    lease_expires_at: datetime | None = None
    render_scale: int = 0
    # The forum post (thread) the first message of this delivery created: every later message goes there.
    thread_id: str | None = Field(default=None, max_length=40)
    notice_sent_at: datetime | None = None  # hand-off notice on an interaction about to expire
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None = None


class PlannedMessage(SQLModel, table=True):
    """One rendered Discord message of a delivery; ``message_id`` set the moment Discord confirms it."""

    __tablename__ = "planned_messages"
    __table_args__ = (UniqueConstraint("delivery_id", "seq", name="uq_planned_delivery_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(index=True)
    seq: int
    payload_json: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    files_json: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    nonce: str = Field(max_length=25)
    message_id: str | None = Field(default=None, max_length=40)
    sent_at: datetime | None = None


class DeliveryEvent(SQLModel, table=True):
    """One attempt or state change of a delivery: the timeline the admin page draws."""

    __tablename__ = "delivery_events"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(index=True)
    at: datetime
    outcome: str = Field(max_length=32)
    http_status: int | None = None
    discord_code: int | None = None
    message: str | None = Field(default=None, sa_column=Column(Text))
    retry_at: datetime | None = None


class ConfigEntry(SQLModel, table=True):
    """Relay-wide values every replica must agree on (e.g. the hash of a generated admin token)."""

    __tablename__ = "config_entries"

    key: str = Field(primary_key=True, max_length=100)
    value: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime


class AdminSessionRecord(SQLModel, table=True):
    """A logged-in admin session. Logout deletes it, so a copied cookie dies at once on every replica."""

    __tablename__ = "admin_sessions"

    id: str = Field(primary_key=True, max_length=64)  # sha256 of the session id the cookie carries
    credential: str = Field(max_length=64)  # sha256 of the admin token it logged in with
    created_at: datetime
    expires_at: datetime = Field(index=True)


class ProgressMessage(SQLModel, table=True):
    """One progress message per (workflow, destination), edited in place; only the newest state is sent."""

    __tablename__ = "progress_messages"
    __table_args__ = (
        UniqueConstraint("workflow_id", "destination_key", name="uq_progress_workflow_destination"),
        Index("ix_progress_due", "version", "sent_version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(max_length=255)
    destination_key: str = Field(max_length=120)
    kind: str = Field(max_length=16)
    target_json: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state_json: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    version: int = 0
    sent_version: int = 0
    message_id: str | None = Field(default=None, max_length=40)
    done: bool = False
    failed_reason: str | None = Field(default=None, sa_column=Column(Text))
    lease_owner: str | None = Field(default=None, max_length=80)
    lease_expires_at: datetime | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class Transcription(SQLModel, table=True):
    """A durable transcription job: the audio waits here until its transcript is stored as a Result."""

    __tablename__ = "transcriptions"
    __table_args__ = (Index("ix_transcriptions_status", "status", "created_at"),)

    id: str = Field(primary_key=True, max_length=40)
    tenant: str = Field(default=DEFAULT_TENANT, max_length=40)
    key_id: str = Field(max_length=40)
    status: str = Field(default="queued", max_length=16)
    filename: str = Field(max_length=255)
    content_type: str = Field(default="application/octet-stream", max_length=255)
    size: int = 0
    audio: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    duration: float | None = None
    processed: float = 0.0
    language: str | None = Field(default=None, max_length=16)
    options_json: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    request_json: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    result_id: str | None = Field(default=None, max_length=40)
    error: str | None = Field(default=None, sa_column=Column(Text))
    attempts: int = 0
    lease_owner: str | None = Field(default=None, max_length=80)
    lease_expires_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class AlertEvent(SQLModel, table=True):
    """One thing to tell the operators, kept until a digest carried it (or it could not be sent)."""

    __tablename__ = "alert_events"
    __table_args__ = (Index("ix_alert_events_pending", "sent_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime
    kind: str = Field(max_length=32)  # undelivered | disabled | ban_started | ban_ended
    group_key: str = Field(max_length=300)  # events with the same key are one line of the digest
    text: str = Field(sa_column=Column(Text, nullable=False))
    detail_json: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    sent_at: datetime | None = None
