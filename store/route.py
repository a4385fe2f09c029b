"""Where the store meets the state machine: read a result's route, apply what ``transition`` returns.

Every change of a result's or a delivery's status goes through :func:`advance` (or its pieces):
the route of the current generation is read inside the caller's transaction (the result row
locked first on PostgreSQL, so two deliveries of one result finishing at once see each other),
:func:`schemas.lifecycle.transition` decides, and the writes are applied to the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlmodel import Session, col

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


@dataclass
class RouteRows:
    """A result's row and its current generation's delivery rows, by position."""

    result: Result
    deliveries: list[Delivery]

    @property
    def route(self) -> Route:
        """The state machine's view of these rows."""
        return Route(ResultStatus(self.result.status), self.result.mode,  # type: ignore[arg-type]
                     tuple(DeliveryStatus(d.status) for d in self.deliveries), self.result.generation)


def load_route(session: Session, result: Result) -> RouteRows:
    """The current generation's deliveries of ``result`` (positions 0..n-1, in order)."""
    rows = list(session.scalars(select(Delivery).where(
        col(col(Delivery.result_id)) == result.id, col(col(Delivery.generation)) == result.generation)
        .order_by(col(col(Delivery.position)))))
    if [d.position for d in rows] != list(range(len(rows))):
        raise ValueError(f"result {result.id}: delivery positions {[d.position for d in rows]} are not 0..n-1")
    return RouteRows(result, rows)


# Adds the delivery rows of a new generation (the caller knows the destinations).
GenerationMaker = Callable[[Session, Result, NewGeneration], None]


def advance(session: Session, rows: RouteRows, event: Event, now: datetime, *,
            new_generation: GenerationMaker | None = None) -> Transition:
    """Decide ``event`` on the rows' route and apply the writes; the transition (for its writes)."""
    done = transition(rows.route, event)
    apply_writes(session, rows, done.writes, now, new_generation=new_generation)
    return done


def apply_writes(session: Session, rows: RouteRows, writes: Sequence[object], now: datetime, *,
                 new_generation: GenerationMaker | None = None) -> None:
    """Make the rows say what ``writes`` say. ``RecordMessage`` and ``Reschedule`` carry data the
    state machine does not hold (the message id, the retry time): their callers write them."""
    result = rows.result
    touched = False
    for write in writes:
        touched = touched or isinstance(write, SetResult | SetMode | NewGeneration)
        match write:
            case SetResult(status, finished):
                result.status = status.value
                if finished is not None:
                    result.finished_at = now if finished else None
            case SetMode(mode):
                result.mode = mode
            case SetDelivery(position, status, due, reset_attempts):
                d = rows.deliveries[position]
                d.status, d.updated_at = status.value, now
                d.next_attempt_at = now if due else (d.next_attempt_at if status is DeliveryStatus.PENDING else None)
                if reset_attempts:
                    d.attempts, d.first_attempt_at = 0, None
                    d.last_error_status = d.last_error_code = None
                    d.last_error_message = None
                    session.add(DeliveryEvent(delivery_id=d.id or 0, at=now, outcome="redeliver_requested"))
            case CountAttempt(position):
                d = rows.deliveries[position]
                d.attempts += 1
                d.first_attempt_at = d.first_attempt_at or now
                d.updated_at = now
            case NewGeneration():
                if new_generation is None:
                    raise ValueError("a new generation needs its destinations")
                result.generation = write.generation
                result.mode = write.mode
                new_generation(session, result, write)
            case ProgressDone():
                progress_done(session, result.workflow_id, now)
    if touched:
        result.updated_at = now


def progress_done(session: Session, workflow_id: str | None, now: datetime) -> None:
    """The workflow's result arrived: its progress messages turn into "done" at the next edit."""
    if workflow_id:
        session.execute(update(ProgressMessage).where(col(col(ProgressMessage.workflow_id)) == workflow_id,
                                                      col(col(ProgressMessage.done)).is_(False))
                        .values(done=True, version=col(ProgressMessage.version) + 1, next_attempt_at=None,
                                updated_at=now))
