"""What the emulator knows and what it saw: registrations, the clock, and the records.

The server runs in its own thread while tests read from the main thread, so every piece of
mutable state sits behind one lock and every record handed out is a frozen snapshot: a test
can hold a ``RecordedMessage`` while the server edits that message, and never see it change
under its feet.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "Channel",
    "Counters",
    "EmulatorClock",
    "EmulatorState",
    "Interaction",
    "MessageEdit",
    "RecordedFile",
    "RecordedMessage",
    "RejectedRequest",
    "Thread",
    "Webhook",
]

DISCORD_EPOCH_MS = 1_420_070_400_000
INTERACTION_TTL_S = 15 * 60


class EmulatorClock:
    """Wall-clock time plus an offset a test controls.

    It decides interaction-token expiry, message timestamps and the nonce window; a test
    jumps it forward (``advance(901)``) instead of sleeping 15 minutes. Rate-limit windows
    deliberately do not follow it (see ``_discord_ratelimit``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0

    def now(self) -> float:
        """Current emulator time as a Unix epoch float."""
        return time.time() + self._offset

    @property
    def offset(self) -> float:
        """Seconds the emulator clock runs ahead of real time."""
        return self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward (or back, if negative) by ``seconds``."""
        with self._lock:
            self._offset += seconds

    def set_offset(self, seconds: float) -> None:
        """Pin the offset from real time; ``set_offset(0)`` follows real time again."""
        with self._lock:
            self._offset = float(seconds)


@dataclass(frozen=True)
class RecordedFile:
    """One uploaded file as Discord stored it; ``field`` is the form name (``files[0]``)."""

    field: str
    filename: str
    content_type: str | None
    data: bytes
    attachment_id: str

    @property
    def size(self) -> int:
        """Size in bytes."""
        return len(self.data)


@dataclass(frozen=True)
class MessageEdit:
    """One accepted PATCH: the patch body as sent, the files it uploaded, when."""

    payload: dict[str, Any]
    files: tuple[RecordedFile, ...]
    at: float


@dataclass(frozen=True)
class RecordedMessage:
    """A message a user would see (or saw, if ``deleted``), in its latest state.

    ``kind`` is ``webhook``, ``interaction`` (a follow-up) or ``channel`` (a bot message,
    e.g. a DM). ``webhook_id`` is the webhook id, or the application id for a follow-up.
    ``payload`` is the current body (original merged with every edit); ``original_payload``
    is the body of the create call. ``response_dropped`` marks a message stored by a
    ``drop_response`` fault: its sender never learned it was posted.
    """

    id: str
    kind: str
    channel_id: str
    webhook_id: str | None
    thread_id: str | None
    payload: dict[str, Any]
    original_payload: dict[str, Any]
    files: tuple[RecordedFile, ...]
    created_at: float
    edited_at: float | None = None
    edits: tuple[MessageEdit, ...] = ()
    deleted: bool = False
    nonce: str | None = None
    response_dropped: bool = False

    @property
    def content(self) -> str:
        """The current text content ('' when none)."""
        return self.payload.get("content") or ""

    @property
    def embeds(self) -> list[dict[str, Any]]:
        """The current embeds ([] when none)."""
        return list(self.payload.get("embeds") or [])


@dataclass(frozen=True)
class RejectedRequest:
    """A request the emulator answered with a non-2xx status (or no answer, for ``reset``).

    ``code`` is Discord's JSON error code when the body had one; ``reason`` is one of
    ``validation``, ``auth``, ``not_found``, ``forbidden``, ``rate_limit``, ``cloudflare``,
    ``fault``, ``too_large`` or ``reset``. ``request`` is the parsed JSON payload when
    there was one, so a failing test can show what the relay sent.
    """

    status: int
    code: int | None
    method: str
    path: str
    body: Any
    reason: str
    at: float
    request: Any = None


@dataclass(frozen=True)
class Counters:
    """Totals since the last reset; ``invalid_requests`` counts 401, 403 and 429 answers,
    the ones Cloudflare counts toward its 10,000-per-10-minutes ban."""

    requests: int
    accepted: int
    rejected: int
    by_status: dict[int, int]
    rate_limited: dict[str, int]
    invalid_requests: int
    nonce_replays: int
    dropped_responses: int
    resets: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``GET /_emulator/counters``."""
        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "by_status": {str(k): v for k, v in self.by_status.items()},
            "rate_limited": dict(self.rate_limited),
            "invalid_requests": self.invalid_requests,
            "nonce_replays": self.nonce_replays,
            "dropped_responses": self.dropped_responses,
            "resets": self.resets,
        }


@dataclass
class Webhook:
    """A registered webhook; ``refusal`` = (status, code, message) while refused.

    ``forum`` marks a webhook of a forum or media channel: every post must name a thread
    (``thread_name`` creates a post, ``thread_id`` adds to one), as Discord requires.
    """

    id: str
    token: str
    channel_id: str
    guild_id: str | None = None
    forum: bool = False
    refusal: tuple[int, int, str] | None = None


@dataclass(frozen=True)
class Thread:
    """A thread (a forum post) a webhook message created; its id is the starter message's id."""

    id: str
    parent_id: str
    name: str
    applied_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Interaction:
    """A registered interaction token and the emulator-clock time it was created; follow-ups go
    to ``channel_id`` (the channel the command was used in) when known."""

    application_id: str
    token: str
    created_at: float
    channel_id: str | None = None


@dataclass(frozen=True)
class Channel:
    """A channel a bot may post to; ``recipient_id`` is set for DM channels."""

    id: str
    recipient_id: str | None = None


@dataclass
class EmulatorState:
    """Every mutable thing the emulator holds, guarded by ``lock``."""

    clock: EmulatorClock
    lock: threading.RLock = field(default_factory=threading.RLock)
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    removed_webhooks: set[str] = field(default_factory=set)
    interactions: dict[tuple[str, str], Interaction] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    threads: dict[str, Thread] = field(default_factory=dict)
    dm_channels: dict[str, str] = field(default_factory=dict)
    closed_dms: set[str] = field(default_factory=set)
    commands: dict[tuple[str, str | None], list[dict[str, Any]]] = field(default_factory=dict)
    bot_token: str | None = None
    messages: dict[str, RecordedMessage] = field(default_factory=dict)
    nonces: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    rejected: list[RejectedRequest] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)
    _sequence: itertools.count[int] = field(default_factory=itertools.count)

    def snowflake(self) -> str:
        """A fresh id shaped like Discord's (ms since 2015 << 22 | sequence), always increasing."""
        with self.lock:
            sequence = next(self._sequence)
        millis = int(self.clock.now() * 1000) - DISCORD_EPOCH_MS
        return str((millis << 22) | (sequence & 0x3FFFFF))

    def clear_records(self) -> None:
        """Forget messages, rejections, counters and nonces; keep registrations."""
        with self.lock:
            self.messages.clear()
            self.nonces.clear()
            self.rejected.clear()
            self.counts.clear()
            self.by_status.clear()
            self.rate_limited.clear()

    def clear_registrations(self) -> None:
        """Forget webhooks, interactions, channels and closed DMs."""
        with self.lock:
            self.webhooks.clear()
            self.removed_webhooks.clear()
            self.interactions.clear()
            self.channels.clear()
            self.threads.clear()
            self.dm_channels.clear()
            self.closed_dms.clear()
            self.commands.clear()

    def store_message(self, message: RecordedMessage) -> None:
        """Record an accepted message (create)."""
        with self.lock:
            self.messages[message.id] = message
            self.counts["accepted"] += 1

    def update_message(self, message_id: str, **changes: Any) -> RecordedMessage | None:
        """Replace fields of a stored message; ``None`` when it does not exist."""
        with self.lock:
            current = self.messages.get(message_id)
            if current is None:
                return None
            updated = replace(current, **changes)
            self.messages[message_id] = updated
            return updated

    def counters(self) -> Counters:
        """A snapshot of the counters."""
        with self.lock:
            invalid = sum(n for status, n in self.by_status.items() if status in (401, 403, 429))
            return Counters(
                requests=self.counts["requests"],
                accepted=self.counts["accepted"],
                rejected=len(self.rejected),
                by_status=dict(self.by_status),
                rate_limited=dict(self.rate_limited),
                invalid_requests=invalid,
                nonce_replays=self.counts["nonce_replays"],
                dropped_responses=self.counts["dropped_responses"],
                resets=self.counts["resets"],
            )
