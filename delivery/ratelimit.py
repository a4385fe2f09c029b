"""Discord rate limits, learned from response headers, never hard-coded.

Per route key (one destination: a webhook, an interaction token, a DM channel) the limiter keeps
what the last answer said: ``X-RateLimit-Remaining`` and when the window resets. Before a send it
waits while ``Remaining`` is 0. A 429's ``retry_after`` pauses that key, or — for a global 429 —
every send of the bot token. The state is plain data so the worker can persist it with the
destination and the next worker (or replica) that claims it starts from the same knowledge.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

from schemas.messages import BucketState

# Clocks of Discord and of this host differ a little; waking a hair late costs nothing, early costs a 429.
SAFETY_S = 0.05
BOT_GLOBAL_PER_SECOND = 50


def _float(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class RateLimiter:
    """Bucket state for every route key of this process, plus the bot token's global pause."""

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 global_per_second: int = BOT_GLOBAL_PER_SECOND) -> None:
        self._clock, self._sleep = clock, sleep
        self._state: dict[str, BucketState] = {}
        self._global_until = 0.0
        self._global_window: deque[float] = deque()
        self._global_per_second = global_per_second

    def state(self, key: str) -> BucketState:
        """The bucket state of a route key (created empty)."""
        return self._state.setdefault(key, BucketState())

    def load(self, key: str, state: BucketState) -> None:
        """Adopt the state persisted with a destination we just claimed.

        Whoever served the destination last wrote what it knew when it let go, so that is the newest
        knowledge there is; our own memory of the key may be from an older window (comparing reset
        times would wrongly prefer it when our last answer merely arrived later).
        """
        self._state[key] = BucketState(bucket=state.bucket, remaining=state.remaining, reset_at=state.reset_at)

    async def acquire(self, key: str, *, bot: bool) -> None:
        """Wait until a request on ``key`` will not be rate limited, then count it."""
        while True:
            now = self._clock()
            wait = 0.0
            state = self.state(key)
            if state.remaining is not None and state.remaining <= 0 and now < state.reset_at:
                wait = state.reset_at - now
            if bot:
                wait = max(wait, self._global_until - now, self._global_slot_wait(now))
            if wait <= 0:
                break
            await self._sleep(wait + SAFETY_S)
        if state.remaining is not None and state.remaining > 0:
            state.remaining -= 1  # optimistic, so two sends in one window do not both spend the last slot
        if bot:
            self._global_window.append(self._clock())

    def _global_slot_wait(self, now: float) -> float:
        while self._global_window and now - self._global_window[0] >= 1.0:
            self._global_window.popleft()
        if len(self._global_window) < self._global_per_second:
            return 0.0
        return 1.0 - (now - self._global_window[0])

    def update(self, key: str, headers: Mapping[str, str]) -> None:
        """Learn from an answer's ``X-RateLimit-*`` headers."""
        remaining = _float(headers, "x-ratelimit-remaining")
        reset_after = _float(headers, "x-ratelimit-reset-after")
        if remaining is None and reset_after is None:
            return
        state = self.state(key)
        state.bucket = headers.get("x-ratelimit-bucket", state.bucket)
        if remaining is not None:
            state.remaining = int(remaining)
        if reset_after is not None:
            state.reset_at = self._clock() + reset_after

    def pause(self, key: str, retry_after: float, *, is_global: bool) -> None:
        """A 429: nothing more on ``key`` (or, when global, on the bot token) for ``retry_after``."""
        until = self._clock() + retry_after
        if is_global:
            self._global_until = max(self._global_until, until)
            return
        state = self.state(key)
        state.remaining = 0
        state.reset_at = max(state.reset_at, until)
