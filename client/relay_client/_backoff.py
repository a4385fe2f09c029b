"""When to try again: jittered exponential backoff, and ``Retry-After`` when the relay sends one."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

RETRY_STATUSES = frozenset({408, 425, 429})
"""4xx answers that mean "later", not "never"; every 5xx is retried too."""


def retriable(status: int) -> bool:
    """Whether an HTTP status is worth another try (and worth spooling)."""
    return status in RETRY_STATUSES or status >= 500


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff: attempt ``n`` waits a random time in ``[0, min(cap, base·2ⁿ)]``.

    Jitter keeps a fleet of producers that lost the relay at the same moment from coming back in
    step. ``Retry-After`` wins over the schedule (up to ``max_retry_after``), since the relay knows
    better when it will be able to take the request.
    """

    base: float = 0.5
    cap: float = 10.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or ``None``."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
