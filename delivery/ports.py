"""What the engine needs of the store: small Protocols, implemented by ``store`` and injected by ``app``.

The engine never sees a session, a row or a query. It speaks to the store in the value types of
``schemas.work`` and ``schemas.messages``; ``app.workers`` hands it ``store.deliveries.DeliveryQueue``,
``store.progress.ProgressQueue``, ``store.channels.ChannelStore`` and ``store.alerts.AlertStore``,
and tests may hand it anything with these methods.

Every method is one transaction and blocking: the engine calls them off the event loop (the
delivery worker on its store thread, several calls in one transaction: ``run_together``).
``store.errors.StoreUnavailable`` is the one exception that means "the store is away, try later".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from schemas.messages import MessagePlan
from schemas.work import (
    ClaimedDestination,
    Finished,
    PaceLimit,
    PendingAlert,
    ProgressWork,
    Release,
    Renderer,
    Slot,
    StoredPlan,
    Work,
)


class DeliveryStore(Protocol):
    """Claims, leases and every step of a delivery (``store.deliveries.DeliveryQueue``)."""

    def run_together(self, calls: Sequence[Callable[[], object]]) -> list[object]:
        """Run store calls (of this store's database) in one transaction; one outcome per call, a value
        or the exception it raised, each only after the commit (``store.session.Database.run_together``)."""
        ...

    @property
    def writers(self) -> int:
        """How many ``run_together`` batches the database takes at once (1 on SQLite)."""
        ...

    def claim_destinations(self, owner: str, *, limit: int, lease_s: float, exclude: Sequence[str] = (),
                           dead_owners: Sequence[str] = ()) -> list[ClaimedDestination]:
        """Lease up to ``limit`` free destinations whose oldest pending delivery is due."""
        ...

    def leased_owners(self, *, exclude: str) -> list[str]:
        """Owners of unexpired leases other than ``exclude`` (candidates for a presence check)."""
        ...

    def renew(self, owner: str, keys: Sequence[str], *, lease_s: float) -> None:
        """Extend this worker's leases (heartbeat)."""
        ...

    def release(self, key: str, release: Release) -> None:
        """Give a destination back, leaving its rate-limit knowledge for the next owner."""
        ...

    def release_all(self, owner: str) -> None:
        """Drop every lease this worker still holds (shutdown)."""
        ...

    def start_next(self, key: str, render: Renderer | None = None) -> Work | None:
        """Take the oldest due delivery of a destination, with everything sending it needs."""
        ...

    def finish_and_start_next(self, delivery_id: int, *, sent: tuple[int, str] | None, key: str | None,
                              render: Renderer | None = None,
                              release: Release | None = None) -> tuple[Finished, Work | None]:
        """A delivery arrived: record it and take the destination's next one, in one transaction;
        with ``release``, give the lease back in it too when nothing more is due (``Finished.released``)."""
        ...

    def plans(self, delivery_id: int) -> list[StoredPlan]:
        """The stored plan of a delivery, in order."""
        ...

    def save_plans(self, delivery_id: int, plans: Sequence[MessagePlan], *, start_seq: int = 0) -> list[StoredPlan]:
        """Store (or replace the unsent part of) a delivery's plan; returns it whole."""
        ...

    def mark_sent(self, plan_id: int, message_id: str, delivery_id: int) -> None:
        """Discord holds this message: its id is durable before the next message is sent."""
        ...

    def set_thread(self, delivery_id: int, thread_id: str, *, sent: tuple[int, str] | None = None) -> None:
        """The forum post this delivery's first message created: later messages and retries go there.

        ``sent`` (plan id, message id), the message that created it, is marked sent in the same transaction.
        """
        ...

    def set_render_scale(self, delivery_id: int, scale: int, note: str) -> None:
        """Remember that this delivery renders smaller (after a 413)."""
        ...

    def read_attachment(self, result_id: str, index: int, offset: int, length: int) -> bytes:
        """A byte range of a stored attachment; ``store.errors.AttachmentMissing`` if there is no such file."""
        ...

    def reschedule(self, delivery_id: int, *, at: datetime, status: int | None, code: int | None, message: str,
                   outcome: str = "retry_scheduled", count_attempt: bool = True,
                   hold_destination: bool = False) -> None:
        """Try again at ``at`` (the durable retry layer); survives restarts."""
        ...

    def crash_count(self, delivery_id: int) -> int:
        """How often delivering this has crashed so far."""
        ...

    def disable_destination(self, key: str, reason: str) -> None:
        """A 404 Unknown Webhook: later results to it fail fast until someone re-enables it."""
        ...

    def finish(self, delivery_id: int, *, delivered: bool, status: int | None = None, code: int | None = None,
               message: str | None = None, outcome: str | None = None,
               sent: tuple[int, str] | None = None) -> Finished:
        """End a delivery and move its route on."""
        ...

    def mark_notice_sent(self, delivery_id: int) -> None:
        """The hand-off notice for this interaction delivery went out (never twice)."""
        ...

    def cancel(self, delivery_id: int, reason: str) -> None:
        """Stop a delivery that must not be sent any more (its result was acknowledged or superseded)."""
        ...

    def queue_stats(self) -> tuple[int, float]:
        """(deliveries waiting to be sent, age in seconds of the oldest one)."""
        ...


class ProgressStore(Protocol):
    """Progress rows and hand-off notices (``store.progress.ProgressQueue``)."""

    def claim(self, owner: str, *, limit: int, lease_s: float) -> list[ProgressWork]:
        """Progress rows with a newer state than Discord shows, whose destination has no due result."""
        ...

    def sent(self, row_id: int, *, version: int, message_id: str | None, failed: str | None = None,
             thread_id: str | None = None) -> None:
        """Discord shows ``version`` now (or gave up with ``failed``); release the lease."""
        ...

    def retry_later(self, row_id: int, at: datetime) -> None:
        """A transient failure: try the newest state again at ``at``."""
        ...

    def due_handoffs(self, *, margin_s: float) -> list[ProgressWork]:
        """Interaction rows whose token is in its last ``margin_s`` and whose workflow has no result yet."""
        ...

    def handoff_sent(self, row_id: int) -> None:
        """Remember the notice went out (once per interaction)."""
        ...


class ChannelStore(Protocol):
    """What the relay learned of webhook channels, and their shared pacer (``store.channels.ChannelStore``)."""

    def learn_channel(self, key: str, *, channel_id: str | None, guild_id: str | None = None) -> None:
        """Remember what Discord said about destination ``key``'s webhook; ``None`` keeps what is known."""
        ...

    def reserve_slot(self, channel_id: str, *, limit: PaceLimit, max_wait: float) -> Slot:
        """Reserve the channel's next send slot (unless it is more than ``max_wait`` seconds away)."""
        ...

    def block_channel(self, channel_id: str, until: datetime) -> None:
        """A ``shared`` 429: nothing goes into the channel before ``until`` (never moved earlier)."""
        ...


class AlertStore(Protocol):
    """Operator alert events and the window every replica shares (``store.alerts.AlertStore``)."""

    def add(self, kind: str, group_key: str, text: str) -> None:
        """Record an event that has no transaction of its own (a Cloudflare ban)."""
        ...

    def pending(self, limit: int = ...) -> list[PendingAlert]:
        """Events no digest carried yet, oldest first."""
        ...

    def take_window(self, window_s: float) -> bool:
        """True when this replica may send the window's one digest."""
        ...

    def window_left(self, window_s: float) -> float:
        """Seconds until the next digest may go."""
        ...

    def mark(self, ids: Sequence[int], *, restart_window: bool = False) -> None:
        """These events went out (or can never go out): no digest carries them again."""
        ...
