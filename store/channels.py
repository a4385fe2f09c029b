"""Discord channels behind webhook destinations: what the relay learned of them, and their pacer.

A webhook posts into one channel of one guild. Discord tells which in two places: the
``channel_id`` of the message object an execute with ``?wait=true`` returns (for a message that
did not go into a thread: there it is the thread's id), and ``GET /webhooks/{id}/{token}``
(``channel_id`` and ``guild_id``). The relay writes both onto the destination the first time it
sees them, so every replica knows them.

Discord also caps the messages posted into one channel through webhooks (about 30 per 60 s,
shared by every webhook of the channel, reported only as a ``shared``-scope 429 with a long
``retry_after``). The relay keeps a pacer per channel in the store: the times of the latest send
slots reserved in it. A sender reserves a slot in one transaction (``FOR UPDATE`` on PostgreSQL,
the single writer on SQLite), so workers and replicas never together exceed the cap. Slots are
reserved in time order, so "no ``limit`` + 1 sends within ``per`` seconds" means: the new slot is at
least ``per`` (plus a margin for the network's jitter) after the ``limit``-th latest one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, select, update
from sqlmodel import col

from schemas.tables import ChannelPacer, Destination
from schemas.work import ChannelInfo, PaceLimit, Slot
from store.session import Store, as_utc, table_of, utcnow


def next_slot(slots: list[float], *, now: float, limit: PaceLimit, blocked_until: float = 0.0) -> float:
    """The earliest send time ≥ ``now`` that keeps every ``per``-second window within ``count`` sends.

    ``slots`` are the reserved times, ascending (each reservation is no earlier than the last).
    """
    at = max(now, blocked_until, slots[-1] if slots else 0.0)
    if len(slots) >= limit.count > 0:
        at = max(at, slots[-limit.count] + limit.per + limit.margin)
    return at


def reserve(slots: list[float], *, now: float, limit: PaceLimit, blocked_until: float = 0.0,
            max_wait: float = float("inf")) -> tuple[Slot, list[float]]:
    """Reserve the next slot unless it is more than ``max_wait`` away; returns it and the slots to keep."""
    at = next_slot(slots, now=now, limit=limit, blocked_until=blocked_until)
    if at - now > max_wait:
        return Slot(at, reserved=False), slots
    recent = [s for s in slots if s > at - limit.per - limit.margin]
    keep = max(limit.count - 1, 0)  # the new slot is the count-th: older ones no longer bound anything
    return Slot(at, reserved=True), [*(recent[-keep:] if keep else []), at]


class ChannelStore(Store):
    """Channel learning and the per-channel pacer, in the store so every replica shares them."""

    # --- what a destination's webhook is --------------------------------------------------------

    def channel(self, key: str) -> ChannelInfo:
        """The channel and guild learned for destination ``key`` (both ``None`` when unknown)."""
        with self._session() as session:
            row = session.execute(select(col(Destination.channel_id), col(Destination.guild_id))
                                  .where(col(Destination.key) == key)).first()
        return ChannelInfo(*row) if row is not None else ChannelInfo(None, None)

    def channels(self, keys: list[str]) -> dict[str, ChannelInfo]:
        """The learned channel and guild of several destinations (unknown keys are left out)."""
        if not keys:
            return {}
        with self._session() as session:
            rows = session.execute(select(col(Destination.key), col(Destination.channel_id), col(Destination.guild_id))
                                   .where(col(Destination.key).in_(keys))).all()
        return {key: ChannelInfo(channel, guild) for key, channel, guild in rows}

    def destinations_in_channel(self, channel_id: str) -> list[str]:
        """Keys of every destination known to post into ``channel_id`` (all tenants)."""
        with self._session() as session:
            return list(session.scalars(select(col(Destination.key)).where(col(Destination.channel_id) == channel_id)
                                        .order_by(col(Destination.key))))

    def learn_channel(self, key: str, *, channel_id: str | None, guild_id: str | None = None) -> None:
        """Remember what Discord said about destination ``key``'s webhook; ``None`` keeps what is known.

        Every destination of the same webhook (one per tenant) learns it too: it is the same channel.
        """
        values = {name: value for name, value in (("channel_id", channel_id), ("guild_id", guild_id)) if value}
        if not values:
            return
        webhook = key.rpartition("/")[2]
        with self._session(write=True) as session:
            session.execute(update(Destination).where(
                (col(Destination.key) == key) | col(Destination.key).like(f"%/{webhook}")).values(**values))

    # --- the pacer ----------------------------------------------------------------------------

    def reserve_slot(self, channel_id: str, *, limit: PaceLimit, max_wait: float) -> Slot:
        """Reserve the channel's next send slot (unless it is more than ``max_wait`` seconds away).

        Runs before every paced message: Core statements on the pacer's table, no ORM objects, and
        the row is inserted only the first time a channel is paced.
        """
        now = utcnow()
        with self._connection(write=True) as conn:
            slots, blocked = self._pacer_state(conn, channel_id, now)
            slot, kept = reserve(slots, now=now.timestamp(), limit=limit,
                                 blocked_until=blocked.timestamp() if blocked else 0.0, max_wait=max_wait)
            if slot.reserved:
                conn.execute(_UPDATE_PACER, {"b_channel": channel_id, "slots_json": kept, "updated_at": now})
            return slot

    def block_channel(self, channel_id: str, until: datetime) -> None:
        """A ``shared`` 429: nothing goes into the channel before ``until`` (never moved earlier)."""
        now = utcnow()
        with self._connection(write=True) as conn:
            _slots, blocked = self._pacer_state(conn, channel_id, now)
            if blocked is None or blocked < until:
                conn.execute(_UPDATE_PACER, {"b_channel": channel_id, "blocked_until": until, "updated_at": now})

    def _pacer_state(self, conn: Connection, channel_id: str, now: datetime) -> tuple[list[float], datetime | None]:
        """The channel's reserved slots and block, its row created when missing and locked for this
        transaction (``FOR UPDATE`` on PostgreSQL; SQLite's write transaction is exclusive already)."""
        query = _PACER_LOCKED if self._postgres else _PACER
        row = conn.execute(query, {"b_channel": channel_id}).first()
        if row is None:
            conn.execute(self._insert(_PACERS).values(channel_id=channel_id, slots_json=[], updated_at=now)
                         .on_conflict_do_nothing(index_elements=["channel_id"]))
            # Ours, or the one a concurrent first sender inserted.
            row = conn.execute(query, {"b_channel": channel_id}).one()
        return list(row.slots_json or []), as_utc(row.blocked_until)


_PACERS = table_of(ChannelPacer)
# Built once: the pacer runs before every paced message (see store.route on why).
_PACER = select(_PACERS.c.slots_json, _PACERS.c.blocked_until).where(_PACERS.c.channel_id == bindparam("b_channel"))
_PACER_LOCKED = _PACER.with_for_update()
_UPDATE_PACER = _PACERS.update().where(_PACERS.c.channel_id == bindparam("b_channel"))
