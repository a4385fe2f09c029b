"""``AdminStore``: the queries only the admin page needs, beside ``ResultStore``.

Everything here is one short transaction returning frozen dataclasses. Destination labels come
from ``app.destinations.destination_label`` (masked) so no token ever reaches a template.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, select, update
from sqlmodel import col

from schemas.tables import AdminSessionRecord, ConfigEntry, Delivery, DeliveryEvent, Destination, Result
from schemas.targets import destination_label
from store.errors import NotFound
from store.results import ResultStore
from store.session import Database, Store, as_utc, utcnow
from store.views import ResultContentView, ResultFilter, ResultView

ADMIN_TOKEN_KEY = "admin_token_sha256"
CHART_HOURS = 24
# A destination that was disabled (webhook deleted) or expired is a failure to whoever reads the chart.
FAILED_OUTCOMES = ("failed", "disabled", "expired")


@dataclass(frozen=True)
class EventView:
    """One row of a delivery's timeline."""

    at: datetime
    outcome: str
    http_status: int | None
    discord_code: int | None
    message: str | None
    retry_at: datetime | None


@dataclass(frozen=True)
class DeliveryTimeline:
    """A delivery (any generation) with its events, oldest first."""

    id: int
    generation: int
    position: int
    kind: str
    label: str
    status: str
    attempts: int
    destination_disabled: bool
    events: list[EventView]


@dataclass(frozen=True)
class DestinationView:
    """A destination as the destinations page lists it (label already masked at ingest)."""

    key: str
    tenant: str
    kind: str
    label: str
    disabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    updated_at: datetime
    channel_id: str | None = None  # the webhook's Discord channel and guild, once learned
    guild_id: str | None = None


@dataclass(frozen=True)
class HourBucket:
    """Deliveries and failures recorded in one hour of the chart."""

    start: datetime
    delivered: int
    failed: int


@dataclass(frozen=True)
class Dashboard:
    """The default page: counts by status, the 24-hour chart data and one page of results."""

    counts: dict[str, int]
    hours: list[HourBucket]
    items: list[ResultView]
    next_cursor: str | None


@dataclass(frozen=True)
class ResultDetail:
    """Everything the detail page shows of one result."""

    view: ResultView
    content: ResultContentView
    timeline: list[DeliveryTimeline]


def _destination_view(row: Destination) -> DestinationView:
    return DestinationView(key=row.key, tenant=row.tenant, kind=row.kind, label=row.label or row.key,
                           disabled=row.disabled, disabled_reason=row.disabled_reason,
                           disabled_at=as_utc(row.disabled_at), updated_at=as_utc(row.updated_at),
                           channel_id=row.channel_id, guild_id=row.guild_id)


class AdminStore(Store):
    """Reads and writes of the admin page that ``ResultStore`` has no reason to know."""

    def __init__(self, db: Database, results: ResultStore) -> None:
        super().__init__(db)
        self._results = results

    # --- the admin credential --------------------------------------------------------------------

    def admin_token_hash(self) -> str | None:
        """The stored sha256 of the generated admin token, if one was generated."""
        with self._db.session() as session:
            row = session.get(ConfigEntry, ADMIN_TOKEN_KEY)
            return row.value if row else None

    def store_admin_token_hash(self, digest: str) -> bool:
        """Keep ``digest`` unless a replica stored one first; True when this call stored it."""
        with self._db.session(write=True) as session:
            done = session.execute(
                self._insert(ConfigEntry).values(key=ADMIN_TOKEN_KEY, value=digest, updated_at=utcnow())
                .on_conflict_do_nothing(index_elements=["key"])
            )
            return bool(done.rowcount)  # type: ignore[attr-defined]

    # --- admin sessions --------------------------------------------------------------------------

    def start_session(self, session_digest: str, *, credential: str, expires_at: datetime) -> None:
        """Record a new session (and forget expired ones, so the table stays as small as the logins)."""
        now = utcnow()
        with self._db.session(write=True) as session:
            session.execute(delete(AdminSessionRecord).where(col(AdminSessionRecord.expires_at) < now))
            session.add(AdminSessionRecord(id=session_digest, credential=credential, created_at=now,
                                           expires_at=expires_at))

    def session_alive(self, session_digest: str, *, credential: str) -> bool:
        """True while the session exists, has not expired and belongs to the credential in force."""
        with self._db.session() as session:
            row = session.get(AdminSessionRecord, session_digest)
        return (row is not None and hmac.compare_digest(row.credential, credential)
                and as_utc(row.expires_at) > utcnow())

    def end_session(self, session_digest: str) -> None:
        """Logout: the session is gone for every replica at once."""
        with self._db.session(write=True) as session:
            session.execute(delete(AdminSessionRecord).where(col(AdminSessionRecord.id) == session_digest))

    # --- results ---------------------------------------------------------------------------------

    def timeline(self, result_id: str) -> list[DeliveryTimeline]:
        """Every delivery of a result, newest generation first, each with its events oldest first."""
        with self._db.session() as session:
            if session.get(Result, result_id) is None:
                raise NotFound(result_id)
            deliveries = session.scalars(
                select(Delivery).where(col(Delivery.result_id) == result_id)
                .order_by(col(Delivery.generation).desc(), col(Delivery.position))
            ).all()
            ids = [d.id for d in deliveries]
            keys = {d.destination_key for d in deliveries}
            disabled = set(session.scalars(
                select(col(Destination.key)).where(col(Destination.key).in_(keys), col(Destination.disabled).is_(True))
            ).all()) if keys else set()
            events: dict[int, list[EventView]] = {}
            if ids:
                for ev in session.scalars(
                    select(DeliveryEvent).where(col(DeliveryEvent.delivery_id).in_(ids))
                    .order_by(col(DeliveryEvent.at), col(DeliveryEvent.id))
                ).all():
                    events.setdefault(ev.delivery_id, []).append(EventView(
                        at=as_utc(ev.at), outcome=ev.outcome, http_status=ev.http_status,
                        discord_code=ev.discord_code, message=ev.message, retry_at=as_utc(ev.retry_at)))
        return [
            DeliveryTimeline(id=d.id or 0, generation=d.generation, position=d.position, kind=d.kind,
                             label=destination_label(d.kind, d.target_json), status=d.status, attempts=d.attempts,
                             destination_disabled=d.destination_key in disabled, events=events.get(d.id or 0, []))
            for d in deliveries
        ]

    def dashboard(self, flt: ResultFilter, *, cursor: str | None, limit: int = 50) -> Dashboard:
        """Overview and one page of the list (``ValueError`` for a cursor this relay did not issue)."""
        items, next_cursor = self._results.list(flt, cursor=cursor, limit=limit)
        return Dashboard(counts=self._results.count_by_status(), hours=self.hourly_outcomes(), items=items,
                         next_cursor=next_cursor)

    def detail(self, result_id: str) -> ResultDetail:
        """A result, its original content and every delivery's timeline."""
        return ResultDetail(view=self._results.get(result_id), content=self._results.content(result_id),
                            timeline=self.timeline(result_id))

    def redeliver_ids(self, ids: Sequence[str]) -> list[str]:
        """Queue each result again on its own route; ids that vanished meanwhile are skipped."""
        done = []
        for result_id in ids:
            try:
                self._results.redeliver(result_id)
            except NotFound:
                continue
            done.append(result_id)
        return done

    # --- destinations ----------------------------------------------------------------------------

    def destinations(self, *, disabled_only: bool = False, tenant: str | None = None,
                     limit: int = 500) -> list[DestinationView]:
        """Destinations (of ``tenant``, or of all), disabled ones first, then the most recently touched."""
        query = select(Destination)
        if tenant is not None:
            query = query.where(col(Destination.tenant) == tenant)
        if disabled_only:
            query = query.where(col(Destination.disabled).is_(True))
        query = query.order_by(col(Destination.disabled).desc(), col(Destination.updated_at).desc(),
                               col(Destination.key))
        with self._db.session() as session:
            rows = session.scalars(query.limit(limit)).all()
        return [_destination_view(r) for r in rows]

    def reenable(self, key: str, *, tenant: str | None = None) -> DestinationView | None:
        """Clear a destination's disabled flag and reason; its record afterwards, None when no such destination.

        The record is read back by its key in the same transaction: a lookup in a listing would miss a
        destination beyond the listing's first page.
        """
        query = update(Destination).where(col(Destination.key) == key)
        if tenant is not None:
            query = query.where(col(Destination.tenant) == tenant)
        with self._db.session(write=True) as session:
            done = session.execute(
                query
                .values(disabled=False, disabled_reason=None, disabled_at=None, updated_at=utcnow())
            )
            if not done.rowcount:  # type: ignore[attr-defined]
                return None
            return _destination_view(session.get_one(Destination, key))

    # --- overview --------------------------------------------------------------------------------

    def hourly_outcomes(self, *, now: datetime | None = None, hours: int = CHART_HOURS) -> list[HourBucket]:
        """Delivered and failed (incl. disabled, expired) events per hour over the last ``hours`` hours.

        One aggregate query with a ``CASE`` per hour keeps it portable (SQLite and PostgreSQL
        truncate dates differently) and sends back 2 × ``hours`` numbers instead of every event.
        """
        end = (now or utcnow()).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        starts = [end - timedelta(hours=hours - i) for i in range(hours)]
        columns = []
        for start in starts:
            in_hour = (col(DeliveryEvent.at) >= start) & (col(DeliveryEvent.at) < start + timedelta(hours=1))
            for outcomes in (("delivered",), FAILED_OUTCOMES):
                hit = in_hour & col(DeliveryEvent.outcome).in_(outcomes)
                columns.append(func.coalesce(func.sum(case((hit, 1), else_=0)), 0))
        query = select(*columns).where(col(DeliveryEvent.at) >= starts[0],
                                       col(DeliveryEvent.outcome).in_(("delivered", *FAILED_OUTCOMES)))
        with self._db.session() as session:
            row = session.execute(query).one()
        return [HourBucket(start=start, delivered=int(row[2 * i]), failed=int(row[2 * i + 1]))
                for i, start in enumerate(starts)]
