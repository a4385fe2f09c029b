"""Talking to Discord: one shared ``httpx.AsyncClient``, rate limits first, tenacity for blips.

Every request goes through ``DiscordTransport.request``: wait for the bucket, send, learn from the
headers. Connection errors, timeouts and 500/502/503/504/524 are retried a few times at once with
exponential backoff and jitter (the first retry layer); what still fails becomes ``Transient`` and
the worker reschedules it durably (the second layer). A JSON 429 waits ``retry_after`` and sends
the same request again without spending a retry; a 429 without JSON or without ``Via`` is a
Cloudflare ban and stops every send of this process.

Channels: a webhook post into a known channel first takes a slot of that channel's pacer
(``pacing``), after the webhook's own bucket, so nothing waits between the slot and the send. A
``shared``-scope 429 (Discord's per-channel cap) blocks the whole channel for ``retry_after``: a
short one is waited out, a long one raises ``ChannelBusy``; neither spends a retry, and the
webhook's own bucket is left as its headers say.

Shutdown: ``close_gates()`` lets every request that is on the wire run to its answer (bounded by
the client's timeouts) but starts no new attempt and cuts every wait short with ``ShuttingDown``:
a message Discord may already hold is never abandoned mid-flight and sent again after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpcore
import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from delivery import metrics
from delivery.classify import TRANSIENT_STATUS, classify
from delivery.errors import ChannelBusy, CloudflareBanned, ShuttingDown, Transient
from delivery.netstream import AsyncioBackend
from delivery.ratelimit import RateLimiter

if TYPE_CHECKING:
    from delivery.webhook_send import ChannelPacing

log = logging.getLogger("relay.transport")

TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=60.0, pool=30.0)
# httpcore walks every connection of a pool when a request starts and when a response closes
# (asking each idle one whether its socket is readable; ``delivery.netstream`` answers that without
# a system call): a request's CPU grows with the connections of its pool. Many small pools keep
# that walk short (``ShardedTransport``): 128 pools of 2 connections each, 256 in all. Measured
# 2026-12-07 (200 destinations at once, a loopback server): 1.31 ms of client CPU per request with
# 4 pools of 16, 0.76 with 64 pools of 4, 0.59 with 128 of 2; bench/delivery.py's 200 × 20: 2.86 →
# 2.25 ms per message. A destination sends one request at a time, so two connections per pool serve
# the destinations hashed to it; 256 in all is far more than Discord's limits let one relay keep
# busy (discord.py does not cap its connections at all).
POOL_SHARDS = 128
POOL_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=30.0)
USER_AGENT = "DiscordBot (https://github.com/result-relay/result-relay, 0.1.0)"
MAX_CONSECUTIVE_429 = 25
CLOUDFLARE_BACKOFF_S = 600.0


def make_client(read_timeout: float | None = None) -> httpx.AsyncClient:
    """The one HTTP client a process uses for Discord (connection reuse, bounded pools)."""
    timeout = TIMEOUT if read_timeout is None else httpx.Timeout(
        connect=TIMEOUT.connect, read=read_timeout, write=TIMEOUT.write, pool=TIMEOUT.pool)
    return httpx.AsyncClient(timeout=timeout, transport=ShardedTransport(POOL_LIMITS, POOL_SHARDS),
                             headers={"User-Agent": USER_AGENT})


class ShardedTransport(httpx.AsyncBaseTransport):
    """``shards`` connection pools sharing ``limits`` between them; a request's path picks its pool.

    httpcore walks every connection of a pool, polling each idle one's socket, when a request
    starts and when a response is closed: its cost per request grows with the idle connections it
    keeps. Split in ``shards`` pools, the process keeps as many connections, and each request
    walks one pool of them. The path picks the pool (``/webhooks/{id}/…``, ``/channels/{id}/…``):
    one destination's requests reuse one pool's connections, and many destinations spread evenly.
    """

    def __init__(self, limits: httpx.Limits, shards: int) -> None:
        shards = max(1, shards)

        def share(total: int | None) -> int | None:
            return None if total is None else max(1, -(-total // shards))

        per = httpx.Limits(max_connections=share(limits.max_connections),
                           max_keepalive_connections=share(limits.max_keepalive_connections),
                           keepalive_expiry=limits.keepalive_expiry)
        tls = httpx.create_ssl_context()  # one for all: each pool loading the CA bundle took 19 ms
        backend = AsyncioBackend()
        self.pools: list[httpx.AsyncHTTPTransport] = []
        for _ in range(shards):
            pool = httpx.AsyncHTTPTransport(limits=per, verify=tls)
            # The same pool httpx builds, on asyncio's transports (``delivery.netstream``): httpx takes
            # no network backend, so its connection pool is replaced (tests hold it to that).
            pool._pool = httpcore.AsyncConnectionPool(
                ssl_context=tls, max_connections=per.max_connections,
                max_keepalive_connections=per.max_keepalive_connections, keepalive_expiry=per.keepalive_expiry,
                network_backend=backend)
            self.pools.append(pool)

    def pool_for(self, path: str) -> httpx.AsyncHTTPTransport:
        """The pool whose connections carry requests to ``path`` (the same pool every time)."""
        return self.pools[zlib.crc32(path.encode()) % len(self.pools)]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its path's pool."""
        return await self.pool_for(request.url.path).handle_async_request(request)

    async def aclose(self) -> None:
        """Close every pool."""
        for pool in self.pools:
            await pool.aclose()


@dataclass(frozen=True)
class OutgoingFile:
    """A file part of one message, bytes already read from the store."""

    filename: str
    content_type: str
    data: bytes


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class DiscordTransport:
    """Sends requests to ``api_base`` for the worker; knows nothing of the store."""

    def __init__(self, client: httpx.AsyncClient, api_base: str, *, bot_token: str | None = None,
                 limiter: RateLimiter | None = None, retry_attempts: int = 3,
                 cloudflare_backoff: float = CLOUDFLARE_BACKOFF_S, retry_wait_max: float = 4.0) -> None:
        self._client = client
        self._base = api_base.rstrip("/")
        self._bot_token = bot_token
        self.limiter = limiter or RateLimiter(sleep=self._sleep)
        self._attempts = max(1, retry_attempts)
        self._cloudflare_backoff = cloudflare_backoff
        self._retry_wait_max = retry_wait_max
        self.banned_until = 0.0
        self._closing = asyncio.Event()
        self.pacing: ChannelPacing | None = None  # set by the composition root when channels are paced

    def close_gates(self) -> None:
        """Shutdown: no new attempt starts, waits end with ``ShuttingDown``; sends on the wire finish."""
        self._closing.set()

    def _check_gate(self) -> None:
        if self._closing.is_set():
            raise ShuttingDown()

    async def _sleep(self, seconds: float) -> None:
        """A wait that the shutdown cuts short (between tenacity attempts, for rate limits)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
        self._check_gate()

    async def _acquire(self, route_key: str, *, bot: bool) -> None:
        await self.limiter.acquire(route_key, bot=bot)  # its sleeps are ``_sleep``: the shutdown cuts them
        self._check_gate()

    def banned_for(self) -> float:
        """Seconds left of a Cloudflare ban (0 when none)."""
        return max(0.0, self.banned_until - time.time())

    async def request(
        self, method: str, path: str, *, route_key: str, kind: str, bot: bool = False,
        payload: Mapping[str, Any] | None = None, files: Sequence[OutgoingFile] = (),
        params: Mapping[str, str] | None = None, channel: str | None = None,
    ) -> httpx.Response:
        """One logical request; returns the 2xx response or raises a ``DeliveryError``.

        ``channel``: the Discord channel a webhook post lands in, when known: paced under its cap.
        """
        headers = {"Authorization": f"Bot {self._bot_token}"} if bot and self._bot_token else {}
        limited = 0
        while limited < MAX_CONSECUTIVE_429:
            self._check_gate()
            if self.banned_for() > 0:
                raise CloudflareBanned(self.banned_for())
            await self._acquire(route_key, bot=bot)
            if channel is not None and self.pacing is not None:
                wait = await self.pacing.turn(channel)
                if wait > 0:
                    await self._sleep(wait)
            response = await self._send(method, path, headers, payload, files, params, kind)
            self.limiter.update(route_key, response.headers)
            body = _json_or_none(response)
            code = body.get("code") if isinstance(body, dict) else None
            metrics.DISCORD_RESPONSES.labels(kind=kind, status=str(response.status_code),
                                             code=str(code) if isinstance(code, int) else "").inc()
            if response.is_success:
                return response
            if response.status_code != 429:
                raise classify(response.status_code, body, kind=kind)
            if not isinstance(body, dict) or "via" not in response.headers:
                self.banned_until = time.time() + self._cloudflare_backoff
                metrics.CLOUDFLARE_BANS.inc()
                log.error("Cloudflare-style 429 (no JSON body or no Via header): pausing all sends for %.0f s",
                          self._cloudflare_backoff)
                raise CloudflareBanned(self._cloudflare_backoff)
            retry_after = _retry_after(body, response.headers)
            is_global = bool(body.get("global")) or response.headers.get("x-ratelimit-global") == "true"
            scope = response.headers.get("x-ratelimit-scope", "global" if is_global else "user")
            metrics.RATE_LIMITED.labels(scope=scope).inc()
            log.info("rate limited on %s (scope %s): waiting %.3f s", kind, scope, retry_after)
            if scope == "shared" and not is_global:
                await self._channel_limited(channel, retry_after)
                continue  # a wait for the channel, not a try spent
            limited += 1
            self.limiter.pause(route_key, retry_after, is_global=is_global)
        raise Transient(f"still rate limited after {MAX_CONSECUTIVE_429} tries", status=429)

    async def _channel_limited(self, channel: str | None, retry_after: float) -> None:
        """A ``shared`` 429: the whole channel waits. Short waits here, long ones by rescheduling."""
        if channel is not None and self.pacing is not None:
            await self.pacing.blocked(channel, retry_after)
        if channel is None or self.pacing is None or retry_after > self.pacing.max_wait_s:
            raise ChannelBusy(channel, time.time() + retry_after)
        await self._sleep(retry_after)

    async def _send(self, method: str, path: str, headers: dict[str, str], payload: Mapping[str, Any] | None,
                    files: Sequence[OutgoingFile], params: Mapping[str, str] | None, kind: str) -> httpx.Response:
        url = self._base + path
        kwargs: dict[str, Any] = {"headers": headers, "params": params}
        if files:
            kwargs["data"] = {"payload_json": json.dumps(payload or {}, ensure_ascii=False)}
            kwargs["files"] = [(f"files[{i}]", (f.filename, f.data, f.content_type)) for i, f in enumerate(files)]
        elif payload is not None:
            kwargs["json"] = payload
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential_jitter(multiplier=0.25, jitter=0.25, max=self._retry_wait_max),
                retry=retry_if_exception_type((httpx.TransportError, _RetryableStatus)),
                sleep=self._sleep,
                reraise=True,
            ):
                with attempt:
                    self._check_gate()
                    response = await self._client.request(method, url, **kwargs)
                    if response.status_code in TRANSIENT_STATUS:
                        metrics.DISCORD_RESPONSES.labels(kind=kind, status=str(response.status_code), code="").inc()
                        raise _RetryableStatus(response)
                    return response
        except _RetryableStatus as exc:
            raise Transient(f"Discord answered {exc.response.status_code}", status=exc.response.status_code) from None
        except httpx.TimeoutException as exc:
            raise Transient(f"timed out talking to Discord ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise Transient(f"connection to Discord failed ({type(exc).__name__})") from None
        raise AssertionError("unreachable")  # pragma: no cover


def _json_or_none(response: httpx.Response) -> Any:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(body: Mapping[str, Any], headers: Mapping[str, str]) -> float:
    for value in (body.get("retry_after"), headers.get("x-ratelimit-reset-after"), headers.get("retry-after")):
        try:
            if value is not None:
                return max(0.0, float(value))
        except (TypeError, ValueError):
            continue
    return 1.0
