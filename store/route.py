"""Where the store meets the state machine: read a result's route, apply what ``transition`` returns.

Every change of a result's or a delivery's status goes through :func:`advance` (or its pieces):
the route of the current generation is read inside the caller's transaction (the result row
locked first on PostgreSQL, so two deliveries of one result finishing at once see each other),
:func:`schemas.lifecycle.transition` decides, and the writes are applied to the same rows.

Core statements, not ORM objects: this runs at least twice per delivered message, and the writes
of one transition collapse into one UPDATE per row touched (measured: the ORM's unit of work and
its flushes were a fifth of the delivery engine's CPU). The statements are built once, with bound
parameters (an UPDATE's SET list is the parameters' column names): building a statement and its
cache key on every call cost more than SQLite running it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, insert, select, update

from schemas.lifecycle import (
    CountAttempt,
    DeliveryStatus,
    Event,
    NewGeneration,
    ProgressDone,
    ResultStatus,
    Route,
    SetDelivery,
    SetMode,
    SetResult,
    Transition,
    transition,
)
from schemas.tables import Delivery, DeliveryEvent, ProgressMessage, Result
from store.session import table_of

RESULTS = table_of(Result)
DELIVERIES = table_of(Delivery)
EVENTS = table_of(DeliveryEvent)
PROGRESS = table_of(ProgressMessage)

#: The columns of a delivery the route and its callers read.
_ROUTE = (select(DELIVERIES.c.id, DELIVERIES.c.position, DELIVERIES.c.status, DELIVERIES.c.destination_key,
                 DELIVERIES.c.kind, DELIVERIES.c.target_json)
          .where(DELIVERIES.c.result_id == bindparam("b_result"), DELIVERIES.c.generation == bindparam("b_generation"))
          .order_by(DELIVERIES.c.position))
#: ``conn.execute(UPDATE_DELIVERY, {"b_id": id, **columns})``: one row's columns, SET from the parameters.
UPDATE_DELIVERY = update(DELIVERIES).where(DELIVERIES.c.id == bindparam("b_id"))
_COUNT_ATTEMPT = UPDATE_DELIVERY.values(
    attempts=DELIVERIES.c.attempts + 1, updated_at=bindparam("b_now"),
    first_attempt_at=func.coalesce(DELIVERIES.c.first_attempt_at, bindparam("b_now")))
UPDATE_RESULT = update(RESULTS).where(RESULTS.c.id == bindparam("b_id"))
INSERT_EVENT = insert(EVENTS)
_PROGRESS_DONE = (update(PROGRESS).where(PROGRESS.c.workflow_id == bindparam("b_workflow"), PROGRESS.c.done.is_(False))
                  .values(done=True, version=PROGRESS.c.version + 1, next_attempt_at=None,
                          updated_at=bindparam("b_now")))


@dataclass
class RouteRows:
    """A result's route as stored: its status, mode, generation and the generation's deliveries by position."""

    result_id: str
    status: str
    mode: str
    generation: int
    workflow_id: str | None
    deliveries: Sequence[Any]  # Core rows: id, position, status, destination_key, kind, target_json
    # False when the caller read, in this transaction, that the workflow has no open progress message
    # (then a ``ProgressDone`` has nothing to close and writes nothing).
    open_progress: bool = True

    @property
    def route(self) -> Route:
        """The state machine's view of these rows."""
        return Route(ResultStatus(self.status), self.mode,  # type: ignore[arg-type]
                     tuple(DeliveryStatus(d.status) for d in self.deliveries), self.generation)


def load_route(conn: Connection, result: Any) -> RouteRows:
    """The current generation's deliveries of ``result`` (positions 0..n-1, in order).

    ``result`` is anything with the result's ``id``, ``status``, ``mode``, ``generation`` and
    ``workflow_id`` (an ORM row or a Core row), read in this transaction.
    """
    rows = conn.execute(_ROUTE, {"b_result": result.id, "b_generation": result.generation}).all()
    if [d.position for d in rows] != list(range(len(rows))):
        raise ValueError(f"result {result.id}: delivery positions {[d.position for d in rows]} are not 0..n-1")
    return RouteRows(result.id, result.status, result.mode, result.generation, result.workflow_id, rows)


class RouteDelivery(NamedTuple):
    """A delivery as a route holds it (the columns of ``_ROUTE``)."""

    id: int
    position: int
    status: str
    destination_key: str
    kind: str
    target_json: Any


def lone_route(result: Any, delivery: Any) -> RouteRows:
    """The route of a result whose generation has this one delivery (at position 0), from rows the
    caller read already: what :func:`load_route` would read, without the query."""
    only = RouteDelivery(delivery.id, delivery.position, delivery.status, delivery.destination_key, delivery.kind,
                         delivery.target_json)
    return RouteRows(result.id, result.status, result.mode, result.generation, result.workflow_id, [only])


# Adds the delivery rows of a new generation (the caller knows the destinations).
GenerationMaker = Callable[[NewGeneration], None]


def advance(conn: Connection, rows: RouteRows, event: Event, now: datetime, *,
            new_generation: GenerationMaker | None = None,
            also: dict[int, dict[str, Any]] | None = None) -> Transition:
    """Decide ``event`` on the rows' route and apply the writes; the transition (for its writes).

    ``InvalidTransition`` leaves before anything is written. ``also``: see :func:`apply_writes`.
    """
    done = transition(rows.route, event)
    apply_writes(conn, rows, done.writes, now, new_generation=new_generation, also=also)
    return done


def apply_writes(conn: Connection, rows: RouteRows, writes: Sequence[object], now: datetime, *,
                 new_generation: GenerationMaker | None = None,
                 also: dict[int, dict[str, Any]] | None = None) -> None:
    """Make the rows say what ``writes`` say, one UPDATE per row touched. ``RecordMessage`` and
    ``Reschedule`` carry data the state machine does not hold (the message id, the retry time):
    their callers write them, or pass them as ``also`` (more columns of the delivery at a position,
    written in the same UPDATE). ``rows`` is updated to match (status, mode, generation)."""
    result: dict[str, Any] = {}
    changed: dict[int, dict[str, Any]] = {position: dict(values) for position, values in (also or {}).items()}
    events: list[dict[str, Any]] = []
    counted: list[int] = []
    for write in writes:
        match write:
            case SetResult(status, finished):
                result["status"] = rows.status = status.value
                if finished is not None:
                    result["finished_at"] = now if finished else None
            case SetMode(mode):
                result["mode"] = rows.mode = mode
            case SetDelivery(position, status, due, reset_attempts):
                values = changed.setdefault(position, {})
                values.update(status=status.value, updated_at=now)
                if due:
                    values["next_attempt_at"] = now
                elif status is not DeliveryStatus.PENDING:
                    values["next_attempt_at"] = None
                if reset_attempts:
                    values.update(attempts=0, first_attempt_at=None, last_error_status=None, last_error_code=None,
                                  last_error_message=None)
                    events.append({"delivery_id": rows.deliveries[position].id, "at": now,
                                   "outcome": "redeliver_requested"})
            case CountAttempt(position):
                counted.append(position)
            case NewGeneration():
                if new_generation is None:
                    raise ValueError("a new generation needs its destinations")
                result.update(generation=write.generation, mode=write.mode)
                rows.generation, rows.mode = write.generation, write.mode
                new_generation(write)
            case ProgressDone():
                if rows.open_progress:
                    progress_done(conn, rows.workflow_id, now)
    if result:
        conn.execute(UPDATE_RESULT, {"b_id": rows.result_id, **result, "updated_at": now})
    for position, values in changed.items():
        conn.execute(UPDATE_DELIVERY, {"b_id": rows.deliveries[position].id, **values})
    for position in counted:  # in SQL: a redelivery's reset committed meanwhile is counted from, not undone
        conn.execute(_COUNT_ATTEMPT, {"b_id": rows.deliveries[position].id, "b_now": now})
    if events:
        conn.execute(INSERT_EVENT, events)


def progress_done(conn: Connection, workflow_id: str | None, now: datetime) -> None:
    """The workflow's result arrived: its progress messages turn into "done" at the next edit."""
    if workflow_id:
        conn.execute(_PROGRESS_DONE, {"b_workflow": workflow_id, "b_now": now})
