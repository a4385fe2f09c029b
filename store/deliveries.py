"""The delivery engine's side of the store: claiming work, recording every step.

The claim is per destination: a worker leases a destination (a webhook, a DM user, an interaction)
and then sends its due deliveries one after another, so the destination's rate-limit state and
the order of its messages hold across workers and replicas. On PostgreSQL candidates are locked
with ``FOR UPDATE SKIP LOCKED``; on SQLite the claim runs in a single-writer (IMMEDIATE)
transaction. A crashed worker's lease expires and another takes the destination over, resuming
at the first planned message without a Discord message id.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlmodel import Session, col

from schemas.lifecycle import (
    Delivered,
    DeliveryStatus,
    InvalidTransition,
    PermanentFailure,
    ResultStatus,
    SetDelivery,
    Start,
)
from schemas.messages import AttachmentRef, BucketState, Field, FilePart, MessagePlan, RenderInput
from schemas.tables import Attachment, Delivery, DeliveryEvent, Destination, PlannedMessage, ProgressMessage, Result
from schemas.work import ClaimedDestination, Finished, Release, Renderer, StoredPlan, Work
from store.alerts import record_disabled, record_undelivered
from store.errors import AttachmentMissing
from store.results import read_range
from store.route import advance, load_route
from store.session import Store, as_utc, table_of, utcnow


class DeliveryQueue(Store):
    """Claim/lease and progress queries of the workers; the engine is injected.

    ``record_alerts``: write an operator alert event (``delivery.alerts``) in the same transaction
    that makes a result undelivered or disables a destination (set when an alert webhook is configured).
    """

    record_alerts = False

    # --- claiming --------------------------------------------------------------------------------

    def claim_destinations(self, owner: str, *, limit: int, lease_s: float, exclude: Sequence[str] = (),
                           dead_owners: Sequence[str] = ()) -> list[ClaimedDestination]:
        """Lease up to ``limit`` free destinations whose oldest pending delivery is due.

        Free means: no lease, an expired one, one of ``dead_owners`` (workers known to be gone),
        or our own lease that no task of ours serves any more (``exclude`` lists those that do),
        left behind when a release failed during a store outage.
        """
        if limit <= 0:
            return []
        now = utcnow()
        due = select(col(Delivery.destination_key)).where(
            col(Delivery.status) == "pending", col(Delivery.next_attempt_at) <= now).distinct()
        free = [col(Destination.lease_owner).is_(None), col(Destination.lease_expires_at) < now,
                col(Destination.lease_owner) == owner]
        if dead_owners:
            free.append(col(Destination.lease_owner).in_(list(dead_owners)))
        conditions = [col(Destination.key).in_(due), or_(*free),
                      or_(col(Destination.blocked_until).is_(None), col(Destination.blocked_until) <= now)]
        if exclude:
            # Never a second task for a destination we serve, even if its lease ran out while a
            # store outage kept the heartbeat from renewing it: that would send its message twice.
            conditions.append(col(Destination.key).not_in(list(exclude)))
        query = (
            select(Destination)
            .where(*conditions)
            .order_by(col(Destination.updated_at))
            .limit(limit)
        )
        query = self._claim_lock(query)
        with self._session(write=True) as session:
            rows = session.scalars(query).all()
            claimed = []
            for row in rows:
                previous = row.lease_owner if row.lease_owner not in (None, owner) else None
                row.lease_owner, row.lease_expires_at = owner, now + timedelta(seconds=lease_s)
                claimed.append(ClaimedDestination(
                    key=row.key, kind=row.kind, disabled=row.disabled, disabled_reason=row.disabled_reason,
                    bucket=BucketState(bucket=row.bucket, remaining=row.remaining,
                                       reset_at=as_utc(row.reset_at).timestamp() if row.reset_at else 0.0),
                    dm_channel_id=row.dm_channel_id, previous_owner=previous,
                    channel_id=row.channel_id, guild_id=row.guild_id))
            return claimed

    def leased_owners(self, *, exclude: str) -> list[str]:
        """Owners of unexpired leases other than ``exclude`` (candidates for a presence check)."""
        with self._session() as session:
            return list(session.scalars(select(col(Destination.lease_owner)).where(
                col(Destination.lease_owner).is_not(None), col(Destination.lease_owner) != exclude,
                col(Destination.lease_expires_at) >= utcnow()).distinct()))

    def renew(self, owner: str, keys: Sequence[str], *, lease_s: float) -> None:
        """Extend this worker's leases (heartbeat)."""
        if not keys:
            return
        with self._session(write=True) as session:
            session.execute(update(Destination).where(col(Destination.key).in_(list(keys)),
                                                      col(Destination.lease_owner) == owner)
                            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s)))

    def release(self, key: str, release: Release) -> None:
        """Give a destination back, leaving its rate-limit knowledge for the next owner."""
        with self._session(write=True) as session:
            _release(session, key, release, utcnow())

    def release_all(self, owner: str) -> None:
        """Drop every lease this worker still holds (shutdown)."""
        with self._session(write=True) as session:
            session.execute(update(Destination).where(col(Destination.lease_owner) == owner)
                            .values(lease_owner=None, lease_expires_at=None))

    # --- one delivery ----------------------------------------------------------------------------

    def start_next(self, key: str, render: Renderer | None = None) -> Work | None:
        """Take the oldest due delivery of a destination (results reach a channel in the order
        received): count an attempt, mark the result ``delivering``, and load everything sending
        needs, its plan included — one transaction, because this runs once per message sent.

        ``render``, when given, renders a delivery that has no plan yet inside the same
        transaction; it may decline (return None) for a large body, which the caller then renders
        outside the write lock.
        """
        with self._session(write=True) as session:
            return _start_next(session, key, utcnow(), render)

    def finish_and_start_next(self, delivery_id: int, *, sent: tuple[int, str] | None, key: str | None,
                              render: Renderer | None = None,
                              release: Release | None = None) -> tuple[Finished, Work | None]:
        """A delivery arrived: record it and take the destination's next one, in one transaction.

        With ``release``, a destination that has nothing more due is given back in the same
        transaction (``Finished.released``): after a burst, one commit per destination less, and
        a result arriving then does not wait behind a queue of releases.
        """
        now = utcnow()
        with self._session(write=True) as session:
            finished = _finish(session, delivery_id, delivered=True, sent=sent, now=now, postgres=self._postgres,
                               alerts=self.record_alerts)
            if key is not None and release is not None and not _holds(session, key, release.owner):
                # Not ours any more (a retry after a commit whose answer was lost gave it back, or the
                # lease expired and another worker took it): never start work on someone else's lease.
                return replace(finished, released=True), None
            following = _start_next(session, key, now, render) if key is not None else None
            if key is not None and following is None and release is not None:
                _release(session, key, release, now)
                finished = replace(finished, released=True)
            return finished, following

    def plans(self, delivery_id: int) -> list[StoredPlan]:
        """The stored plan of a delivery, in order."""
        with self._session() as session:
            return _stored_plans(session, delivery_id)

    def save_plans(self, delivery_id: int, plans: Sequence[MessagePlan], *, start_seq: int = 0) -> list[StoredPlan]:
        """Store (or, after a re-render, replace the unsent part of) a delivery's plan; returns it whole."""
        with self._session(write=True) as session:
            session.execute(table_of(PlannedMessage).delete().where(
                col(PlannedMessage.delivery_id) == delivery_id, col(PlannedMessage.message_id).is_(None)))
            _insert_plans(session, delivery_id, plans, start_seq)
            return _stored_plans(session, delivery_id)  # the sent part too: the whole plan, in order

    def mark_sent(self, plan_id: int, message_id: str, delivery_id: int) -> None:
        """Discord holds this message: commit its id before the next message is sent."""
        with self._session(write=True) as session:
            _record_sent(session, delivery_id, plan_id, message_id, utcnow())

    def set_thread(self, delivery_id: int, thread_id: str) -> None:
        """The forum post this delivery's first message created: later messages and retries go there."""
        with self._session(write=True) as session:
            session.execute(update(Delivery).where(col(Delivery.id) == delivery_id).values(thread_id=thread_id))
            session.add(DeliveryEvent(delivery_id=delivery_id, at=utcnow(), outcome="thread_created",
                                      message=f"forum post {thread_id}"))

    def set_render_scale(self, delivery_id: int, scale: int, note: str) -> None:
        """Remember that this delivery renders smaller (after a 413)."""
        with self._session(write=True) as session:
            session.execute(update(Delivery).where(col(Delivery.id) == delivery_id).values(render_scale=scale))
            session.add(DeliveryEvent(delivery_id=delivery_id, at=utcnow(), outcome="rerendered", message=note))

    def read_attachment(self, result_id: str, index: int, offset: int, length: int) -> bytes:
        """A byte range of a stored attachment; ``AttachmentMissing`` if the result has no such file."""
        with self._session() as session:
            data = read_range(session, result_id, index, offset, length)
        if data is None:
            raise AttachmentMissing(f"attachment {index} is missing (no such file or no stored bytes)")
        return data

    def reschedule(self, delivery_id: int, *, at: datetime, status: int | None, code: int | None, message: str,
                   outcome: str = "retry_scheduled", count_attempt: bool = True,
                   hold_destination: bool = False) -> None:
        """Try again at ``at`` (the durable retry layer); survives restarts.

        ``hold_destination`` blocks the whole destination until ``at`` in the same transaction, so
        no later result to it can overtake this one, even if this process dies right after.
        """
        with self._session(write=True) as session:
            values: dict[str, Any] = {"next_attempt_at": at, "last_error_status": status, "last_error_code": code,
                                      "last_error_message": message, "updated_at": utcnow()}
            if not count_attempt:
                values["attempts"] = col(Delivery.attempts) - 1
            session.execute(update(Delivery).where(col(Delivery.id) == delivery_id).values(**values))
            if hold_destination:
                key = select(col(Delivery.destination_key)).where(col(Delivery.id) == delivery_id).scalar_subquery()
                session.execute(update(Destination).where(col(Destination.key) == key).values(blocked_until=at))
            session.add(DeliveryEvent(delivery_id=delivery_id, at=utcnow(), outcome=outcome, http_status=status,
                                      discord_code=code, message=message, retry_at=at))

    def crash_count(self, delivery_id: int) -> int:
        """How often delivering this has crashed so far (its ``crashed`` events)."""
        with self._session() as session:
            return int(session.scalar(select(func.count()).select_from(DeliveryEvent).where(
                col(DeliveryEvent.delivery_id) == delivery_id, col(DeliveryEvent.outcome) == "crashed")) or 0)

    def disable_destination(self, key: str, reason: str) -> None:
        """A 404 Unknown Webhook: later results to it fail fast until someone re-enables it."""
        now = utcnow()
        with self._session(write=True) as session:
            changed = session.execute(update(Destination).where(col(Destination.key) == key,
                                                                col(Destination.disabled).is_(False))
                                      .values(disabled=True, disabled_reason=reason, disabled_at=now, updated_at=now))
            if self.record_alerts and changed.rowcount:  # type: ignore[attr-defined]
                record_disabled(session, key, reason, now)

    def finish(self, delivery_id: int, *, delivered: bool, status: int | None = None, code: int | None = None,
               message: str | None = None, outcome: str | None = None,
               sent: tuple[int, str] | None = None) -> Finished:
        """End a delivery and move its route on; returns the result's status afterwards.

        ``sent`` is ``(plan id, Discord message id)`` of the last message, recorded in the same
        transaction: one commit instead of two for the common one-message result.
        """
        with self._session(write=True) as session:
            return _finish(session, delivery_id, delivered=delivered, status=status, code=code, message=message,
                           outcome=outcome, sent=sent, now=utcnow(), postgres=self._postgres,
                           alerts=self.record_alerts)

    def mark_notice_sent(self, delivery_id: int) -> None:
        """The hand-off notice for this interaction delivery went out (never twice)."""
        now = utcnow()
        with self._session(write=True) as session:
            session.execute(update(Delivery).where(col(Delivery.id) == delivery_id).values(notice_sent_at=now))
            session.add(DeliveryEvent(delivery_id=delivery_id, at=now, outcome="handoff_notice",
                                      message="told the user where the result will arrive"))

    def cancel(self, delivery_id: int, reason: str) -> None:
        """Stop a delivery that must not be sent any more (its result was acknowledged or superseded)."""
        now = utcnow()
        with self._session(write=True) as session:
            session.execute(update(Delivery).where(col(Delivery.id) == delivery_id)
                            .values(status="cancelled", next_attempt_at=None, updated_at=now))
            session.add(DeliveryEvent(delivery_id=delivery_id, at=now, outcome="skipped", message=reason))

    def queue_stats(self) -> tuple[int, float]:
        """(deliveries waiting to be sent, age in seconds of the oldest one)."""
        with self._session() as session:
            count, oldest = session.execute(select(func.count(), func.min(col(Delivery.created_at))).where(
                col(Delivery.status) == "pending")).one()
        age = (utcnow() - as_utc(oldest)).total_seconds() if oldest else 0.0
        return int(count), max(0.0, age)


def _insert_plans(session: Session, delivery_id: int, plans: Sequence[MessagePlan],
                  start_seq: int) -> list[StoredPlan]:
    """Add the rows of a plan; returns them as stored (ids assigned), without reading them back."""
    rows = [PlannedMessage(delivery_id=delivery_id, seq=start_seq + offset, payload_json=plan.payload,
                           files_json=[_file_to_json(f) for f in plan.files], nonce=secrets.token_hex(12))
            for offset, plan in enumerate(plans)]
    session.add_all(rows)
    session.flush()
    return [StoredPlan(id=row.id or 0, seq=row.seq, plan=plan, nonce=row.nonce, message_id=None)
            for row, plan in zip(rows, plans, strict=True)]


def _start_next(session: Session, key: str, now: datetime, render: Renderer | None) -> Work | None:
    d = session.scalars(
        select(Delivery).where(col(Delivery.destination_key) == key, col(Delivery.status) == "pending",
                               col(Delivery.next_attempt_at) <= now)
        .order_by(col(Delivery.created_at), col(Delivery.id)).limit(1)).first()
    if d is None:
        return None
    r = session.get(Result, d.result_id)
    if r is None:
        raise LookupError(d.result_id)
    stale = None
    following = None
    if r.status == ResultStatus.PICKED_UP:
        stale = "result was picked up"
    elif d.generation != r.generation:
        stale = "superseded by a redelivery"
    else:
        rows = load_route(session, r)
        advance(session, rows, Start(d.position), now)
        following = next((s.kind for s in rows.deliveries[d.position + 1:]), None)
    atts = session.execute(
        select(col(Attachment.idx), col(Attachment.filename), col(Attachment.content_type), col(Attachment.size),
               col(Attachment.sha256)).where(col(Attachment.result_id) == r.id).order_by(col(Attachment.idx))).all()
    defect = None
    try:
        result = render_input(r, atts)
        plans = _stored_plans(session, d.id or 0)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # Stored data this code cannot read: one bad result, never a claim that fails forever.
        # The worker treats ``defect`` as a crash of this delivery (counted, bounded, then failed).
        defect = f"stored result is unreadable ({type(exc).__name__}: {exc})"
        result, plans = RenderInput(title=r.title), []
    if not plans and stale is None and defect is None and render is not None:
        rendered = render(result, d.render_scale, d.kind)
        if rendered is not None:
            plans = _insert_plans(session, d.id or 0, rendered, 0)
    return Work(delivery_id=d.id or 0, result_id=r.id, kind=d.kind, target=dict(d.target_json),
                attempts=d.attempts, render_scale=d.render_scale,
                first_attempt_at=as_utc(d.first_attempt_at), result_created_at=as_utc(r.created_at) or now,
                result=result, stale=stale, next_kind=following,
                notice_sent=d.notice_sent_at is not None or _progress_handoff_sent(session, r, d),
                plans=tuple(plans), defect=defect, thread_id=d.thread_id or _progress_thread(session, r, d),
                silent=bool(r.silent or d.target_json.get("silent")))


def _holds(session: Session, key: str, owner: str) -> bool:
    """Whether ``owner`` holds the lease of destination ``key``."""
    return session.scalar(select(col(Destination.lease_owner)).where(col(Destination.key) == key)) == owner


def _release(session: Session, key: str, release: Release, now: datetime) -> None:
    """Give ``key`` back if ``release.owner`` still holds it, leaving its rate-limit knowledge behind."""
    values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None, "updated_at": now,
                              "blocked_until": release.blocked_until}
    bucket = release.bucket
    if bucket is not None:
        values.update(bucket=bucket.bucket, remaining=bucket.remaining,
                      reset_at=datetime.fromtimestamp(bucket.reset_at, UTC) if bucket.reset_at else None)
    if release.dm_channel_id:
        values["dm_channel_id"] = release.dm_channel_id
    session.execute(update(Destination)
                    .where(col(Destination.key) == key, col(Destination.lease_owner) == release.owner)
                    .values(**values))


def render_input(r: Result, atts: Sequence[Any]) -> RenderInput:
    """What the renderer needs of a stored result and its attachment rows (also the ``/results`` preview)."""
    level = r.level if r.level in ("info", "success", "warning", "error") else None
    return RenderInput(
        title=r.title, summary=r.summary, body=r.body,
        fields=tuple(Field(f["name"], f["value"], bool(f.get("inline"))) for f in r.fields_json),
        url=r.url, color=r.color, level=level, workflow_id=r.workflow_id,  # type: ignore[arg-type]
        attachments=tuple(AttachmentRef(a.idx, a.filename, a.content_type, a.size, a.sha256) for a in atts),
        content=r.content, embeds=tuple(e for e in r.embeds_json or () if isinstance(e, dict)),
    )


def _finish(session: Session, delivery_id: int, *, delivered: bool, now: datetime, postgres: bool,
            status: int | None = None, code: int | None = None, message: str | None = None,
            outcome: str | None = None, sent: tuple[int, str] | None = None, alerts: bool = False) -> Finished:
    if sent is not None:
        _record_sent(session, delivery_id, sent[0], sent[1], now)
    d = session.get(Delivery, delivery_id)
    assert d is not None
    # Lock the result first: two destinations of a mode-"all" result finishing at once must
    # see each other's outcome, or neither would declare the result finished (PostgreSQL).
    r = session.get(Result, d.result_id, with_for_update=postgres)
    assert r is not None
    ended = DeliveryStatus.DELIVERED if delivered else DeliveryStatus.FAILED
    d.next_attempt_at, d.updated_at = None, now
    if delivered:
        d.delivered_at = now
    else:
        d.last_error_status, d.last_error_code, d.last_error_message = status, code, message
    session.add(DeliveryEvent(delivery_id=delivery_id, at=now, outcome=outcome or ended.value,
                              http_status=status, discord_code=code, message=message))
    if d.generation != r.generation:
        d.status = ended.value  # a superseded generation: outside the route, recorded as it ended
        return Finished(result_status=r.status, result_created_at=as_utc(r.created_at) or now)
    rows = load_route(session, r)
    event = Delivered(d.position) if delivered else PermanentFailure(d.position)
    try:
        done = advance(session, rows, event, now)
    except InvalidTransition:
        # Already ended (a lease taken over while this attempt was on the wire): the first word stands.
        return Finished(result_status=r.status, result_created_at=as_utc(r.created_at) or now)
    if done.exhausted and alerts:
        session.flush()  # the failed status of this delivery is what the alert reads
        record_undelivered(session, r, now)
    writes = done.writes
    skipped = [rows.deliveries[w.position].id or 0 for w in writes
               if isinstance(w, SetDelivery) and w.status is DeliveryStatus.SKIPPED]
    following = [rows.deliveries[w.position].id for w in writes if isinstance(w, SetDelivery) and w.due]
    return Finished(result_status=r.status, result_created_at=as_utc(r.created_at) or now,
                    next_delivery=following[0] if following else None, skipped=skipped)


def _record_sent(session: Session, delivery_id: int, plan_id: int, message_id: str, now: datetime) -> None:
    session.execute(update(PlannedMessage).where(col(PlannedMessage.id) == plan_id)
                    .values(message_id=message_id, sent_at=now))
    session.add(DeliveryEvent(delivery_id=delivery_id, at=now, outcome="sent", message=f"message {message_id}"))


def _stored_plans(session: Session, delivery_id: int) -> list[StoredPlan]:
    rows = session.scalars(select(PlannedMessage).where(col(PlannedMessage.delivery_id) == delivery_id)
                           .order_by(col(PlannedMessage.seq))).all()
    return [StoredPlan(id=r.id or 0, seq=r.seq, plan=_plan_from_row(r), nonce=r.nonce, message_id=r.message_id)
            for r in rows]


def _progress_handoff_sent(session: Session, result: Result, delivery: Delivery) -> bool:
    if delivery.kind != "interaction" or not result.workflow_id:
        return False
    state = session.scalar(select(col(ProgressMessage.state_json)).where(
        col(ProgressMessage.workflow_id) == result.workflow_id,
        col(ProgressMessage.destination_key) == delivery.destination_key))
    return bool(state and state.get("handoff_sent"))


def _progress_thread(session: Session, result: Result, delivery: Delivery) -> str | None:
    """The forum post this workflow's progress message opened on the same destination, if any."""
    if delivery.kind != "webhook" or not result.workflow_id or not delivery.target_json.get("thread_name"):
        return None
    state = session.scalar(select(col(ProgressMessage.state_json)).where(
        col(ProgressMessage.workflow_id) == result.workflow_id,
        col(ProgressMessage.destination_key) == delivery.destination_key))
    thread = state.get("thread_id") if state else None
    return str(thread) if thread else None


def _file_to_json(part: FilePart) -> dict[str, Any]:
    out: dict[str, Any] = {"filename": part.filename, "content_type": part.content_type,
                           "attachment_index": part.attachment_index, "offset": part.offset, "length": part.length}
    if part.data is not None:
        out["data_b64"] = base64.b64encode(part.data).decode()
    return out


def _plan_from_row(row: PlannedMessage) -> MessagePlan:
    files = tuple(
        FilePart(filename=f["filename"], content_type=f["content_type"], attachment_index=f["attachment_index"],
                 offset=f["offset"], length=f["length"],
                 data=base64.b64decode(f["data_b64"]) if "data_b64" in f else None)
        for f in row.files_json)
    return MessagePlan(payload=dict(row.payload_json), files=files)
