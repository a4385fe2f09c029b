"""Discord-style rate-limit buckets for the emulator.

Discord answers every request with the state of the bucket it touched
(``X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket``) and uses fixed windows: the first
request of a window starts the clock, the window empties when ``Reset-After`` runs out. The
emulator copies that, because the relay is meant to steer by these headers alone and reach zero
429s in steady state; a sliding or token-bucket limiter would teach it the wrong model.

Windows run on real monotonic time, not on the emulator's adjustable clock: the relay waits in
real time, and jumping the clock forward (to expire an interaction token) must not also empty
every bucket.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass

__all__ = ["Limit", "RateLimitDecision", "RateLimiter", "RateLimits"]


@dataclass(frozen=True)
class Limit:
    """``requests`` per ``per`` seconds, as one fixed window."""

    requests: int
    per: float


@dataclass(frozen=True)
class RateLimits:
    """The emulator's limits; defaults follow Discord's observed numbers.

    ``webhook_channel`` is Discord's undocumented cap on webhook posts per channel (about 30 per
    60 s, shared by every webhook of the channel; discord-api-docs issues 367, 1454, 4043). It is
    on by default, as on Discord; its 429 says ``X-RateLimit-Scope: shared`` while the webhook's
    own ``X-RateLimit-Remaining`` still shows requests left. ``None`` turns it off.
    """

    webhook: Limit = Limit(5, 2.0)
    webhook_message: Limit = Limit(5, 2.0)
    channel_messages: Limit = Limit(30, 60.0)
    dm_open: Limit = Limit(10, 1.0)
    global_per_bot: Limit = Limit(50, 1.0)
    webhook_channel: Limit | None = Limit(30, 60.0)


@dataclass(frozen=True)
class RateLimitDecision:
    """What one bucket said about one request: allowed or not, and the headers to send."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    bucket: str
    scope: str = "user"
    is_global: bool = False

    @property
    def retry_after(self) -> float:
        """Seconds until the window empties, rounded to milliseconds as Discord does."""
        return round(max(self.reset_after, 0.001), 3)

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers Discord puts on every answer of this route."""
        reset_after = round(max(self.reset_after, 0.0), 3)
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": self.bucket,
        }

    def limited_headers(self) -> dict[str, str]:
        """Headers of the 429 itself: ``Retry-After`` is whole seconds, rounded up."""
        headers = self.headers()
        headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        headers["X-RateLimit-Scope"] = self.scope
        if self.is_global:
            headers["X-RateLimit-Global"] = "true"
        return headers


def bucket_hash(route: str, major: str) -> str:
    """An opaque id per route and major parameter, shaped like Discord's 32 hex characters."""
    return hashlib.blake2b(f"{route}:{major}".encode(), digest_size=16).hexdigest()


@dataclass
class _Window:
    count: int = 0
    reset_at: float = 0.0


class RateLimiter:
    """Fixed-window counters keyed by (route, major parameter); safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], _Window] = {}

    def reset(self) -> None:
        """Forget every window (a test starting fresh)."""
        with self._lock:
            self._windows.clear()

    def hit(
        self, route: str, major: str, limit: Limit, *, scope: str = "user", consume: bool = True
    ) -> RateLimitDecision:
        """Count one request against the bucket; a refused request does not use up the window."""
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault((route, major), _Window())
            if now >= window.reset_at:
                window.count = 0
                window.reset_at = now + limit.per
            allowed = window.count < limit.requests
            if allowed and consume:
                window.count += 1
            return RateLimitDecision(
                allowed=allowed,
                limit=limit.requests,
                remaining=max(limit.requests - window.count, 0),
                reset_after=window.reset_at - now,
                bucket=bucket_hash(route, major),
                scope=scope,
                is_global=scope == "global",
            )
