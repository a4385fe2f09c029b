"""The store side of operator alerts (``delivery.alerts``): the events and the window every replica shares.

Events of undelivered results and disabled destinations are written by ``store.alert_events`` in
the transaction of the change itself; a Cloudflare ban, which has no transaction, is added here.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlmodel import col

from schemas.tables import AlertEvent, ConfigEntry
from schemas.work import PendingAlert
from store.session import Store, utcnow

WINDOW_KEY = "alerts.window_started_at"
MAX_EVENTS_READ = 500


class AlertStore(Store):
    """The alert events and the window every replica shares."""

    def add(self, kind: str, group_key: str, text: str) -> None:
        """Record an event that has no transaction of its own (a Cloudflare ban)."""
        with self._session(write=True) as session:
            session.add(AlertEvent(at=utcnow(), kind=kind, group_key=group_key[:300], text=text, detail_json={}))

    def pending(self, limit: int = MAX_EVENTS_READ) -> list[PendingAlert]:
        """Events no digest carried yet, oldest first."""
        with self._session() as session:
            rows = session.execute(select(col(AlertEvent.id), col(AlertEvent.kind), col(AlertEvent.group_key),
                                          col(AlertEvent.text))
                                   .where(col(AlertEvent.sent_at).is_(None)).order_by(col(AlertEvent.id)).limit(limit)).all()
        return [PendingAlert(*row) for row in rows]

    def take_window(self, window_s: float) -> bool:
        """True when this replica may send the window's one digest (compare-and-set on the window start)."""
        now = utcnow()
        with self._session(write=True) as session:
            session.execute(self._insert(ConfigEntry).values(key=WINDOW_KEY, value="0", updated_at=now)
                            .on_conflict_do_nothing(index_elements=["key"]))
            current = session.scalar(select(col(ConfigEntry.value)).where(col(ConfigEntry.key) == WINDOW_KEY))
            if current is not None and now.timestamp() - float(current) < window_s:
                return False
            taken = session.execute(update(ConfigEntry).where(col(ConfigEntry.key) == WINDOW_KEY,
                                                              col(ConfigEntry.value) == current)
                                    .values(value=repr(now.timestamp()), updated_at=now))
            return bool(taken.rowcount)  # type: ignore[attr-defined]

    def window_left(self, window_s: float) -> float:
        """Seconds until the next digest may go."""
        with self._session() as session:
            current = session.scalar(select(col(ConfigEntry.value)).where(col(ConfigEntry.key) == WINDOW_KEY))
        return max(0.0, float(current or 0) + window_s - utcnow().timestamp())

    def mark(self, ids: Sequence[int]) -> None:
        """These events went out (or can never go out): no digest carries them again."""
        if ids:
            with self._session(write=True) as session:
                session.execute(update(AlertEvent).where(col(AlertEvent.id).in_(list(ids))).values(sent_at=utcnow()))
