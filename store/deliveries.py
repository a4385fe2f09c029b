"""The delivery engine's side of the store: claiming work, recording every step.

The claim is per destination: a worker leases a destination (a webhook, a DM user, an interaction)
and then sends its due deliveries one after another, so the destination's rate-limit state and
the order of its messages hold across workers and replicas. On PostgreSQL candidates are locked
with ``FOR UPDATE SKIP LOCKED``; on SQLite the claim runs in a single-writer (IMMEDIATE)
transaction. A crashed worker's lease expires and another takes the destination over, resuming
at the first planned message without a Discord message id.

Everything here is Core statements on a connection (``Store._connection``), no ORM objects: these
run several times per message sent, and the ORM's identity map, unit of work and autoflush cost
more CPU than the statements themselves (profiled with py-spy; see bench/README.md).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, exists, func, insert, or_, select, update

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
from schemas.tables import Attachment, Destination, PlannedMessage
from schemas.work import ClaimedDestination, Finished, Release, Renderer, StoredPlan, Work
from store.alerts import record_disabled, record_undelivered
from store.errors import AttachmentMissing
from store.ids import random_bytes
from store.results import read_range
from store.route import (
    DELIVERIES,
    EVENTS,
    INSERT_EVENT,
    PROGRESS,
    RESULTS,
    UPDATE_DELIVERY,
    RouteRows,
    advance,
    load_route,
    lone_route,
)
from store.session import Store, as_utc, table_of, unindexed, utcnow

DESTINATIONS = table_of(Destination)
PLANS = table_of(PlannedMessage)
ATTACHMENTS = table_of(Attachment)


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
        d, dest = DELIVERIES.c, DESTINATIONS.c
        due = select(d.destination_key).where(d.status == "pending", d.next_attempt_at <= now).distinct()
        free = [dest.lease_owner.is_(None), dest.lease_expires_at < now, dest.lease_owner == owner]
        if dead_owners:
            free.append(dest.lease_owner.in_(list(dead_owners)))
        conditions = [dest.key.in_(due), or_(*free), or_(dest.blocked_until.is_(None), dest.blocked_until <= now)]
        if exclude:
            # Never a second task for a destination we serve, even if its lease ran out while a
            # store outage kept the heartbeat from renewing it: that would send its message twice.
            conditions.append(dest.key.not_in(list(exclude)))
        query = self._claim_lock(select(DESTINATIONS).where(*conditions).order_by(dest.updated_at).limit(limit))
        with self._connection(write=True) as conn:
            rows = conn.execute(query).all()
            if rows:
                conn.execute(update(DESTINATIONS).where(dest.key.in_([row.key for row in rows]))
                             .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_s)))
            return [ClaimedDestination(
                key=row.key, kind=row.kind, disabled=row.disabled, disabled_reason=row.disabled_reason,
                bucket=BucketState(bucket=row.bucket, remaining=row.remaining,
                                   reset_at=as_utc(row.reset_at).timestamp() if row.reset_at else 0.0),
                dm_channel_id=row.dm_channel_id,
                previous_owner=row.lease_owner if row.lease_owner not in (None, owner) else None,
                channel_id=row.channel_id, guild_id=row.guild_id) for row in rows]

    def leased_owners(self, *, exclude: str) -> list[str]:
        """Owners of unexpired leases other than ``exclude`` (candidates for a presence check)."""
        dest = DESTINATIONS.c
        with self._connection() as conn:
            return list(conn.scalars(select(dest.lease_owner).where(
                dest.lease_owner.is_not(None), dest.lease_owner != exclude,
                dest.lease_expires_at >= utcnow()).distinct()))

    def renew(self, owner: str, keys: Sequence[str], *, lease_s: float) -> None:
        """Extend this worker's leases (heartbeat)."""
        if not keys:
            return
        dest = DESTINATIONS.c
        with self._connection(write=True) as conn:
            conn.execute(update(DESTINATIONS).where(dest.key.in_(list(keys)), dest.lease_owner == owner)
                         .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s)))

    def release(self, key: str, release: Release) -> None:
        """Give a destination back, leaving its rate-limit knowledge for the next owner."""
        with self._connection(write=True) as conn:
            _release(conn, key, release, utcnow())

    def release_all(self, owner: str) -> None:
        """Drop every lease this worker still holds (shutdown)."""
        with self._connection(write=True) as conn:
            conn.execute(update(DESTINATIONS).where(DESTINATIONS.c.lease_owner == owner)
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
        with self._connection(write=True) as conn:
            return _start_next(conn, key, utcnow(), render)

    def finish_and_start_next(self, delivery_id: int, *, sent: tuple[int, str] | None, key: str | None,
                              render: Renderer | None = None,
                              release: Release | None = None) -> tuple[Finished, Work | None]:
        """A delivery arrived: record it and take the destination's next one, in one transaction.

        With ``release``, a destination that has nothing more due is given back in the same
        transaction (``Finished.released``): after a burst, one commit per destination less, and
        a result arriving then does not wait behind a queue of releases.
        """
        now = utcnow()
        with self._connection(write=True) as conn:
            finished = _finish(conn, delivery_id, delivered=True, sent=sent, now=now, postgres=self._postgres,
                               alerts=self.record_alerts)
            # With ``release``, only while the lease is still ours: a retry after a commit whose answer
            # was lost gave it back, or it expired and another worker took it (then the release below,
            # conditional on the owner, changes nothing either).
            following = _start_next(conn, key, now, render, release.owner if release else None) if key else None
            if key is not None and following is None and release is not None:
                _release(conn, key, release, now)
                finished = replace(finished, released=True)
            return finished, following

    def plans(self, delivery_id: int) -> list[StoredPlan]:
        """The stored plan of a delivery, in order."""
        with self._connection() as conn:
            return _stored_plans(conn, delivery_id)

    def save_plans(self, delivery_id: int, plans: Sequence[MessagePlan], *, start_seq: int = 0) -> list[StoredPlan]:
        """Store (or, after a re-render, replace the unsent part of) a delivery's plan; returns it whole."""
        with self._connection(write=True) as conn:
            conn.execute(PLANS.delete().where(PLANS.c.delivery_id == delivery_id, PLANS.c.message_id.is_(None)))
            _insert_plans(conn, delivery_id, plans, start_seq)
            return _stored_plans(conn, delivery_id)  # the sent part too: the whole plan, in order

    def mark_sent(self, plan_id: int, message_id: str, delivery_id: int) -> None:
        """Discord holds this message: commit its id before the next message is sent."""
        with self._connection(write=True) as conn:
            conn.execute(INSERT_EVENT, _record_sent(conn, delivery_id, plan_id, message_id, utcnow()))

    def set_thread(self, delivery_id: int, thread_id: str, *, sent: tuple[int, str] | None = None) -> None:
        """The forum post this delivery's first message created: later messages and retries go there.

        ``sent`` (plan id, message id), the message that created it, is marked sent in the same
        transaction: a crash can leave neither or both, never a stored post without its message.
        """
        now = utcnow()
        with self._connection(write=True) as conn:
            _update_delivery(conn, delivery_id, {"thread_id": thread_id})
            _event(conn, delivery_id, now, "thread_created", message=f"forum post {thread_id}")
            if sent is not None:
                conn.execute(INSERT_EVENT, _record_sent(conn, delivery_id, sent[0], sent[1], now))

    def set_render_scale(self, delivery_id: int, scale: int, note: str) -> None:
        """Remember that this delivery renders smaller (after a 413)."""
        with self._connection(write=True) as conn:
            _update_delivery(conn, delivery_id, {"render_scale": scale})
            _event(conn, delivery_id, utcnow(), "rerendered", message=note)

    def read_attachment(self, result_id: str, index: int, offset: int, length: int) -> bytes:
        """A byte range of a stored attachment; ``AttachmentMissing`` if the result has no such file."""
        with self._connection() as conn:
            data = read_range(conn, result_id, index, offset, length)
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
        now = utcnow()
        with self._connection(write=True) as conn:
            values: dict[str, Any] = {"next_attempt_at": at, "last_error_status": status, "last_error_code": code,
                                      "last_error_message": message, "updated_at": now}
            if not count_attempt:
                values["attempts"] = DELIVERIES.c.attempts - 1
            conn.execute(update(DELIVERIES).where(DELIVERIES.c.id == delivery_id).values(**values))
            if hold_destination:
                key = select(DELIVERIES.c.destination_key).where(DELIVERIES.c.id == delivery_id).scalar_subquery()
                conn.execute(update(DESTINATIONS).where(DESTINATIONS.c.key == key).values(blocked_until=at))
            _event(conn, delivery_id, now, outcome, http_status=status, discord_code=code, message=message,
                   retry_at=at)

    def crash_count(self, delivery_id: int) -> int:
        """How often delivering this has crashed so far (its ``crashed`` events)."""
        with self._connection() as conn:
            return int(conn.scalar(select(func.count()).select_from(EVENTS).where(
                EVENTS.c.delivery_id == delivery_id, EVENTS.c.outcome == "crashed")) or 0)

    def disable_destination(self, key: str, reason: str) -> None:
        """A 404 Unknown Webhook: later results to it fail fast until someone re-enables it."""
        now = utcnow()
        dest = DESTINATIONS.c
        with self._connection(write=True) as conn:
            changed = conn.execute(update(DESTINATIONS).where(dest.key == key, dest.disabled.is_(False))
                                   .values(disabled=True, disabled_reason=reason, disabled_at=now, updated_at=now))
            if self.record_alerts and changed.rowcount:
                record_disabled(conn, key, reason, now)

    def finish(self, delivery_id: int, *, delivered: bool, status: int | None = None, code: int | None = None,
               message: str | None = None, outcome: str | None = None,
               sent: tuple[int, str] | None = None) -> Finished:
        """End a delivery and move its route on; returns the result's status afterwards.

        ``sent`` is ``(plan id, Discord message id)`` of the last message, recorded in the same
        transaction: one commit instead of two for the common one-message result.
        """
        with self._connection(write=True) as conn:
            return _finish(conn, delivery_id, delivered=delivered, status=status, code=code, message=message,
                           outcome=outcome, sent=sent, now=utcnow(), postgres=self._postgres,
                           alerts=self.record_alerts)

    def mark_notice_sent(self, delivery_id: int) -> None:
        """The hand-off notice for this interaction delivery went out (never twice)."""
        now = utcnow()
        with self._connection(write=True) as conn:
            _update_delivery(conn, delivery_id, {"notice_sent_at": now})
            _event(conn, delivery_id, now, "handoff_notice", message="told the user where the result will arrive")

    def cancel(self, delivery_id: int, reason: str) -> None:
        """Stop a delivery that must not be sent any more (its result was acknowledged or superseded)."""
        now = utcnow()
        with self._connection(write=True) as conn:
            _update_delivery(conn, delivery_id, {"status": "cancelled", "next_attempt_at": None, "updated_at": now})
            _event(conn, delivery_id, now, "skipped", message=reason)

    def queue_stats(self) -> tuple[int, float]:
        """(deliveries waiting to be sent, age in seconds of the oldest one)."""
        with self._connection() as conn:
            count, oldest = conn.execute(select(func.count(), func.min(DELIVERIES.c.created_at)).where(
                DELIVERIES.c.status == "pending")).one()
        age = (utcnow() - as_utc(oldest)).total_seconds() if oldest else 0.0
        return int(count), max(0.0, age)


def _event(conn: Connection, delivery_id: int, at: datetime, outcome: str, *, http_status: int | None = None,
           discord_code: int | None = None, message: str | None = None, retry_at: datetime | None = None) -> None:
    """One line of a delivery's timeline."""
    conn.execute(INSERT_EVENT, _event_row(delivery_id, at, outcome, http_status=http_status,
                                          discord_code=discord_code, message=message, retry_at=retry_at))


def _insert_plans(conn: Connection, delivery_id: int, plans: Sequence[MessagePlan],
                  start_seq: int) -> list[StoredPlan]:
    """Add the rows of a plan; returns them as stored (ids assigned), without reading them back."""
    if not plans:
        return []
    rows: list[dict[str, Any]] = [{"delivery_id": delivery_id, "seq": start_seq + offset, "payload_json": plan.payload,
             "files_json": [_file_to_json(f) for f in plan.files], "nonce": random_bytes(12).hex()}
            for offset, plan in enumerate(plans)]
    if len(rows) == 1:  # most plans are one message: a plain INSERT … RETURNING, not the batched form
        ids = [conn.execute(_INSERT_PLAN, rows[0]).scalar_one()]
    else:
        ids = list(conn.execute(_INSERT_PLANS, rows).scalars().all())
    return [StoredPlan(id=plan_id, seq=row["seq"], plan=plan, nonce=row["nonce"], message_id=None)
            for plan_id, row, plan in zip(ids, rows, plans, strict=True)]


# The statements of every message sent, built once (see store.route on why).
# The next due delivery of a destination (its columns named ``d_*``) with its result's row, in one
# statement; outer, so a delivery whose result is gone is an error, not a destination claimed forever.
# Three answers ride along, so the common case reads nothing more: whether the result has attachments
# and the delivery a stored plan (each an index probe; without them, no query for either), and how
# many deliveries its generation has (one: the route is this row, ``load_route`` is skipped).
_ROUTE_MATES = DELIVERIES.alias("route_mates")
# How many deliveries the generation of the query's delivery has (correlated to ``DELIVERIES``).
_ROUTE_SIZE = (select(func.count()).where(_ROUTE_MATES.c.result_id == DELIVERIES.c.result_id,
                                          _ROUTE_MATES.c.generation == DELIVERIES.c.generation)
               .scalar_subquery().label("d_route_size"))
_RESULT_COLUMNS = ("id", "status", "mode", "generation", "workflow_id", "created_at", "silent", "title", "summary",
                   "body", "fields_json", "url", "color", "level", "content", "embeds_json")
_NEXT = (
    select(*(DELIVERIES.c[name].label(f"d_{name}") for name in (
        "id", "result_id", "generation", "position", "status", "destination_key", "kind", "target_json", "attempts",
        "render_scale", "first_attempt_at", "thread_id", "notice_sent_at")),
        exists().where(ATTACHMENTS.c.result_id == DELIVERIES.c.result_id).label("d_has_attachments"),
        exists().where(PLANS.c.delivery_id == DELIVERIES.c.id).label("d_has_plans"),
        _ROUTE_SIZE,
        # What starting and rendering read of the result, no more: every column read is decoded
        # (JSON, timestamps), and the producer's metadata or the result's bookkeeping are not needed.
        *(RESULTS.c[name] for name in _RESULT_COLUMNS))
    .select_from(DELIVERIES.outerjoin(RESULTS, RESULTS.c.id == DELIVERIES.c.result_id))
    # One range of ix_deliveries_destination_next, in order (``unindexed``: SQLite would pick ix_deliveries_due).
    .where(DELIVERIES.c.destination_key == bindparam("b_key"), DELIVERIES.c.status == "pending",
           unindexed(DELIVERIES.c.next_attempt_at) <= bindparam("b_now"))
    .order_by(DELIVERIES.c.created_at, DELIVERIES.c.id).limit(1))
# The same, only while ``b_owner`` holds the destination's lease (never start work on someone else's).
_NEXT_HELD = _NEXT.where(exists().where(DESTINATIONS.c.key == bindparam("b_key"),
                                        DESTINATIONS.c.lease_owner == bindparam("b_owner")))
_ATTACHMENTS = (select(ATTACHMENTS.c.idx, ATTACHMENTS.c.filename, ATTACHMENTS.c.content_type, ATTACHMENTS.c.size,
                       ATTACHMENTS.c.sha256).where(ATTACHMENTS.c.result_id == bindparam("b_id"))
                .order_by(ATTACHMENTS.c.idx))
_PLANS = select(PLANS).where(PLANS.c.delivery_id == bindparam("b_id")).order_by(PLANS.c.seq)
_INSERT_PLANS = insert(PLANS).returning(PLANS.c.id, sort_by_parameter_order=True)
_INSERT_PLAN = insert(PLANS).returning(PLANS.c.id)
_MARK_SENT = update(PLANS).where(PLANS.c.id == bindparam("b_id"))
# A finishing delivery's place in its route, with its result's row. On PostgreSQL the result row is
# locked and the route read after, in a statement of its own: rows joined to a locked one come from
# the snapshot taken before the lock was granted, so a route mate that another transaction changed
# meanwhile would look unchanged. SQLite's write transactions run one at a time: there the row also
# brings the delivery's own route columns and its generation's size, and a lone delivery is its route;
# and whether the workflow has an open progress message (most have none: nothing to close then).
_FINISHING_COLUMNS = (DELIVERIES.c.generation.label("d_generation"), DELIVERIES.c.position.label("d_position"),
                      RESULTS.c.id, RESULTS.c.status, RESULTS.c.mode, RESULTS.c.generation, RESULTS.c.workflow_id,
                      RESULTS.c.created_at, RESULTS.c.title, RESULTS.c.tenant)
_FINISHING_FROM = DELIVERIES.join(RESULTS, RESULTS.c.id == DELIVERIES.c.result_id)
_FINISHING_LOCKED = (select(*_FINISHING_COLUMNS).select_from(_FINISHING_FROM)
                     .where(DELIVERIES.c.id == bindparam("b_id")).with_for_update(of=RESULTS))
_FINISHING = (select(*_FINISHING_COLUMNS,
                     *(DELIVERIES.c[name].label(f"d_{name}") for name in (
                         "id", "status", "destination_key", "kind", "target_json")),
                     _ROUTE_SIZE,
                     exists().where(PROGRESS.c.workflow_id == RESULTS.c.workflow_id, PROGRESS.c.done.is_(False))
                     .label("d_open_progress"))
              .select_from(_FINISHING_FROM).where(DELIVERIES.c.id == bindparam("b_id")))
_RELEASE = update(DESTINATIONS).where(DESTINATIONS.c.key == bindparam("b_key"),
                                      DESTINATIONS.c.lease_owner == bindparam("b_owner"))
_PROGRESS_STATE = select(PROGRESS.c.state_json).where(PROGRESS.c.workflow_id == bindparam("b_workflow"),
                                                      PROGRESS.c.destination_key == bindparam("b_key"))


def _start_next(conn: Connection, key: str, now: datetime, render: Renderer | None,
                owner: str | None = None) -> Work | None:
    """The destination's next due delivery, started; None when nothing is due (or, with ``owner``,
    when ``owner`` does not hold the destination's lease)."""
    query, params = (_NEXT, {"b_key": key, "b_now": now}) if owner is None else (
        _NEXT_HELD, {"b_key": key, "b_now": now, "b_owner": owner})
    r = conn.execute(query, params).first()  # the result's row, the delivery's columns as ``d_*``
    if r is None:
        return None
    d = _Delivery(r)
    if r.id is None:
        raise LookupError(d.result_id)
    stale = None
    following = None
    attempts, first_attempt_at = d.attempts, d.first_attempt_at
    if r.status == ResultStatus.PICKED_UP:
        stale = "result was picked up"
    elif d.generation != r.generation:
        stale = "superseded by a redelivery"
    else:
        rows = _route_of(conn, r, d)
        advance(conn, rows, Start(d.position), now)
        following = next((s.kind for s in rows.deliveries[d.position + 1:]), None)
        attempts, first_attempt_at = attempts + 1, first_attempt_at or now  # what the writes just stored
    atts = conn.execute(_ATTACHMENTS, {"b_id": r.id}).all() if d.has_attachments else []
    defect = None
    try:
        result = render_input(r, atts)
        plans = _stored_plans(conn, d.id) if d.has_plans else []
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # Stored data this code cannot read: one bad result, never a claim that fails forever.
        # The worker treats ``defect`` as a crash of this delivery (counted, bounded, then failed).
        defect = f"stored result is unreadable ({type(exc).__name__}: {exc})"
        result, plans = RenderInput(title=r.title), []
    if not plans and stale is None and defect is None and render is not None:
        rendered = render(result, d.render_scale, d.kind)
        if rendered is not None:
            plans = _insert_plans(conn, d.id, rendered, 0)
    target = dict(d.target_json)
    return Work(delivery_id=d.id, result_id=r.id, kind=d.kind, target=target,
                attempts=attempts, render_scale=d.render_scale,
                first_attempt_at=as_utc(first_attempt_at), result_created_at=as_utc(r.created_at) or now,
                result=result, stale=stale, next_kind=following,
                notice_sent=d.notice_sent_at is not None or _progress_handoff_sent(conn, r, d),
                plans=tuple(plans), defect=defect, thread_id=d.thread_id or _progress_thread(conn, r, d),
                silent=bool(r.silent or target.get("silent")))


def _route_of(conn: Connection, r: Any, d: Any) -> RouteRows:
    """The route of ``d``'s result: from the rows in hand when ``d`` (with its ``route_size``) is
    the generation's only delivery, else read."""
    return lone_route(r, d) if d.route_size == 1 and d.position == 0 else load_route(conn, r)


class _Delivery:
    """The ``d_*`` columns of a ``_NEXT`` row, by their own names."""

    __slots__ = ("_row",)

    def __init__(self, row: Any) -> None:
        self._row = row

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, f"d_{name}")


def _release(conn: Connection, key: str, release: Release, now: datetime) -> None:
    """Give ``key`` back if ``release.owner`` still holds it, leaving its rate-limit knowledge behind."""
    values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None, "updated_at": now,
                              "blocked_until": release.blocked_until}
    bucket = release.bucket
    if bucket is not None:
        values.update(bucket=bucket.bucket, remaining=bucket.remaining,
                      reset_at=datetime.fromtimestamp(bucket.reset_at, UTC) if bucket.reset_at else None)
    if release.dm_channel_id:
        values["dm_channel_id"] = release.dm_channel_id
    conn.execute(_RELEASE, {"b_key": key, "b_owner": release.owner, **values})


def render_input(r: Any, atts: Sequence[Any]) -> RenderInput:
    """What the renderer needs of a stored result (ORM or Core row) and its attachment rows (also the
    ``/results`` preview)."""
    level = r.level if r.level in ("info", "success", "warning", "error") else None
    return RenderInput(
        title=r.title, summary=r.summary, body=r.body,
        fields=tuple(Field(f["name"], f["value"], bool(f.get("inline"))) for f in r.fields_json),
        url=r.url, color=r.color, level=level, workflow_id=r.workflow_id,
        attachments=tuple(AttachmentRef(a.idx, a.filename, a.content_type, a.size, a.sha256) for a in atts),
        content=r.content, embeds=tuple(e for e in r.embeds_json or () if isinstance(e, dict)),
    )


def _finish(conn: Connection, delivery_id: int, *, delivered: bool, now: datetime, postgres: bool,
            status: int | None = None, code: int | None = None, message: str | None = None,
            outcome: str | None = None, sent: tuple[int, str] | None = None, alerts: bool = False) -> Finished:
    ended = DeliveryStatus.DELIVERED if delivered else DeliveryStatus.FAILED
    events = [] if sent is None else [_record_sent(conn, delivery_id, sent[0], sent[1], now)]
    events.append(_event_row(delivery_id, now, outcome or ended.value, http_status=status, discord_code=code,
                             message=message))
    conn.execute(INSERT_EVENT, events)
    # Lock the result first: two destinations of a mode-"all" result finishing at once must
    # see each other's outcome, or neither would declare the result finished (PostgreSQL).
    r = conn.execute(_FINISHING_LOCKED if postgres else _FINISHING, {"b_id": delivery_id}).one()
    d = _Delivery(r)
    own: dict[str, Any] = {"next_attempt_at": None, "updated_at": now}
    if delivered:
        own["delivered_at"] = now
    else:
        own.update(last_error_status=status, last_error_code=code, last_error_message=message)
    created = as_utc(r.created_at) or now
    if d.generation != r.generation:
        # A superseded generation: outside the route, recorded as it ended.
        _update_delivery(conn, delivery_id, {**own, "status": ended.value})
        return Finished(result_status=r.status, result_created_at=created)
    if postgres:  # see _FINISHING: the route is read after the lock
        rows = load_route(conn, r)
    else:
        rows = _route_of(conn, r, d)
        rows.open_progress = bool(d.open_progress)
    event = Delivered(d.position) if delivered else PermanentFailure(d.position)
    try:
        done = advance(conn, rows, event, now, also={d.position: own})
    except InvalidTransition:
        # Already ended (a lease taken over while this attempt was on the wire; nothing was written):
        # the first word stands.
        _update_delivery(conn, delivery_id, own)
        return Finished(result_status=r.status, result_created_at=created)
    if done.exhausted and alerts:
        record_undelivered(conn, r, now)  # reads the failed status the writes just stored
    writes = done.writes
    skipped = [rows.deliveries[w.position].id for w in writes
               if isinstance(w, SetDelivery) and w.status is DeliveryStatus.SKIPPED]
    following = [rows.deliveries[w.position].id for w in writes if isinstance(w, SetDelivery) and w.due]
    return Finished(result_status=rows.status, result_created_at=created,
                    next_delivery=following[0] if following else None, skipped=skipped)


def _update_delivery(conn: Connection, delivery_id: int, values: dict[str, Any]) -> None:
    """Set these columns of one delivery (the shared statement: its SET list is the parameters)."""
    conn.execute(UPDATE_DELIVERY, {"b_id": delivery_id, **values})


def _event_row(delivery_id: int, at: datetime, outcome: str, *, http_status: int | None = None,
               discord_code: int | None = None, message: str | None = None,
               retry_at: datetime | None = None) -> dict[str, Any]:
    """The parameters of one event row (every column, so rows of one executemany share a shape)."""
    return {"delivery_id": delivery_id, "at": at, "outcome": outcome, "http_status": http_status,
            "discord_code": discord_code, "message": message, "retry_at": retry_at}


def _record_sent(conn: Connection, delivery_id: int, plan_id: int, message_id: str, now: datetime) -> dict[str, Any]:
    """Mark the planned message sent; returns its "sent" event row, for the caller to insert with its others."""
    conn.execute(_MARK_SENT, {"b_id": plan_id, "message_id": message_id, "sent_at": now})
    return _event_row(delivery_id, now, "sent", message=f"message {message_id}")


def _stored_plans(conn: Connection, delivery_id: int) -> list[StoredPlan]:
    rows = conn.execute(_PLANS, {"b_id": delivery_id}).all()
    return [StoredPlan(id=r.id, seq=r.seq, plan=_plan_from_row(r), nonce=r.nonce, message_id=r.message_id)
            for r in rows]


def _progress_state(conn: Connection, workflow_id: str, destination_key: str) -> dict[str, Any] | None:
    state: dict[str, Any] | None = conn.scalar(_PROGRESS_STATE, {"b_workflow": workflow_id, "b_key": destination_key})
    return state


def _progress_handoff_sent(conn: Connection, result: Any, delivery: Any) -> bool:
    if delivery.kind != "interaction" or not result.workflow_id:
        return False
    state = _progress_state(conn, result.workflow_id, delivery.destination_key)
    return bool(state and state.get("handoff_sent"))


def _progress_thread(conn: Connection, result: Any, delivery: Any) -> str | None:
    """The forum post this workflow's progress message opened on the same destination, if any."""
    if delivery.kind != "webhook" or not result.workflow_id or not delivery.target_json.get("thread_name"):
        return None
    state = _progress_state(conn, result.workflow_id, delivery.destination_key)
    thread = state.get("thread_id") if state else None
    return str(thread) if thread else None


def _file_to_json(part: FilePart) -> dict[str, Any]:
    out: dict[str, Any] = {"filename": part.filename, "content_type": part.content_type,
                           "attachment_index": part.attachment_index, "offset": part.offset, "length": part.length}
    if part.data is not None:
        out["data_b64"] = base64.b64encode(part.data).decode()
    return out


def _plan_from_row(row: Any) -> MessagePlan:
    files = tuple(
        FilePart(filename=f["filename"], content_type=f["content_type"], attachment_index=f["attachment_index"],
                 offset=f["offset"], length=f["length"],
                 data=base64.b64decode(f["data_b64"]) if "data_b64" in f else None)
        for f in row.files_json)
    return MessagePlan(payload=dict(row.payload_json), files=files)
