"""The life of a result and its deliveries: statuses, events, and one pure transition function.

A result is sent along a *route*: one delivery per destination, all in the same *generation*
(a redelivery to a new route starts a new one). In mode ``first_success`` the deliveries take
turns — one is ``pending`` (due or scheduled), the later ones are ``waiting`` — and the first that
arrives ends the route; in mode ``all`` every delivery is pending at once and the result is
delivered when every one arrived.

``transition(route, event)`` is the whole rule book: given the current generation's statuses and
one event (a delivery starting, a message sent, a transient or permanent failure, a delivery that
arrived, a cancellation, an acknowledgement, a redelivery) it returns the statuses afterwards and
the writes that make them so. It does no I/O and knows no tables, so it is tested exhaustively
without a database; the store reads the route, calls it, and applies the writes in the same
transaction. A route whose last active delivery failed is *exhausted*: the result becomes
``undelivered`` and is kept for pickup.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Mode = Literal["first_success", "all"]


class ResultStatus(StrEnum):
    """Where a result stands: ``pending`` → ``delivering`` → ``delivered`` | ``undelivered``; any → ``picked_up``."""

    PENDING = "pending"  # accepted, no delivery started yet (or queued again by a redelivery)
    DELIVERING = "delivering"  # a delivery has started
    DELIVERED = "delivered"  # the route succeeded
    UNDELIVERED = "undelivered"  # the route is exhausted: kept for pickup
    PICKED_UP = "picked_up"  # acknowledged by a pickup client: nothing more is sent


class DeliveryStatus(StrEnum):
    """Where one delivery of the current generation stands."""

    PENDING = "pending"  # due (or scheduled for a retry); may be in flight
    WAITING = "waiting"  # mode first_success: its turn has not come
    DELIVERED = "delivered"  # every message of the result arrived
    FAILED = "failed"  # permanent failure (or retries exhausted)
    SKIPPED = "skipped"  # not needed: an earlier destination of a first_success route succeeded
    CANCELLED = "cancelled"  # stopped: the result was acknowledged or the delivery superseded


RESULT_FINISHED = frozenset({ResultStatus.DELIVERED, ResultStatus.UNDELIVERED, ResultStatus.PICKED_UP})
DELIVERY_ACTIVE = frozenset({DeliveryStatus.PENDING, DeliveryStatus.WAITING})
# A delivery that was cancelled while its request was on the wire still reports how it ended.
DELIVERY_FINISHABLE = frozenset({DeliveryStatus.PENDING, DeliveryStatus.CANCELLED})


@dataclass(frozen=True)
class Route:
    """The state ``transition`` reads: the result's status and its current generation's deliveries by position."""

    result: ResultStatus
    mode: Mode
    deliveries: tuple[DeliveryStatus, ...]
    generation: int = 1

    @classmethod
    def accepted(cls, mode: Mode, destinations: int) -> Route:
        """A result just accepted with ``destinations`` destinations."""
        return cls(ResultStatus.PENDING, mode, _fresh(mode, destinations))


# --- events --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """An attempt of the pending delivery at ``position`` begins."""

    position: int


@dataclass(frozen=True)
class MessageSent:
    """One message of the delivery at ``position`` arrived (Discord answered with its id)."""

    position: int


@dataclass(frozen=True)
class TransientFailure:
    """The delivery at ``position`` failed in a way worth retrying later."""

    position: int


@dataclass(frozen=True)
class PermanentFailure:
    """The delivery at ``position`` can never succeed (or ran out of retries): the route moves on."""

    position: int


@dataclass(frozen=True)
class Delivered:
    """Every message of the delivery at ``position`` arrived."""

    position: int


@dataclass(frozen=True)
class Cancel:
    """The delivery at ``position`` must not be sent any more; the route moves on as after a failure."""

    position: int


@dataclass(frozen=True)
class Ack:
    """A pickup client took the result."""


@dataclass(frozen=True)
class Redeliver:
    """Queue the result again.

    ``destinations`` given: a new generation to that many destinations (a new route). Omitted: a
    result that arrived is sent again in a new generation to the same destinations; one that did
    not resumes its own route, every delivery that did not arrive becoming due again in turn.
    """

    destinations: int | None = None
    mode: Mode | None = None


Event = Start | MessageSent | TransientFailure | PermanentFailure | Delivered | Cancel | Ack | Redeliver


# --- writes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetResult:
    """Give the result ``status``; ``finished`` sets (True) or clears (False) its finish time."""

    status: ResultStatus
    finished: bool | None = None


@dataclass(frozen=True)
class SetDelivery:
    """Give the delivery at ``position`` ``status``; ``due``: its next attempt is now (else none)."""

    position: int
    status: DeliveryStatus
    due: bool = False
    reset_attempts: bool = False


@dataclass(frozen=True)
class CountAttempt:
    """The delivery at ``position`` starts one more attempt."""

    position: int


@dataclass(frozen=True)
class RecordMessage:
    """Remember the message Discord now holds, so a resumed delivery never sends it again."""

    position: int


@dataclass(frozen=True)
class Reschedule:
    """Keep the delivery at ``position`` pending; its next attempt follows the retry schedule."""

    position: int


@dataclass(frozen=True)
class NewGeneration:
    """Start generation ``generation`` with deliveries of these statuses (pending ones due now)."""

    generation: int
    mode: Mode
    deliveries: tuple[DeliveryStatus, ...]


@dataclass(frozen=True)
class SetMode:
    """The result's route mode changes (a redelivery that names a mode)."""

    mode: Mode


@dataclass(frozen=True)
class ProgressDone:
    """The workflow's progress messages may show "done"."""


Write = SetResult | SetDelivery | SetMode | CountAttempt | RecordMessage | Reschedule | NewGeneration | ProgressDone


@dataclass(frozen=True)
class Transition:
    """What an event leads to: the route afterwards and the writes that make it so."""

    route: Route
    writes: tuple[Write, ...]

    @property
    def exhausted(self) -> bool:
        """The route ended without the result arriving (it is kept for pickup)."""
        return any(isinstance(w, SetResult) and w.status is ResultStatus.UNDELIVERED for w in self.writes)


class InvalidTransition(ValueError):
    """An event that cannot happen in this state (a bug in the caller, never a user error)."""


# --- the rule book -------------------------------------------------------------------------------


def transition(route: Route, event: Event) -> Transition:
    """The route after ``event``, and the writes that take the store there."""
    match event:
        case Start(position):
            return _start(route, _position(route, position))
        case MessageSent(position):
            _require(route, _position(route, position), DELIVERY_FINISHABLE, event)
            return Transition(route, (RecordMessage(position),))
        case TransientFailure(position):
            _require(route, _position(route, position), frozenset({DeliveryStatus.PENDING}), event)
            return Transition(route, (Reschedule(position),))
        case Delivered(position):
            return _finish(route, _position(route, position), DeliveryStatus.DELIVERED, event)
        case PermanentFailure(position):
            return _finish(route, _position(route, position), DeliveryStatus.FAILED, event)
        case Cancel(position):
            _require(route, _position(route, position), DELIVERY_ACTIVE, event)
            return _move_on(route, position, DeliveryStatus.CANCELLED)
        case Ack():
            cancel = tuple(SetDelivery(i, DeliveryStatus.CANCELLED)
                           for i, s in enumerate(route.deliveries) if s in DELIVERY_ACTIVE)
            return _apply_all(route, (SetResult(ResultStatus.PICKED_UP, finished=True), *cancel))
        case Redeliver(destinations, mode):
            return _redeliver(route, destinations, mode)
    raise InvalidTransition(f"unknown event {event!r}")


def apply(route: Route, writes: tuple[Write, ...]) -> Route:
    """The route the writes describe (what the store's rows hold after applying them)."""
    result, mode, deliveries, generation = route.result, route.mode, list(route.deliveries), route.generation
    for write in writes:
        match write:
            case SetResult(status):
                result = status
            case SetDelivery(position, status):
                deliveries[position] = status
            case SetMode(new_mode):
                mode = new_mode
            case NewGeneration(number, new_mode, statuses):
                generation, mode, deliveries = number, new_mode, list(statuses)
    return Route(result, mode, tuple(deliveries), generation)


def _apply_all(route: Route, writes: tuple[Write, ...]) -> Transition:
    return Transition(apply(route, writes), writes)


def _position(route: Route, position: int) -> int:
    if not 0 <= position < len(route.deliveries):
        raise InvalidTransition(f"no delivery at position {position} of {len(route.deliveries)}")
    return position


def _require(route: Route, position: int, allowed: frozenset[DeliveryStatus], event: Event) -> None:
    status = route.deliveries[position]
    if status not in allowed:
        raise InvalidTransition(f"{type(event).__name__} on a {status.value} delivery (position {position})")


def _fresh(mode: Mode, destinations: int) -> tuple[DeliveryStatus, ...]:
    if destinations < 1:
        raise InvalidTransition("a route has at least one destination")
    later = DeliveryStatus.PENDING if mode == "all" else DeliveryStatus.WAITING
    return (DeliveryStatus.PENDING, *([later] * (destinations - 1)))


def _start(route: Route, position: int) -> Transition:
    _require(route, position, frozenset({DeliveryStatus.PENDING}), Start(position))
    if route.result is ResultStatus.PICKED_UP:
        raise InvalidTransition("Start on a picked-up result")
    writes: tuple[Write, ...] = (CountAttempt(position),)
    if route.result is ResultStatus.PENDING:
        writes += (SetResult(ResultStatus.DELIVERING),)
    return _apply_all(route, writes)


def _finish(route: Route, position: int, outcome: DeliveryStatus, event: Event) -> Transition:
    _require(route, position, DELIVERY_FINISHABLE, event)
    if route.result is ResultStatus.PICKED_UP:
        # The request was on the wire when the result was acknowledged: record how it ended, move nothing.
        return _apply_all(route, (SetDelivery(position, outcome),))
    # A delivery cancelled while on the wire still counts if it arrived: the message is in Discord.
    return _move_on(route, position, outcome)


def _move_on(route: Route, position: int, outcome: DeliveryStatus) -> Transition:
    """The delivery at ``position`` ended with ``outcome``: the next turn, or the result's end."""
    writes: list[Write] = [SetDelivery(position, outcome)]
    after = list(route.deliveries)
    after[position] = outcome
    if route.mode == "first_success":
        if outcome is DeliveryStatus.DELIVERED:
            for i, status in enumerate(after):
                if status in DELIVERY_ACTIVE:
                    after[i] = DeliveryStatus.SKIPPED if status is DeliveryStatus.WAITING else DeliveryStatus.CANCELLED
                    writes.append(SetDelivery(i, after[i]))
        elif DeliveryStatus.PENDING not in after and DeliveryStatus.WAITING in after:
            turn = after.index(DeliveryStatus.WAITING)
            writes.append(SetDelivery(turn, DeliveryStatus.PENDING, due=True))
            return _apply_all(route, tuple(writes))
    if any(status in DELIVERY_ACTIVE for status in after):
        return _apply_all(route, tuple(writes))
    if route.mode == "first_success":
        arrived = DeliveryStatus.DELIVERED in after
    else:
        arrived = all(status in (DeliveryStatus.DELIVERED, DeliveryStatus.SKIPPED) for status in after)
    end = ResultStatus.DELIVERED if arrived else ResultStatus.UNDELIVERED
    if end is not route.result:
        writes.append(SetResult(end, finished=True))
        if arrived:
            writes.append(ProgressDone())
    return _apply_all(route, tuple(writes))


def _redeliver(route: Route, destinations: int | None, mode: Mode | None) -> Transition:
    mode = mode or route.mode
    if destinations is None and route.result in (ResultStatus.DELIVERED, ResultStatus.PICKED_UP):
        destinations = len(route.deliveries)  # an explicit resend of something that arrived
    if destinations is not None:
        cancel = tuple(SetDelivery(i, DeliveryStatus.CANCELLED)
                       for i, s in enumerate(route.deliveries) if s in DELIVERY_ACTIVE)
        fresh = NewGeneration(route.generation + 1, mode, _fresh(mode, destinations))
        return _apply_all(route, (*cancel, fresh, SetResult(ResultStatus.PENDING, finished=False)))
    # Resume: what did not arrive becomes due again, in turn; sent-message marks are kept.
    writes: list[Write] = [SetMode(mode)] if mode != route.mode else []
    turn_taken = False
    for i, status in enumerate(route.deliveries):
        if status is DeliveryStatus.DELIVERED:
            continue
        first = mode == "all" or not turn_taken
        turn_taken = True
        writes.append(SetDelivery(i, DeliveryStatus.PENDING if first else DeliveryStatus.WAITING, due=first,
                                  reset_attempts=True))
    writes.append(SetResult(ResultStatus.PENDING, finished=False))
    return _apply_all(route, tuple(writes))
