"""Supervised loops: survive every error, count it, back off (bounded), end only on stop; the monitor."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delivery import metrics
from delivery.supervise import BACKOFF_CAP_S, LoopMonitor, backoff_delay, supervise
from store.errors import StoreUnavailable


def _errors(loop: str) -> float:
    return metrics.LOOP_ERRORS.labels(loop=loop)._value.get()


@given(st.integers(min_value=1, max_value=10_000), st.integers(min_value=0, max_value=2**32))
def test_backoff_grows_is_jittered_and_never_exceeds_the_cap(failures: int, seed: int) -> None:
    delay = backoff_delay(failures, rng=random.Random(seed))
    assert 0 < delay <= BACKOFF_CAP_S
    ceiling = min(BACKOFF_CAP_S, 0.2 * 2 ** min(failures - 1, 32))
    assert ceiling / 2 <= delay <= ceiling


async def test_a_step_that_raises_is_counted_and_the_loop_goes_on_until_stop() -> None:
    monitor, stop = LoopMonitor(), asyncio.Event()
    calls: list[int] = []
    before = _errors("test-flaky")

    async def step() -> float:
        calls.append(1)
        if len(calls) <= 3:
            raise StoreUnavailable("connection refused") if len(calls) % 2 else RuntimeError("a bug")
        if len(calls) == 6:
            stop.set()
        return 0.0

    await asyncio.wait_for(supervise("test-flaky", step, stop=stop, monitor=monitor), timeout=30)
    assert len(calls) == 6
    assert _errors("test-flaky") - before == 3
    assert monitor.problems() == {}  # stopped on purpose: not reported


async def test_failure_streak_is_reported_for_readiness_and_cleared_by_a_good_step() -> None:
    monitor, stop = LoopMonitor(), asyncio.Event()
    seen: list[dict[str, int]] = []
    calls = 0

    async def step() -> float:
        nonlocal calls
        calls += 1
        seen.append(monitor.failing())
        if calls <= 4:
            raise StoreUnavailable("down")
        if calls == 6:
            stop.set()
        return 0.0

    await asyncio.wait_for(supervise("test-streak", step, stop=stop, monitor=monitor), timeout=30)
    assert seen[3] == {"test-streak": 3} and seen[4] == {"test-streak": 4}
    assert seen[5] == {}


async def test_a_step_stuck_past_the_bound_is_reported_and_a_waiting_loop_is_not() -> None:
    monitor, stop = LoopMonitor(stall_after_s=0.2), asyncio.Event()
    release = asyncio.Event()

    async def stuck() -> float:
        await release.wait()
        return 0.0

    async def sleepy() -> float:
        return 3600.0  # waits an hour between steps: healthy

    tasks = [asyncio.create_task(supervise("test-stuck", stuck, stop=stop, monitor=monitor)),
             asyncio.create_task(supervise("test-sleepy", sleepy, stop=stop, monitor=monitor))]
    await asyncio.sleep(0.4)
    problems = monitor.problems()
    assert set(problems) == {"test-stuck"} and "stuck in one step" in problems["test-stuck"]
    stop.set()
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
    assert monitor.problems() == {}


async def test_a_loop_cancelled_while_it_should_run_is_reported_as_ended() -> None:
    monitor, stop = LoopMonitor(), asyncio.Event()

    async def step() -> float:
        return 0.05

    task = asyncio.create_task(supervise("test-cancelled", step, stop=stop, monitor=monitor))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert monitor.problems() == {"test-cancelled": "ended"}


async def test_backoff_after_a_failure_is_not_cut_short_by_the_pause() -> None:
    """Wake-ups (the pause) shorten waits after good steps only; an outage is not hammered."""
    monitor, stop = LoopMonitor(), asyncio.Event()
    stamps: list[float] = []
    pauses: list[float] = []

    async def step() -> float:
        stamps.append(time.monotonic())
        if len(stamps) == 1:
            raise StoreUnavailable("down")
        stop.set()
        return 0.0

    async def pause(seconds: float) -> None:
        pauses.append(seconds)  # would return at once (a wake-up)

    await asyncio.wait_for(supervise("test-pause", step, stop=stop, monitor=monitor, pause=pause), timeout=10)
    assert pauses == [0.0]  # only the wait after the good step; the one after the failure was a backoff
    assert stamps[1] - stamps[0] >= 0.1 - 1e-3  # at least half the first backoff window (0.2 s)
