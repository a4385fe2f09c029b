"""The result/delivery state machine, without a database: a transition table, every reachable state, and
a hypothesis state machine.

The exhaustive part walks every state reachable from a freshly accepted result (routes of one to three
destinations, both modes, up to three generations) under every event, and checks at each step that
the writes describe the new state exactly and that the invariants the store and the admin page rely
on hold.
"""

from __future__ import annotations

from collections import deque
from typing import get_args

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from schemas import api
from schemas.lifecycle import (
    DELIVERY_ACTIVE,
    RESULT_FINISHED,
    Ack,
    Cancel,
    CountAttempt,
    Delivered,
    DeliveryStatus,
    Event,
    InvalidTransition,
    MessageSent,
    Mode,
    NewGeneration,
    PermanentFailure,
    ProgressDone,
    RecordMessage,
    Redeliver,
    Reschedule,
    ResultStatus,
    Route,
    SetDelivery,
    SetMode,
    SetResult,
    Start,
    TransientFailure,
    apply,
    transition,
)

P, W, D, F, S, C = (DeliveryStatus.PENDING, DeliveryStatus.WAITING, DeliveryStatus.DELIVERED,
                    DeliveryStatus.FAILED, DeliveryStatus.SKIPPED, DeliveryStatus.CANCELLED)
R = ResultStatus
MODES: tuple[Mode, ...] = ("first_success", "all")


def check_invariants(route: Route) -> None:
    """What must hold of every state the machine can reach."""
    statuses = route.deliveries
    active = [s for s in statuses if s in DELIVERY_ACTIVE]
    if route.result in RESULT_FINISHED:
        assert not active, route  # a finished result sends nothing more
    else:
        assert P in statuses, route  # an unfinished result always has a delivery that will move it on
    if route.mode == "first_success":
        assert statuses.count(P) <= 1, route  # one turn at a time
        if P in statuses:
            assert all(i > statuses.index(P) for i, s in enumerate(statuses) if s is W), route
    else:
        assert W not in statuses, route
    if route.result is R.DELIVERED:
        if route.mode == "first_success":
            assert D in statuses, route
        else:
            assert all(s in (D, S) for s in statuses), route
    if route.result is R.UNDELIVERED:
        if route.mode == "first_success":
            assert D not in statuses, route
        else:
            assert not all(s in (D, S) for s in statuses), route


def events_for(route: Route) -> list[Event]:
    """Every event, at every position, including the ones that cannot happen in this state."""
    n = len(route.deliveries)
    kinds = (Start, MessageSent, TransientFailure, PermanentFailure, Delivered, Cancel)
    events: list[Event] = [kind(i) for kind in kinds for i in range(n)]
    events += [Ack(), Redeliver(), Redeliver(1), Redeliver(2), Redeliver(mode="all"),
               Redeliver(mode="first_success"), Redeliver(3, mode="all")]
    return events


def check_step(route: Route, event: Event) -> Route | None:
    """One event: refused, or a transition whose writes describe its new state; the new state."""
    try:
        done = transition(route, event)
    except InvalidTransition:
        return None
    assert apply(route, done.writes) == done.route
    check_invariants(done.route)
    delivered_now = any(isinstance(w, SetResult) and w.status is R.DELIVERED for w in done.writes)
    assert delivered_now == any(isinstance(w, ProgressDone) for w in done.writes)
    assert done.exhausted == (done.route.result is R.UNDELIVERED and route.result is not R.UNDELIVERED)
    return done.route


def test_every_reachable_state_under_every_event() -> None:
    start = [Route.accepted(mode, n) for mode in MODES for n in (1, 2, 3)]
    seen: set[Route] = set(start)
    todo = deque(start)
    steps = refused = 0
    while todo:
        route = todo.popleft()
        check_invariants(route)
        for event in events_for(route):
            after = check_step(route, event)
            steps += 1
            if after is None:
                refused += 1
            elif after.generation <= 3 and after not in seen:
                seen.add(after)
                todo.append(after)
    # Not vacuous: many states and steps, and both accepted and refused events.
    assert len(seen) > 300 and steps > 5000 and 0 < refused < steps


def test_every_unfinished_state_finishes_when_its_deliveries_end() -> None:
    """Liveness: delivering or failing whatever is pending ends any route within its length."""
    for mode in MODES:
        for n in (1, 2, 3):
            for outcome in (Delivered, PermanentFailure):
                route = Route.accepted(mode, n)
                for _ in range(n):
                    if route.result in RESULT_FINISHED:
                        break
                    pending = route.deliveries.index(P)
                    route = transition(transition(route, Start(pending)).route, outcome(pending)).route
                    if mode == "all":
                        for i in [i for i, s in enumerate(route.deliveries) if s is P]:
                            route = transition(route, outcome(i)).route
                assert route.result is (R.DELIVERED if outcome is Delivered else R.UNDELIVERED)


# --- the transition table, case by case ----------------------------------------------------------

FS2 = Route(R.PENDING, "first_success", (P, W))
FS3 = Route(R.DELIVERING, "first_success", (P, W, W))
ALL2 = Route(R.DELIVERING, "all", (P, P))

TABLE: list[tuple[Route, Event, Route, tuple[object, ...]]] = [
    # start: the first attempt moves the result to delivering, later ones only count
    (FS2, Start(0), Route(R.DELIVERING, "first_success", (P, W)), (CountAttempt(0), SetResult(R.DELIVERING))),
    (FS3, Start(0), FS3, (CountAttempt(0),)),
    # a message sent and a transient failure change no status
    (FS3, MessageSent(0), FS3, (RecordMessage(0),)),
    (FS3, TransientFailure(0), FS3, (Reschedule(0),)),
    # first_success: arrived → the rest skipped; failed → the next one's turn, due now
    (FS3, Delivered(0), Route(R.DELIVERED, "first_success", (D, S, S)),
     (SetDelivery(0, D), SetDelivery(1, S), SetDelivery(2, S), SetResult(R.DELIVERED, finished=True), ProgressDone())),
    (FS3, PermanentFailure(0), Route(R.DELIVERING, "first_success", (F, P, W)),
     (SetDelivery(0, F), SetDelivery(1, P, due=True))),
    # the route exhausted: the result is undelivered, kept for pickup
    (Route(R.DELIVERING, "first_success", (F, F, P)), PermanentFailure(2),
     Route(R.UNDELIVERED, "first_success", (F, F, F)), (SetDelivery(2, F), SetResult(R.UNDELIVERED, finished=True))),
    # all: delivered once every delivery arrived; undelivered if any failed
    (ALL2, Delivered(1), Route(R.DELIVERING, "all", (P, D)), (SetDelivery(1, D),)),
    (Route(R.DELIVERING, "all", (P, D)), Delivered(0), Route(R.DELIVERED, "all", (D, D)),
     (SetDelivery(0, D), SetResult(R.DELIVERED, finished=True), ProgressDone())),
    (Route(R.DELIVERING, "all", (P, D)), PermanentFailure(0), Route(R.UNDELIVERED, "all", (F, D)),
     (SetDelivery(0, F), SetResult(R.UNDELIVERED, finished=True))),
    # ack: picked up, everything not yet sent cancelled
    (FS3, Ack(), Route(R.PICKED_UP, "first_success", (C, C, C)),
     (SetResult(R.PICKED_UP, finished=True), SetDelivery(0, C), SetDelivery(1, C), SetDelivery(2, C))),
    # a delivery on the wire when the result was acknowledged records how it ended, and moves nothing
    (Route(R.PICKED_UP, "first_success", (C, C)), Delivered(0), Route(R.PICKED_UP, "first_success", (D, C)),
     (SetDelivery(0, D),)),
    # a delivery cancelled while on the wire that still arrived: the result did arrive
    (Route(R.UNDELIVERED, "first_success", (C,)), Delivered(0), Route(R.DELIVERED, "first_success", (D,)),
     (SetDelivery(0, D), SetResult(R.DELIVERED, finished=True), ProgressDone())),
    (Route(R.DELIVERING, "first_success", (C, P, W)), Delivered(0), Route(R.DELIVERED, "first_success", (D, C, S)),
     (SetDelivery(0, D), SetDelivery(1, C), SetDelivery(2, S), SetResult(R.DELIVERED, finished=True), ProgressDone())),
    (Route(R.UNDELIVERED, "all", (C, D)), PermanentFailure(0), Route(R.UNDELIVERED, "all", (F, D)),
     (SetDelivery(0, F),)),
    # cancel: one delivery stopped; the route moves on as after a failure
    (ALL2, Cancel(0), Route(R.DELIVERING, "all", (C, P)), (SetDelivery(0, C),)),
    (FS2, Cancel(0), Route(R.PENDING, "first_success", (C, P)), (SetDelivery(0, C), SetDelivery(1, P, due=True))),
    (FS2, Cancel(1), Route(R.PENDING, "first_success", (P, C)), (SetDelivery(1, C),)),
    (Route(R.DELIVERING, "all", (P, D)), Cancel(0), Route(R.UNDELIVERED, "all", (C, D)),
     (SetDelivery(0, C), SetResult(R.UNDELIVERED, finished=True))),
    # redeliver without a route: resume what did not arrive, in turn
    (Route(R.UNDELIVERED, "first_success", (F, F, F)), Redeliver(), Route(R.PENDING, "first_success", (P, W, W)),
     (SetDelivery(0, P, due=True, reset_attempts=True), SetDelivery(1, W, reset_attempts=True),
      SetDelivery(2, W, reset_attempts=True), SetResult(R.PENDING, finished=False))),
    (Route(R.UNDELIVERED, "all", (D, F)), Redeliver(), Route(R.PENDING, "all", (D, P)),
     (SetDelivery(1, P, due=True, reset_attempts=True), SetResult(R.PENDING, finished=False))),
    (Route(R.UNDELIVERED, "first_success", (F, F)), Redeliver(mode="all"), Route(R.PENDING, "all", (P, P)),
     (SetMode("all"), SetDelivery(0, P, due=True, reset_attempts=True),
      SetDelivery(1, P, due=True, reset_attempts=True), SetResult(R.PENDING, finished=False))),
    # redeliver of what arrived: a fresh generation to the same destinations
    (Route(R.DELIVERED, "first_success", (D, S)), Redeliver(), Route(R.PENDING, "first_success", (P, W), 2),
     (NewGeneration(2, "first_success", (P, W)), SetResult(R.PENDING, finished=False))),
    # redeliver to a new route: what was still to be sent is cancelled, a new generation starts
    (FS3, Redeliver(1, mode="all"), Route(R.PENDING, "all", (P,), 2),
     (SetDelivery(0, C), SetDelivery(1, C), SetDelivery(2, C), NewGeneration(2, "all", (P,)),
      SetResult(R.PENDING, finished=False))),
]


@pytest.mark.parametrize(("before", "event", "after", "writes"), TABLE)
def test_transition_table(before: Route, event: Event, after: Route, writes: tuple[object, ...]) -> None:
    done = transition(before, event)
    assert done.route == after
    assert done.writes == writes


@pytest.mark.parametrize(("route", "event"), [
    (FS3, Start(1)),  # a waiting delivery does not start before its turn
    (FS3, Delivered(1)), (FS3, PermanentFailure(2)), (FS3, TransientFailure(1)),
    (Route(R.DELIVERED, "first_success", (D, S)), Delivered(0)),  # never finished twice
    (Route(R.DELIVERED, "first_success", (D, S)), Cancel(1)),
    (Route(R.PICKED_UP, "all", (C, C)), Start(0)),
    (FS3, Start(3)), (FS3, Delivered(-1)),  # no such position
    (FS3, Redeliver(0)),  # a route has at least one destination
])
def test_impossible_events_are_refused(route: Route, event: Event) -> None:
    with pytest.raises(InvalidTransition):
        transition(route, event)


# --- hypothesis: long random histories -----------------------------------------------------------


class Lifecycle(RuleBasedStateMachine):
    """Random histories of one result; every step is checked like the exhaustive walk's."""

    def __init__(self) -> None:
        super().__init__()
        self.route = Route.accepted("first_success", 1)
        self.finished_once = False

    @rule(mode=st.sampled_from(MODES), n=st.integers(1, 6))
    def accept(self, mode: Mode, n: int) -> None:
        self.route = Route.accepted(mode, n)

    @rule(data=st.data())
    def event(self, data: st.DataObject) -> None:
        event = data.draw(st.sampled_from(events_for(self.route)))
        after = check_step(self.route, event)
        if after is not None:
            if after.result in RESULT_FINISHED:
                self.finished_once = True
            self.route = after

    @precondition(lambda self: P in self.route.deliveries)
    @rule(data=st.data(), arrive=st.booleans())
    def finish_a_pending_delivery(self, data: st.DataObject, arrive: bool) -> None:
        pending = [i for i, s in enumerate(self.route.deliveries) if s is P]
        position = data.draw(st.sampled_from(pending))
        after = check_step(self.route, Delivered(position) if arrive else PermanentFailure(position))
        assert after is not None
        self.route = after

    @invariant()
    def holds(self) -> None:
        check_invariants(self.route)


TestLifecycle = Lifecycle.TestCase


def test_the_wire_contract_names_the_same_result_statuses() -> None:
    """``schemas.api.ResultStatus`` (the OpenAPI enum) is the lifecycle's, value for value."""
    assert get_args(api.ResultStatus) == tuple(status.value for status in ResultStatus)
