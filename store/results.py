"""``ResultStore``: accepting, reading, listing, redelivering and purging results.

Every public method is one transaction. ``create`` commits the result, its files and its
deliveries together, so a ``202`` always means all of it is stored and nothing is half-written.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, bindparam, delete, exists, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from schemas.lifecycle import Ack, DeliveryStatus, NewGeneration, Redeliver, ResultStatus, Route
from schemas.tables import (
    AlertEvent,
    Attachment,
    Delivery,
    DeliveryEvent,
    Destination,
    PlannedMessage,
    Result,
    ResultViewer,
)
from schemas.targets import Target
from store.errors import IdempotencyConflict, NotFound, StoreUnavailable
from store.group_commit import CommitStats, GroupCommitter
from store.ids import new_id
from store.route import advance, load_route
from store.session import Database, Store, as_utc, dialect_insert, table_of, utcnow
from store.views import (
    AttachmentMeta,
    DeliveryView,
    NewResult,
    ResultContentView,
    ResultFilter,
    ResultView,
    decode_cursor,
    encode_cursor,
)

STREAM_CHUNK = 1024 * 1024
# A batch is what queued while the previous one committed, capped so one transaction stays short.
MAX_BATCH_ITEMS = 256
MAX_BATCH_BYTES = 32 * 1024 * 1024

log = logging.getLogger("relay.results")


@dataclass(frozen=True)
class _Pending:
    """A result waiting for the writer, with its id chosen by the caller (so a retry keeps it)."""

    result_id: str
    new: NewResult

    def size(self) -> int:
        """Rough bytes this item adds to a transaction (attachments and body dominate)."""
        return sum(len(a.data) for a in self.new.attachments) + len(self.new.body or "") + len(self.new.content or "")


def _outcome(fn: Callable[[_Pending], tuple[str, bool]], pending: _Pending) -> tuple[str, bool] | BaseException:
    try:
        return fn(pending)
    except Exception as exc:  # noqa: BLE001 - handed to that item's caller, not to the batch
        return exc


_RESULTS, _ATTACHMENTS, _DELIVERIES, _VIEWERS = (table_of(t) for t in (Result, Attachment, Delivery, ResultViewer))
# Ingest's statements, built once (building a statement and its cache key per batch cost more than
# running it).
_KNOWN_KEYS = (select(_RESULTS.c.id, _RESULTS.c.idempotency_key, _RESULTS.c.request_hash)
               .where(_RESULTS.c.key_id == bindparam("key_id"),
                      _RESULTS.c.idempotency_key.in_(bindparam("keys", expanding=True))))
_INSERT_RESULTS, _INSERT_ATTACHMENTS, _INSERT_DELIVERIES, _INSERT_VIEWERS = (
    insert(t) for t in (_RESULTS, _ATTACHMENTS, _DELIVERIES, _VIEWERS))


def _insert_batch(conn: Connection, batch: list[_Pending]) -> list[tuple[str, bool] | BaseException]:
    """Write every new result of ``batch`` with a few multi-row INSERTs; idempotent replays write nothing.

    Runs inside the writer's write transaction (``BEGIN IMMEDIATE`` on SQLite), so the idempotency
    check and the inserts see one consistent store. Keys repeated inside the batch resolve to the
    first occurrence, exactly as if the items had been committed one after another. Core statements
    on the connection: nothing written here is read back in this transaction, so the ORM's
    per-object bookkeeping would buy nothing.
    """
    known: dict[tuple[str, str], tuple[str, str]] = {}  # (key_id, idempotency key) -> (id, request hash)
    by_key: dict[str, set[str]] = {}
    for p in batch:
        if p.new.idempotency_key is not None:
            by_key.setdefault(p.new.key_id, set()).add(p.new.idempotency_key)
    for key_id, idem_keys in by_key.items():
        for row in conn.execute(_KNOWN_KEYS, {"key_id": key_id, "keys": sorted(idem_keys)}):
            known[(key_id, row.idempotency_key)] = (row.id, row.request_hash)

    now = utcnow()
    outcomes: list[tuple[str, bool] | BaseException] = []
    results: list[dict[str, Any]] = []
    attachments: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    viewers: list[dict[str, Any]] = []
    destinations: dict[str, dict[str, Any]] = {}
    for p in batch:
        new = p.new
        if new.idempotency_key is not None:
            seen = known.get((new.key_id, new.idempotency_key))
            if seen is not None:
                outcomes.append((seen[0], False) if seen[1] == new.request_hash else IdempotencyConflict(seen[0]))
                continue
            known[(new.key_id, new.idempotency_key)] = (p.result_id, new.request_hash)
        results.append({
            "id": p.result_id, "tenant": new.tenant, "key_id": new.key_id, "idempotency_key": new.idempotency_key,
            "request_hash": new.request_hash, "workflow_id": new.workflow_id, "title": new.title,
            "summary": new.summary, "body": new.body, "fields_json": new.fields, "content": new.content,
            "embeds_json": new.embeds, "url": new.url,
            "color": new.color, "level": new.level, "metadata_json": new.metadata, "mode": new.mode,
            "silent": new.silent, "status": ResultStatus.PENDING.value, "generation": 1, "created_at": now,
            "updated_at": now,
            "finished_at": None,
        })
        for idx, att in enumerate(new.attachments):
            attachments.append({
                "result_id": p.result_id, "idx": idx, "filename": att.filename, "content_type": att.content_type,
                "size": len(att.data), "sha256": hashlib.sha256(att.data).hexdigest(), "data": att.data,
            })
        accepted = Route.accepted(new.mode, len(new.targets))  # type: ignore[arg-type]
        for position, (target, status) in enumerate(zip(new.targets, accepted.deliveries, strict=True)):
            destinations.setdefault(target.key, {"key": target.key, "tenant": target.tenant, "kind": target.kind,
                                                 "label": target.label, "updated_at": now})
            due = status is DeliveryStatus.PENDING
            deliveries.append({
                "result_id": p.result_id, "generation": 1, "position": position, "destination_key": target.key,
                "kind": target.kind, "target_json": target.stored, "status": status.value,
                "next_attempt_at": now if due else None, "created_at": now, "updated_at": now,
            })
        viewers.extend({"result_id": p.result_id, "user_id": user}
                       for user in viewers_of(new.targets, new.discord_user_ids))
        outcomes.append((p.result_id, True))

    if destinations:
        # Sorted, so replicas inserting overlapping destinations take row locks in the same order.
        upsert = dialect_insert(conn, table_of(Destination)).on_conflict_do_nothing(index_elements=["key"])
        conn.execute(upsert, [destinations[k] for k in sorted(destinations)])
    for statement, rows in ((_INSERT_RESULTS, results), (_INSERT_ATTACHMENTS, attachments),
                            (_INSERT_DELIVERIES, deliveries), (_INSERT_VIEWERS, viewers)):
        if rows:
            conn.execute(statement, rows)
    return outcomes


def viewers_of(targets: Sequence[Target], extra: Sequence[str] = ()) -> list[str]:
    """The Discord users a result is meant for: its DM users, its interactions' users, ``extra``.

    They, and only they (besides the managers of a guild it was routed to), may fetch it with
    ``/results``; in first-seen order, each once.
    """
    users = [t.stored.get("user_id") for t in targets if t.kind in ("dm", "interaction")]
    return list(dict.fromkeys(u for u in [*users, *extra] if u))


def _add_viewers(session: Session, result_id: str, users: Sequence[str]) -> None:
    """Record more owners of a result (a new route may name new users); known ones are kept once."""
    if not users:
        return
    upsert = dialect_insert(session, table_of(ResultViewer))
    session.execute(upsert.on_conflict_do_nothing(index_elements=["result_id", "user_id"]),
                    [{"result_id": result_id, "user_id": u} for u in users])


class ResultStore(Store):
    """Results and their deliveries, as the HTTP API and the admin page see them."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._committer: GroupCommitter[_Pending, tuple[str, bool]] = GroupCommitter(
            self._write_batch, max_items=MAX_BATCH_ITEMS, max_bytes=MAX_BATCH_BYTES, size_of=_Pending.size,
            name="result-writer")

    # --- writing -------------------------------------------------------------------------------

    def create(self, new: NewResult) -> tuple[str, bool]:
        """Store a result; ``(id, created)``. A repeated idempotency key returns the first id.

        Returns only after the transaction holding the result has committed. Concurrent calls are
        written together by one writer thread (``store.group_commit``), one transaction per batch.
        """
        return self._committer.call(_Pending(new_id("res"), new))

    async def create_async(self, new: NewResult) -> tuple[str, bool]:
        """``create`` for the event loop: awaits the commit without holding a thread-pool thread."""
        return await self._committer.call_async(_Pending(new_id("res"), new))

    @property
    def commit_stats(self) -> CommitStats:
        """Batches and items written by the group committer (for tests and benchmarks)."""
        return self._committer.stats

    def _write_batch(self, batch: list[_Pending]) -> list[tuple[str, bool] | BaseException]:
        """One transaction for the whole batch; on any item-level failure, one transaction per item."""
        try:
            with self._db.connection(write=True) as conn:
                return _insert_batch(conn, batch)
        except StoreUnavailable as exc:
            # The store is down or locked: every item would fail the same way, so fail them together.
            return [exc] * len(batch)
        except Exception:  # noqa: BLE001 - one bad item (IntegrityError, unserialisable value, ...)
            if len(batch) == 1:
                return [_outcome(self._create_one, batch[0])]
            log.info("group commit of %d results failed; committing them one by one", len(batch))
            return [_outcome(self._create_one, p) for p in batch]

    def _create_one(self, pending: _Pending) -> tuple[str, bool]:
        """The single-result transaction: the fallback that isolates a bad item from its batch.

        The same insert as a batch of one. A unique-key conflict means a concurrent request with the
        same idempotency key (on another replica) committed first: the second try reads its answer.
        """
        try:
            return self._insert_one(pending)
        except IntegrityError:
            if pending.new.idempotency_key is None:
                raise
            return self._insert_one(pending)

    def _insert_one(self, pending: _Pending) -> tuple[str, bool]:
        with self._db.connection(write=True) as conn:
            [outcome] = _insert_batch(conn, [pending])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _add_deliveries(
        self, session: Session, result_id: str, generation: int, statuses: Sequence[DeliveryStatus],
        targets: Sequence[Target], now: datetime,
    ) -> None:
        for position, (target, status) in enumerate(zip(targets, statuses, strict=True)):
            _ensure_destination(session, target, now)
            due = status is DeliveryStatus.PENDING
            session.add(Delivery(
                result_id=result_id, generation=generation, position=position, destination_key=target.key,
                kind=target.kind, target_json=target.stored, status=status.value,
                next_attempt_at=now if due else None, created_at=now, updated_at=now,
            ))

    def ack(self, result_id: str, *, tenant: str | None = None) -> ResultView:
        """A pickup client took the result: ``picked_up``; deliveries not yet started are cancelled."""
        with self._db.session(write=True) as session:
            result = _get_result(session, result_id, tenant)
            conn = session.connection()
            advance(conn, load_route(conn, result), Ack(), utcnow())
        return self.get(result_id)

    def redeliver(self, result_id: str, *, targets: Sequence[Target] | None = None,
                  mode: str | None = None, tenant: str | None = None) -> ResultView:
        """Queue a result again: to a new route, or to its own route resuming where it stopped."""
        with self._db.session(write=True) as session:
            self._redeliver(session, _get_result(session, result_id, tenant), targets, mode)
        return self.get(result_id)

    def _redeliver(self, session: Session, result: Result, targets: Sequence[Target] | None,
                   mode: str | None) -> None:
        """The state machine's ``Redeliver``: a new generation to ``targets`` (or, for a result that
        arrived, to the same destinations), else the same route resumed, keeping the sent-message
        marks so a resumed delivery never repeats a message Discord already holds."""
        now = utcnow()
        session.flush()  # the route's statements run on the connection, below the ORM
        conn = session.connection()
        rows = load_route(conn, result)
        if targets is None and result.status in (ResultStatus.DELIVERED, ResultStatus.PICKED_UP):
            targets = [Target(key=d.destination_key, kind=d.kind, label="", stored=d.target_json, tenant=result.tenant)
                       for d in rows.deliveries]
        fresh = [t.of_tenant(result.tenant) for t in targets] if targets is not None else None

        def add_generation(generation: NewGeneration) -> None:
            assert fresh is not None
            self._add_deliveries(session, result.id, generation.generation, generation.deliveries, fresh, now)
            _add_viewers(session, result.id, viewers_of(fresh))

        event = Redeliver(len(fresh) if fresh is not None else None, mode)  # type: ignore[arg-type]
        advance(conn, rows, event, now, new_generation=add_generation)

    def redeliver_matching(self, flt: ResultFilter, *, limit: int = 1000) -> list[str]:
        """Bulk redelivery: every result matching the filter (up to ``limit``), in one transaction."""
        with self._db.session(write=True) as session:
            rows = session.scalars(_filtered(select(Result), flt).order_by(col(Result.created_at)).limit(limit)).all()
            for result in rows:
                self._redeliver(session, result, None, None)
            return [r.id for r in rows]

    def delete(self, result_id: str, *, tenant: str | None = None) -> None:
        """Purge one result and everything that hangs off it."""
        with self._db.session(write=True) as session:
            _get_result(session, result_id, tenant)
            _delete_results(session, [result_id])

    def purge(self, *, delivered_before: datetime, undelivered_before: datetime, batch: int = 500) -> int:
        """Retention: delete finished results older than their status's retention; returns how many."""
        total = 0
        while True:
            with self._db.session(write=True) as session:
                ids = session.scalars(
                    select(col(Result.id)).where(or_(
                        col(Result.status).in_(("delivered",
                                                "picked_up")) & (col(Result.finished_at) < delivered_before),
                        (col(Result.status) == "undelivered") & (col(Result.finished_at) < undelivered_before),
                    )).limit(batch)
                ).all()
                if ids:
                    _delete_results(session, list(ids))
                if len(ids) < batch:
                    # Alerts already told (or dropped) go with the delivered results' retention.
                    session.execute(delete(AlertEvent).where(col(AlertEvent.sent_at) < delivered_before))
            total += len(ids)
            if len(ids) < batch:
                return total

    # --- reading -------------------------------------------------------------------------------

    def get(self, result_id: str, *, tenant: str | None = None) -> ResultView:
        """One result with its current deliveries (``NotFound`` when it belongs to another tenant)."""
        with self._db.session() as session:
            result = _get_result(session, result_id, tenant)
            return result_views(session, [result])[0]

    def list(
        self, flt: ResultFilter, *, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[ResultView], str | None]:
        """A page, newest first, and the cursor of the next page (None at the end)."""
        query = _filtered(select(Result), flt)
        if cursor:
            stamp, last_id = decode_cursor(cursor)
            query = query.where(or_(col(Result.created_at) < stamp,
                                    (col(Result.created_at) == stamp) & (col(Result.id) < last_id)))
        query = query.order_by(col(Result.created_at).desc(), col(Result.id).desc()).limit(limit + 1)
        with self._db.session() as session:
            rows = session.scalars(query).all()
            views = result_views(session, list(rows[:limit]))
        next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
        return views, next_cursor

    def count_by_status(self) -> dict[str, int]:
        """How many results are in each status (admin overview, queue metrics)."""
        with self._db.session() as session:
            rows = session.execute(select(col(Result.status), func.count()).group_by(col(Result.status))).all()
        return {status: int(n) for status, n in rows}

    def content(self, result_id: str, *, tenant: str | None = None) -> ResultContentView:
        """The whole original result."""
        with self._db.session() as session:
            r = _get_result(session, result_id, tenant)
            atts = attachment_meta(session, [r.id]).get(r.id, [])
        return ResultContentView(
            id=r.id, workflow_id=r.workflow_id, title=r.title, summary=r.summary, body=r.body,
            fields=list(r.fields_json), url=r.url, color=r.color, level=r.level,
            metadata=dict(r.metadata_json), attachments=atts, content=r.content, embeds=list(r.embeds_json or []),
            silent=bool(r.silent),
        )

    def attachment(self, result_id: str, index: int, *, tenant: str | None = None) -> AttachmentMeta:
        """Metadata of one attachment; ``NotFound`` if there is no such file (or not in ``tenant``)."""
        with self._db.session() as session:
            _get_result(session, result_id, tenant)
            for meta in attachment_meta(session, [result_id]).get(result_id, []):
                if meta.index == index:
                    return meta
        raise NotFound(f"{result_id}/attachments/{index}")

    def read_attachment(self, result_id: str, index: int, offset: int, length: int) -> bytes:
        """A byte range of an attachment, read in the database (never the whole blob)."""
        with self._db.session() as session:
            data = read_range(session, result_id, index, offset, length)
        if data is None:
            raise NotFound(f"{result_id}/attachments/{index}")
        return data

    def stream_attachment(self, result_id: str, index: int, size: int) -> Iterator[bytes]:
        """The attachment in 1 MiB pieces, each its own short read."""
        for offset in range(0, size, STREAM_CHUNK):
            yield self.read_attachment(result_id, index, offset, min(STREAM_CHUNK, size - offset))


def _get_result(session: Session, result_id: str, tenant: str | None) -> Result:
    """The result, or ``NotFound`` — also when it belongs to another tenant, so an id of another
    tenant answers exactly like an id that does not exist."""
    result = session.get(Result, result_id)
    if result is None or (tenant is not None and result.tenant != tenant):
        raise NotFound(result_id)
    return result


def _filtered(query: Select[Any], flt: ResultFilter) -> Select[Any]:
    if flt.tenant is not None:
        query = query.where(col(Result.tenant) == flt.tenant)
    if flt.status:
        query = query.where(col(Result.status).in_(list(flt.status)))
    if flt.workflow_id:
        query = query.where(col(Result.workflow_id) == flt.workflow_id)
    if flt.since:
        query = query.where(col(Result.created_at) >= flt.since)
    if flt.until:
        query = query.where(col(Result.created_at) < flt.until)
    if flt.destination:
        query = query.where(exists().where(
            col(Delivery.result_id) == col(Result.id), col(Delivery.generation) == col(Result.generation),
            col(Delivery.destination_key) == flt.destination,
        ))
    if flt.search:
        needle = f"%{flt.search.lower()}%"
        query = query.where(or_(func.lower(col(Result.title)).like(needle),
                                func.lower(col(Result.workflow_id)).like(needle)))
    return query


def _ensure_destination(session: Session, target: Target, now: datetime) -> None:
    values = {"key": target.key, "tenant": target.tenant, "kind": target.kind, "label": target.label, "updated_at": now}
    session.execute(dialect_insert(session,
                                   Destination).values(**values).on_conflict_do_nothing(index_elements=["key"]))


def attachment_meta(session: Session, result_ids: list[str]) -> dict[str, list[AttachmentMeta]]:
    """The files of these results, without their bytes, by result id (inside the caller's session)."""
    rows = session.execute(
        select(col(Attachment.result_id), col(Attachment.idx), col(Attachment.filename), col(Attachment.content_type),
               col(Attachment.size), col(Attachment.sha256))
        .where(col(Attachment.result_id).in_(result_ids)).order_by(col(Attachment.result_id), col(Attachment.idx))
    ).all()
    out: dict[str, list[AttachmentMeta]] = {}
    for row in rows:
        out.setdefault(row.result_id, []).append(
            AttachmentMeta(index=row.idx, filename=row.filename, content_type=row.content_type, size=row.size,
                           sha256=row.sha256)
        )
    return out


def result_views(session: Session, results: list[Result]) -> list[ResultView]:
    """These results with their current deliveries and files, as the API shows them (caller's session)."""
    if not results:
        return []
    ids = [r.id for r in results]
    generation = {r.id: r.generation for r in results}
    deliveries = [
        d for d in session.scalars(
            select(Delivery).where(col(Delivery.result_id).in_(ids)).order_by(col(Delivery.result_id),
                                                                              col(Delivery.position))
        ).all() if d.generation == generation[d.result_id]
    ]
    sent: dict[int, list[str]] = {}
    if deliveries:
        for delivery_id, message_id in session.execute(
            select(col(PlannedMessage.delivery_id), col(PlannedMessage.message_id))
            .where(col(PlannedMessage.delivery_id).in_([d.id for d in deliveries]),
                   col(PlannedMessage.message_id).is_not(None))
            .order_by(col(PlannedMessage.delivery_id), col(PlannedMessage.seq))
        ).all():
            sent.setdefault(delivery_id, []).append(message_id)
    by_result: dict[str, list[DeliveryView]] = {}
    for d in deliveries:
        by_result.setdefault(d.result_id, []).append(DeliveryView(
            id=d.id or 0, position=d.position, destination_key=d.destination_key, kind=d.kind,
            stored=d.target_json, status=d.status, attempts=d.attempts, message_ids=sent.get(d.id or 0, []),
            last_error_status=d.last_error_status, last_error_code=d.last_error_code,
            last_error_message=d.last_error_message, next_attempt_at=as_utc(d.next_attempt_at),
            delivered_at=as_utc(d.delivered_at),
        ))
    attachments = attachment_meta(session, ids)
    return [
        ResultView(
            id=r.id, tenant=r.tenant, status=r.status, workflow_id=r.workflow_id, title=r.title, mode=r.mode,
            created_at=as_utc(r.created_at), updated_at=as_utc(r.updated_at),
            generation=r.generation, deliveries=by_result.get(r.id, []), attachments=attachments.get(r.id, []),
        )
        for r in results
    ]


def _delete_results(session: Session, ids: list[str]) -> None:
    delivery_ids = select(col(Delivery.id)).where(col(Delivery.result_id).in_(ids)).scalar_subquery()
    session.execute(delete(PlannedMessage).where(col(PlannedMessage.delivery_id).in_(delivery_ids)))
    session.execute(delete(DeliveryEvent).where(col(DeliveryEvent.delivery_id).in_(delivery_ids)))
    session.execute(delete(Delivery).where(col(Delivery.result_id).in_(ids)))
    session.execute(delete(Attachment).where(col(Attachment.result_id).in_(ids)))
    session.execute(delete(ResultViewer).where(col(ResultViewer.result_id).in_(ids)))
    session.execute(delete(Result).where(col(Result.id).in_(ids)))


def retention_cutoffs(now: datetime, delivered_s: float, undelivered_s: float) -> tuple[datetime, datetime]:
    """The two ``finished_at`` limits below which results are purged."""
    return now - timedelta(seconds=delivered_s), now - timedelta(seconds=undelivered_s)


def read_range(session: Session | Connection, result_id: str, index: int, offset: int, length: int) -> bytes | None:
    """``length`` bytes of an attachment from ``offset``, cut in the database; None if it has no such file.

    The one read of attachment bytes, for downloads and for the delivery engine's multipart parts.
    """
    row = session.execute(select(col(Attachment.size), func.substr(col(Attachment.data), offset + 1, length)).where(
        col(Attachment.result_id) == result_id, col(Attachment.idx) == index)).first()
    if row is None:
        return None
    size, data = row
    if data is None:
        # Backends hand back NULL for an empty range; for any other it means the bytes are gone.
        return b"" if length <= 0 or size == 0 else None
    return bytes(data)
