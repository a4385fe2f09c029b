"""The store side of operator alerts (``delivery.alerts``): the events and the window every replica shares.

Events of undelivered results and disabled destinations are written by ``record_undelivered`` and
``record_disabled`` inside the transaction of the change itself (``store.deliveries`` calls them),
so a crash can lose neither the change nor its alert; a Cloudflare ban, which has no transaction,
is added through ``AlertStore.add``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlmodel import col

from schemas.tables import AlertEvent, ConfigEntry, Delivery, Destination
from schemas.work import PendingAlert
from store.session import Store, table_of, utcnow

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
        with self._session(write=True) as session:
            now = utcnow()  # read holding the write lock: a wait for it must not shorten the window
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

    def mark(self, ids: Sequence[int], *, restart_window: bool = False) -> None:
        """These events went out (or can never go out): no digest carries them again.

        ``restart_window``: the digest has just landed; the next window counts from now, not from
        when this one was taken, so a slow send never brings two digests closer than the window.
        """
        if ids:
            with self._session(write=True) as session:
                now = utcnow()
                session.execute(update(AlertEvent).where(col(AlertEvent.id).in_(list(ids))).values(sent_at=now))
                if restart_window:
                    session.execute(update(ConfigEntry).where(col(ConfigEntry.key) == WINDOW_KEY)
                                    .values(value=repr(now.timestamp()), updated_at=now))


_ALERTS = table_of(AlertEvent)


def record_undelivered(conn: Connection, result: Any, now: datetime) -> None:
    """Inside the transaction that made ``result`` undelivered: one alert naming why, per failed destination.

    ``result`` is the result's row (its ``id``, ``generation``, ``title`` and ``tenant`` are read).
    """
    failed = conn.execute(
        select(col(Delivery.destination_key), col(Delivery.last_error_status), col(Delivery.last_error_code),
               col(Delivery.last_error_message))
        .where(col(Delivery.result_id) == result.id, col(Delivery.generation) == result.generation,
               col(Delivery.status) == "failed").order_by(col(Delivery.position))).all()
    reasons = [f"{_destination_words(key)}: {_reason(status, code, message)}"
               for key, status, code, message in failed] or ["no destination took it"]
    title = (result.title or "(untitled)").strip().replace("\n", " ")[:120]
    conn.execute(insert(_ALERTS).values(
        at=now, kind="undelivered", group_key=f"undelivered to {'; '.join(reasons)}"[:300],
        text=f"{title} · `{result.id}` · tenant {result.tenant}",
        detail_json={"result_id": result.id, "tenant": result.tenant, "reasons": reasons}))


def record_disabled(conn: Connection, key: str, reason: str, now: datetime) -> None:
    """Inside the transaction that disabled destination ``key``."""
    tenant = conn.scalar(select(col(Destination.tenant)).where(col(Destination.key) == key)) or "default"
    conn.execute(insert(_ALERTS).values(
        at=now, kind="disabled", group_key=f"destination disabled: {_destination_words(key)}"[:300],
        text=f"{reason} · tenant {tenant}", detail_json={"destination": key}))


def _destination_words(key: str) -> str:
    """``webhook:123`` → ``webhook 123`` (a key carries no secret; the tenant prefix is dropped)."""
    kind, _, ident = key.rpartition("/")[2].partition(":")
    return f"{kind} {ident}".strip()


#: Discord codes an operator reads better in words (the producer-facing message stays as Discord said it).
REASON_WORDS = {
    10003: "channel deleted", 10015: "webhook deleted", 50001: "no access to the channel",
    50007: "the user does not accept DMs", 50013: "missing permissions", 50027: "interaction token expired",
    220001: "forum channel needs a thread_name", 220003: "thread_name outside a forum channel",
}
_DISCORD_CODE = re.compile(r"\s*\(Discord (\d+)(?::[^)]*)?\)")


def _reason(status: int | None, code: int | None, message: str | None) -> str:
    """A failure in the words of the digest: one reason reads the same however the delivery met it."""
    words = (message or "").strip().splitlines()[0][:200] if message else ""
    words = words.removeprefix("destination disabled: ")
    found = _DISCORD_CODE.search(words)
    if found:  # "Unknown Webhook (Discord 10015)" from a destination disabled earlier: the same reason
        code = code or int(found.group(1))
        words = _DISCORD_CODE.sub("", words).strip()
    if code in REASON_WORDS:
        return f"{REASON_WORDS[code]} ({code})"
    if code:
        return f"{words or 'failed'} ({code})"
    return f"{words or 'failed'} (HTTP {status})" if status else (words or "failed")
