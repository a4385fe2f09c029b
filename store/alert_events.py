"""Writing operator alert events inside the transactions that cause them (see ``delivery.alerts``).

Separate from the alert loop so the delivery queue can record an event in the same transaction that
makes a result undelivered or disables a destination: a crash can lose neither the change nor its alert.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session, col

from schemas.tables import AlertEvent, Delivery, Destination, Result


def record_undelivered(session: Session, result: Result, now: datetime) -> None:
    """Inside the transaction that made ``result`` undelivered: one alert naming why, per failed destination."""
    failed = session.execute(
        select(col(Delivery.destination_key), col(Delivery.last_error_status), col(Delivery.last_error_code),
               col(Delivery.last_error_message))
        .where(col(Delivery.result_id) == result.id, col(Delivery.generation) == result.generation,
               col(Delivery.status) == "failed").order_by(col(Delivery.position))).all()
    reasons = [f"{_destination_words(key)}: {_reason(status, code, message)}"
               for key, status, code, message in failed] or ["no destination took it"]
    title = (result.title or "(untitled)").strip().replace("\n", " ")[:120]
    session.add(AlertEvent(
        at=now, kind="undelivered", group_key=f"undelivered to {'; '.join(reasons)}"[:300],
        text=f"{title} · `{result.id}` · tenant {result.tenant}",
        detail_json={"result_id": result.id, "tenant": result.tenant, "reasons": reasons}))


def record_disabled(session: Session, key: str, reason: str, now: datetime) -> None:
    """Inside the transaction that disabled destination ``key``."""
    tenant = session.scalar(select(col(Destination.tenant)).where(col(Destination.key) == key)) or "default"
    session.add(AlertEvent(at=now, kind="disabled", group_key=f"destination disabled: {_destination_words(key)}"[:300],
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
