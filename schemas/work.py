"""The value types the store and the delivery engine exchange: claimed work and what became of it.

The store (``store.deliveries``, ``store.progress``, ``store.channels``, ``store.alerts``) builds
them from rows in one transaction; the engine (``delivery``) reads them and never sees a row or a
session. Frozen, so nothing handed across can change behind anyone's back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.messages import BucketState, MessagePlan, RenderInput

#: Renders a result for a destination kind at a size scale; None declines (render outside the lock).
Renderer = Callable[[RenderInput, int, str], Sequence[MessagePlan] | None]



@dataclass(frozen=True)
class ClaimedDestination:
    """A destination this worker now owns until its lease expires."""

    key: str
    kind: str
    disabled: bool
    disabled_reason: str | None
    bucket: BucketState
    dm_channel_id: str | None
    previous_owner: str | None = None  # a dead worker's lease this claim took over, if any
    channel_id: str | None = None  # the webhook's Discord channel, once learned (see store.channels)
    guild_id: str | None = None


@dataclass(frozen=True)
class Work:
    """One due delivery with what is needed to render and send it."""

    delivery_id: int
    result_id: str
    kind: str
    target: dict[str, Any]
    attempts: int
    render_scale: int
    first_attempt_at: datetime | None
    result_created_at: datetime
    result: RenderInput
    stale: str | None = None  # why it must not be sent any more (result acknowledged, superseded)
    next_kind: str | None = None  # the route's next destination, for a hand-off notice
    notice_sent: bool = False
    plans: tuple[StoredPlan, ...] = ()  # empty until rendered
    defect: str | None = None  # why its stored data cannot be read: delivering it is a crash
    thread_id: str | None = None  # the forum post this delivery's first message created
    silent: bool = False  # every message with SUPPRESS_NOTIFICATIONS (the result's or the destination's wish)


@dataclass(frozen=True)
class StoredPlan:
    """A planned message and whether Discord already holds it."""

    id: int
    seq: int
    plan: MessagePlan
    nonce: str
    message_id: str | None


@dataclass(frozen=True)
class Finished:
    """What finishing a delivery did to its result (for metrics and logs)."""

    result_status: str
    result_created_at: datetime
    next_delivery: int | None = None
    skipped: list[int] = field(default_factory=list)
    released: bool = False  # the destination had nothing more due: its lease went back in the same commit


@dataclass(frozen=True)
class Release:
    """A destination's lease to give back, with what the next owner should know of it."""

    owner: str
    bucket: BucketState | None  # the rate-limit bucket as the last response left it
    dm_channel_id: str | None = None
    blocked_until: datetime | None = None


@dataclass(frozen=True)
class PendingAlert:
    """An event waiting for a digest."""

    id: int
    kind: str
    group_key: str
    text: str


@dataclass(frozen=True)
class ChannelInfo:
    """The Discord channel and guild a destination's webhook posts into (each ``None`` until learned)."""

    channel_id: str | None
    guild_id: str | None


@dataclass(frozen=True)
class PaceLimit:
    """``count`` webhook messages per ``per`` seconds in one channel; ``margin`` covers network jitter."""

    count: int = 30
    per: float = 60.0
    margin: float = 0.5


@dataclass(frozen=True)
class Slot:
    """A pacer's answer: send at ``at`` (epoch seconds); ``reserved`` is False when it was too far away
    and nothing was reserved (the caller reschedules instead of holding a worker for it)."""

    at: float
    reserved: bool


@dataclass(frozen=True)
class ProgressWork:
    """A progress row claimed for sending."""

    id: int
    workflow_id: str
    destination_key: str
    kind: str
    target: dict[str, Any]
    state: dict[str, Any]
    version: int
    message_id: str | None
    done: bool
    thread_id: str | None = None  # the forum post its message lives in (created by it or by the result)
    channel_id: str | None = None  # the webhook's channel, once learned: a new progress post takes a slot of it
