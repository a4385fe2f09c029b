"""Progress rows: one per (workflow, destination), the newest state wins.

``ProgressStore`` records a producer's states (``POST /v1/progress``); ``ProgressQueue`` is what
the progress worker (``delivery.progress``) claims, marks sent and retries. Both write the same
table, so both live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from schemas.messages import INTERACTION_TTL, LAST_SAFE_SEND, RELAY_STATE_MARKS
from schemas.tables import Delivery, Destination, ProgressMessage, Result
from schemas.targets import Target
from schemas.work import ProgressWork
from store.errors import StoreUnavailable
from store.session import Store, utcnow

# Whole-write attempts of one progress update against concurrent first updates of its workflow.
CONFLICT_ATTEMPTS = 5


class ProgressStore(Store):
    """Writes progress states for the progress worker to send (``delivery.progress``)."""

    def record(self, workflow_id: str, targets: Sequence[Target], state: dict[str, Any]) -> tuple[int, list[str]]:
        """Store the newest state for each destination; ``(recorded, skipped reasons)``.

        DMs get no progress message: a bot's DM cannot be edited through a webhook token, and a
        DM per update would be noise. Every destination's row is written in one transaction, so an
        update is recorded for all of them or for none; a concurrent first update of the same
        workflow (a unique-key conflict) makes the whole write start over, up to
        ``CONFLICT_ATTEMPTS`` times, after which the caller gets ``StoreUnavailable`` (a 503 to
        retry) rather than a count of updates that were never stored.
        """
        skipped = []
        rows: list[tuple[Target, dict[str, Any]]] = []
        for position, target in enumerate(targets):
            if target.kind == "dm":
                skipped.append(f"route.{position}: progress is not shown in DMs")
                continue
            following = targets[position + 1].kind if position + 1 < len(targets) else None
            rows.append((target, {**state, "next_kind": following}))
        for _ in range(CONFLICT_ATTEMPTS):
            try:
                with self._db.session(write=True) as session:
                    for target, row_state in rows:
                        _upsert(session, workflow_id, target, row_state)
                return len(rows), skipped
            except IntegrityError:
                continue  # a concurrent first update inserted a row: read it and update it instead
        raise StoreUnavailable(f"progress of {workflow_id!r} kept conflicting with concurrent updates")


def _upsert(session: Session, workflow_id: str, target: Target, state: dict[str, Any]) -> None:
    now = utcnow()
    # Locked: what the relay marked meanwhile (``handoff_sent``, ``thread_id``) must be read, not overwritten.
    row = session.scalar(select(ProgressMessage).where(
        col(ProgressMessage.workflow_id) == workflow_id,
        col(ProgressMessage.destination_key) == target.key).with_for_update())
    if row is None:
        session.add(ProgressMessage(
            workflow_id=workflow_id, destination_key=target.key, kind=target.kind,
            target_json=target.stored, state_json=state, version=1, created_at=now, updated_at=now))
        session.flush()
        return
    # What the relay (not the producer) wrote into the state survives an update.
    keep = {k: row.state_json[k] for k in RELAY_STATE_MARKS if row.state_json.get(k)}
    row.state_json = {**state, **keep}
    row.target_json = target.stored
    row.version += 1
    row.next_attempt_at = None
    row.updated_at = now


class ProgressQueue(Store):
    """Store side of progress messages and hand-off notices."""

    def claim(self, owner: str, *, limit: int, lease_s: float) -> list[ProgressWork]:
        """Progress rows with a newer state than Discord shows, whose destination has no due result."""
        now = utcnow()
        busy = exists().where(col(Delivery.destination_key) == col(ProgressMessage.destination_key),
                              col(Delivery.status) == "pending", col(Delivery.next_attempt_at) <= now)
        query = (select(ProgressMessage)
                 .where(col(ProgressMessage.version) > col(ProgressMessage.sent_version),
                        or_(col(ProgressMessage.next_attempt_at).is_(None),
                            col(ProgressMessage.next_attempt_at) <= now),
                        or_(col(ProgressMessage.lease_owner).is_(None), col(ProgressMessage.lease_expires_at) < now),
                        ~busy)
                 .order_by(col(ProgressMessage.updated_at)).limit(limit))
        query = self._claim_lock(query)
        with self._session(write=True) as session:
            rows = session.scalars(query).all()
            for row in rows:
                row.lease_owner, row.lease_expires_at = owner, now + timedelta(seconds=lease_s)
            keys = [r.destination_key for r in rows if r.kind == "webhook"]
            channels: dict[str, str] = {key: channel for key, channel in session.execute(
                select(col(Destination.key), col(Destination.channel_id)).where(
                    col(Destination.key).in_(keys), col(Destination.channel_id).is_not(None)))} if keys else {}
            return [ProgressWork(id=r.id or 0, workflow_id=r.workflow_id, destination_key=r.destination_key,
                                 kind=r.kind, target=dict(r.target_json), state=dict(r.state_json), version=r.version,
                                 message_id=r.message_id, done=r.done, thread_id=_forum_thread(session, r),
                                 channel_id=channels.get(r.destination_key))
                    for r in rows]

    def sent(self, row_id: int, *, version: int, message_id: str | None, failed: str | None = None,
             thread_id: str | None = None) -> None:
        """Discord shows ``version`` now (or gave up with ``failed``); release the lease.

        ``thread_id``: the forum post the message just created; its edits (and the result) go there.
        """
        values: dict[str, Any] = {"sent_version": version, "lease_owner": None, "lease_expires_at": None,
                                  "next_attempt_at": None, "failed_reason": failed}
        if message_id is not None:
            values["message_id"] = message_id
        with self._session(write=True) as session:
            if thread_id is not None:
                _mark_state(session, row_id, thread_id=thread_id)
            session.execute(update(ProgressMessage).where(col(ProgressMessage.id) == row_id).values(**values))

    def retry_later(self, row_id: int, at: datetime) -> None:
        """A transient failure: try the newest state again at ``at``."""
        with self._session(write=True) as session:
            session.execute(update(ProgressMessage).where(col(ProgressMessage.id) == row_id)
                            .values(lease_owner=None, lease_expires_at=None, next_attempt_at=at))

    def due_handoffs(self, *, margin_s: float) -> list[ProgressWork]:
        """Interaction progress rows whose token is in its last ``margin_s`` and whose workflow has no result yet.

        The token's creation time rides in the stored target; rows are few (one per running
        interaction), so the time window is checked here rather than in SQL.
        """
        now = utcnow()
        delivered = exists().where(col(Result.workflow_id) == col(ProgressMessage.workflow_id),
                                   col(Result.status).in_(("delivered", "picked_up")))
        with self._session() as session:
            rows = session.scalars(select(ProgressMessage).where(
                col(ProgressMessage.kind) == "interaction", col(ProgressMessage.done).is_(False), ~delivered)).all()
        due = []
        for r in rows:
            if r.state_json.get("handoff_sent"):
                continue
            created = datetime.fromisoformat(r.target_json["created_at"])
            start = created + INTERACTION_TTL - timedelta(seconds=margin_s)
            if start <= now < created + INTERACTION_TTL - LAST_SAFE_SEND:
                due.append(ProgressWork(id=r.id or 0, workflow_id=r.workflow_id, destination_key=r.destination_key,
                                        kind=r.kind, target=dict(r.target_json), state=dict(r.state_json),
                                        version=r.version, message_id=r.message_id, done=r.done))
        return due

    def handoff_sent(self, row_id: int) -> None:
        """Remember the notice went out (once per interaction)."""
        with self._session(write=True) as session:
            _mark_state(session, row_id, handoff_sent=True)


def _mark_state(session: Any, row_id: int, **marks: Any) -> None:
    """Merge the relay's own marks into a progress row's state as it is now, under a row lock.

    A state read earlier may since have been replaced by a newer progress update (``store.progress``
    keeps these marks across updates); writing that earlier state back would undo the update.
    """
    row = session.scalar(select(ProgressMessage).where(col(ProgressMessage.id) == row_id).with_for_update())
    if row is not None:
        row.state_json = {**row.state_json, **marks}
        session.flush()


def _forum_thread(session: Any, row: ProgressMessage) -> str | None:
    """The forum post of a progress row: the one its message opened, or the one its result's delivery did."""
    if row.state_json.get("thread_id"):
        return str(row.state_json["thread_id"])
    if not row.target_json.get("thread_name"):
        return None
    thread = session.scalar(select(col(Delivery.thread_id)).join(Result,
                                                                 col(Result.id) == col(Delivery.result_id)).where(
        col(Result.workflow_id) == row.workflow_id, col(Delivery.destination_key) == row.destination_key,
        col(Delivery.thread_id).is_not(None)).limit(1))
    return str(thread) if thread else None
