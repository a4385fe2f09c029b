"""Supervised loops: every long-running loop survives every error and says so.

    supervise(name, step) ── step() ─ok──► pause(seconds it asked for) ──► step() …
                                  └─error─► log, count relay_loop_errors_total{loop}, pause(backoff) ──┘

A loop ends only when its ``stop`` event is set. Each step runs under the loop's
:class:`LoopState`, so :class:`LoopMonitor` can tell a loop that is waiting (healthy, however long
it sleeps) from one stuck inside a step for longer than a bound: ``/healthz`` reports the latter,
and a liveness probe restarts a truly wedged process — while a store outage, which makes steps
fail fast, keeps ``/healthz`` green and turns ``/readyz`` red instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from delivery import metrics
from store.errors import StoreUnavailable

log = logging.getLogger("relay.loops")

BACKOFF_FIRST_S = 0.2
BACKOFF_CAP_S = 5.0
DEFAULT_STALL_S = 300.0


def backoff_delay(failures: int, *, first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_CAP_S,
                  rng: random.Random | None = None) -> float:
    """Jittered exponential backoff after ``failures`` consecutive failures (≥ 1), never above ``cap``.

    "Full jitter" over the upper half of the window: consecutive failures grow the pause, replicas
    that failed together do not retry together, and a store that comes back is used within ``cap``.
    """
    ceiling = min(cap, first * 2 ** min(max(0, failures - 1), 32))
    return (rng or random).uniform(ceiling / 2, ceiling)


@dataclass
class LoopState:
    """One loop's liveness: when its current step began (None while it waits) and how it ended."""

    name: str
    busy_since: float | None = None
    last_step_at: float | None = None
    consecutive_failures: int = 0
    ended: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """Mark a step of this loop as running (thread-safe: thread loops use it too)."""
        with self._lock:
            self.busy_since = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self.busy_since = None
                self.last_step_at = time.monotonic()

    def failed(self) -> int:
        """Count one more consecutive failure; returns the count."""
        with self._lock:
            self.consecutive_failures += 1
            return self.consecutive_failures

    def succeeded(self) -> None:
        """A step went through: the failure streak is over."""
        with self._lock:
            self.consecutive_failures = 0


class LoopMonitor:
    """The registry ``/healthz`` reads: which supervised loops are stuck or gone."""

    def __init__(self, stall_after_s: float = DEFAULT_STALL_S) -> None:
        self.stall_after_s = stall_after_s
        self._loops: dict[str, LoopState] = {}
        self._lock = threading.Lock()

    def register(self, name: str) -> LoopState:
        """The state of loop ``name`` (a restarted loop of the same name replaces the old state)."""
        state = LoopState(name)
        with self._lock:
            self._loops[name] = state
        return state

    def unregister(self, name: str) -> None:
        """A loop stopped on purpose (shutdown): it is no longer expected to run."""
        with self._lock:
            self._loops.pop(name, None)

    def problems(self, now: float | None = None) -> dict[str, str]:
        """Loops that are not healthy, with why: stuck in one step past the bound, or ended."""
        now = time.monotonic() if now is None else now
        out: dict[str, str] = {}
        with self._lock:
            loops = list(self._loops.values())
        for state in loops:
            if state.ended:
                out[state.name] = "ended"
            elif state.busy_since is not None and now - state.busy_since > self.stall_after_s:
                out[state.name] = f"stuck in one step for {now - state.busy_since:.0f} s"
        return out

    def failing(self, *, min_streak: int = 3) -> dict[str, int]:
        """Loops whose last ``min_streak`` or more steps failed, with the streak (for ``/readyz``).

        One failed pass is a blip; a streak means the loop cannot do its work now.
        """
        with self._lock:
            return {s.name: s.consecutive_failures for s in self._loops.values()
                    if s.consecutive_failures >= min_streak}


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds`` or until ``stop`` is set, whichever is first."""
    if seconds <= 0 or stop.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def report_failure(state: LoopState, exc: BaseException) -> float:
    """Log and count one failed step of ``state``'s loop; returns how long to back off.

    The first failure of a streak is logged with its traceback; later ones in the same streak as
    one line each, so an outage does not write megabytes of log.
    """
    failures = state.failed()
    metrics.LOOP_ERRORS.labels(loop=state.name).inc()
    delay = backoff_delay(failures)
    if isinstance(exc, StoreUnavailable):
        log.warning("%s loop: store unavailable (%s); retrying in %.1f s", state.name, exc, delay)
    elif failures == 1:
        log.error("%s loop failed; retrying in %.1f s", state.name, delay, exc_info=exc)
    else:
        log.warning("%s loop failed again (%d in a row: %s: %s); retrying in %.1f s",
                    state.name, failures, type(exc).__name__, exc, delay)
    return delay


async def supervise(name: str, step: Callable[[], Awaitable[float]], *, stop: asyncio.Event,
                    monitor: LoopMonitor, pause: Callable[[float], Awaitable[None]] | None = None) -> None:
    """Run ``step`` until ``stop``: it returns how many seconds to wait before the next step.

    Any exception from a step is logged, counted and followed by a jittered backoff capped at
    ``BACKOFF_CAP_S``; the loop goes on. ``pause`` replaces the plain wait after a successful step
    (e.g. a wait that a wake-up can cut short); it must return when ``stop`` is set.
    """
    state = monitor.register(name)
    wait = pause or (lambda seconds: sleep_or_stop(stop, seconds))
    try:
        while not stop.is_set():
            failed = False
            with state.step():
                try:
                    delay = await step()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the point of supervision: survive, count, back off
                    delay, failed = report_failure(state, exc), True
                else:
                    state.succeeded()
            # A backoff is not cut short by wake-ups: during an outage they would only hammer the store.
            await (sleep_or_stop(stop, delay) if failed else wait(delay))
    finally:
        if stop.is_set():
            monitor.unregister(name)
        else:
            state.ended = True  # cancelled or broken out while it should be running: say so
