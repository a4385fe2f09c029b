"""The worker loop: claim destinations, render, send, record — and never lose or repeat a message.

    run(stop) ── claim free destinations ──► one task per destination (bounded by concurrency)
                 wait: wake-up | poll interval | stop      └─ deliveries of that destination, oldest first
                                                               └─ render once (plan stored), send unsent
                                                                  messages in order, mark each sent

Every Discord answer is classified (``delivery.classify``); the outcome is written before the next
message goes out. On stop the loop claims nothing more, lets in-flight sends finish within the
grace period, cancels the rest (their unsent messages stay unsent and resume later) and releases
its leases with a shielded write.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError

from delivery import metrics
from delivery.classify import PAYLOAD_BUG_CODES
from delivery.errors import (
    CloudflareBanned,
    DeliveryError,
    DestinationGone,
    Expired,
    Permanent,
    TooLarge,
    Transient,
)
from delivery.progress import LAST_SAFE_SEND, handoff_text
from delivery.queue import ClaimedDestination, DeliveryQueue, Finished, StoredPlan, Work, utcnow
from delivery.render import Limits, MessagePlan, RenderInput, render, smaller
from delivery.transport import DiscordTransport, OutgoingFile

log = logging.getLogger("relay.delivery")

INTERACTION_TTL = timedelta(minutes=15)
MAX_RENDER_SCALE = 5
TRANSIENT_DESTINATION_PAUSE_S = 2.0
INLINE_RENDER_MAX_CHARS = 256 * 1024
PERSIST_RETRY_S = 60.0
T = TypeVar("T")


@dataclass(frozen=True)
class WorkerConfig:
    """The knobs of the delivery loop (filled from the relay's settings by the composition root)."""

    concurrency: int = 16
    lease_s: float = 30.0
    poll_interval: float = 2.0
    retry_schedule: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)
    retry_jitter: float = 0.2
    max_age_s: float = 24 * 3600.0
    interaction_margin_s: float = 60.0
    shutdown_grace_s: float = 20.0
    limits: Limits = Limits()


class DeliveryWorker:
    """One process's delivery loop. ``reveal`` decrypts stored tokens (the store encrypts them)."""

    def __init__(self, queue: DeliveryQueue, transport: DiscordTransport, reveal: Callable[[str], str],
                 config: WorkerConfig, *, owner: str | None = None) -> None:
        self._queue, self._transport, self._reveal, self._config = queue, transport, reveal, config
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{random.randrange(16**6):06x}"
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        self.running = False
        # SQLite has a single writer: funnel this worker's store calls through one thread, so they
        # queue in Python instead of fighting over the lock in SQLite's sleep-and-retry busy handler
        # (measured: most of a delivery's wall time went there with a pool of threads).
        self._store_thread = (ThreadPoolExecutor(1, thread_name_prefix="delivery-store")
                              if queue.single_writer else None)

    async def _store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call off the event loop (on the single store thread for SQLite)."""
        if self._store_thread is None:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._store_thread,
                                                                functools.partial(fn, *args, **kwargs))

    # --- the loop ------------------------------------------------------------------------------

    def wake(self) -> None:
        """New work exists: claim now instead of at the next poll. Safe from any thread."""
        if self._loop is None or self._wakeup is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wakeup.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, then drain within the grace period and release leases."""
        self._loop, self._wakeup, self._stop = asyncio.get_running_loop(), asyncio.Event(), stop
        self.running = True
        heartbeat = asyncio.create_task(self._heartbeat(), name="delivery-heartbeat")
        try:
            while not stop.is_set():
                banned = self._transport.banned_for()
                if banned <= 0:
                    await self._claim()
                await self._wait(min(self._config.poll_interval, banned) if banned > 0 else self._config.poll_interval)
        finally:
            await self._drain()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await asyncio.shield(self._store(self._queue.release_all, self.owner))
            if self._store_thread is not None:
                self._store_thread.shutdown(wait=False)
            self.running = False

    async def _claim(self) -> None:
        free = self._config.concurrency - len(self._active)
        if free <= 0:
            return
        claimed = await self._store(self._queue.claim_destinations, self.owner, limit=free,
                                          lease_s=self._config.lease_s)
        for dest in claimed:
            task = asyncio.create_task(self._serve(dest), name=f"destination:{dest.key}")
            self._active[dest.key] = task
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._active = {k: t for k, t in self._active.items() if t is not task}
        if not task.cancelled() and task.exception() is not None:
            log.error("destination task crashed", exc_info=task.exception())
        if self._wakeup is not None:
            self._wakeup.set()  # a slot is free

    async def _wait(self, seconds: float) -> None:
        assert self._wakeup is not None
        waiters = [asyncio.ensure_future(self._wakeup.wait()), asyncio.ensure_future(self._stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        self._wakeup.clear()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._config.lease_s / 3)
            try:
                await self._store(self._queue.renew, self.owner, list(self._active),
                                        lease_s=self._config.lease_s)
                count, age = await self._store(self._queue.queue_stats)
                metrics.QUEUE_DEPTH.set(count)
                metrics.OLDEST_PENDING.set(age)
            except Exception:  # noqa: BLE001 - a failed heartbeat is retried; the lease has slack
                log.warning("lease heartbeat failed", exc_info=True)

    async def _drain(self) -> None:
        if not self._active:
            return
        tasks = list(self._active.values())
        _, pending = await asyncio.wait(tasks, timeout=self._config.shutdown_grace_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            log.warning("shutdown: %d destinations cancelled mid-send; unsent messages resume later", len(pending))

    # --- one destination --------------------------------------------------------------------------

    async def _serve(self, dest: ClaimedDestination) -> None:
        self._transport.limiter.load(dest.key, dest.bucket)
        state: dict[str, Any] = {"dm_channel_id": dest.dm_channel_id, "blocked_until": None}
        try:
            work = await self._store(self._queue.start_next, dest.key, self._render_inline)
            while work is not None and not self._stop.is_set():
                outcome = await self._deliver(work, dest, state)
                if outcome is False:
                    break
                if isinstance(outcome, _Delivered):
                    # Record this delivery and take the next one in one transaction (one commit per message).
                    take_next = None if self._stop.is_set() else dest.key
                    finished, following = await _persist(
                        self._store, self._queue.finish_and_start_next, work.delivery_id,
                        sent=outcome.last_sent, key=take_next, render=self._render_inline)
                    self._delivered(work, dest, finished)
                    work = following
                elif not self._stop.is_set():
                    work = await self._store(self._queue.start_next, dest.key, self._render_inline)
        finally:
            await asyncio.shield(self._store(
                self._queue.release, self.owner, dest.key, bucket=self._transport.limiter.state(dest.key),
                dm_channel_id=state["dm_channel_id"], blocked_until=state["blocked_until"]))

    def _render_inline(self, result: RenderInput, scale: int, kind: str) -> list[MessagePlan] | None:
        """Render inside the claim's transaction, unless the body is big enough to hold the write lock long."""
        if len(result.body or "") > INLINE_RENDER_MAX_CHARS:
            return None
        return render(result, self._limits(scale), destination=kind)  # type: ignore[arg-type]

    def _delivered(self, work: Work, dest: ClaimedDestination, finished: Finished) -> None:
        metrics.DELIVERIES.labels(kind=work.kind, outcome="delivered").inc()
        if finished.result_status == "delivered":
            metrics.DELIVERY_LATENCY.observe((utcnow() - finished.result_created_at).total_seconds())
        log.info("delivered", extra={"result_id": work.result_id, "delivery_id": work.delivery_id, "kind": work.kind,
                                     "destination": dest.key, "attempts": work.attempts})

    async def _deliver(self, work: Work, dest: ClaimedDestination, state: dict[str, Any]) -> bool | _Delivered:
        """Send one delivery's unsent messages.

        ``_Delivered``: every message is out (the caller records it); True: the delivery ended
        otherwise, serve the next; False: stop serving this destination for now.
        """
        delivery_id = work.delivery_id
        last_sent: tuple[int, str] | None = None
        if work.stale:
            await self._store(self._queue.cancel, delivery_id, work.stale)
            return True
        if dest.disabled:
            await self._fail(work, Permanent(f"destination disabled: {dest.disabled_reason}"), "failed")
            return True
        try:
            self._check_interaction(work)
            unsent = [p for p in await self._plans(work) if p.message_id is None]  # resume, never repeat
            for position, stored in enumerate(unsent):
                if self._stop.is_set():
                    return False
                self._check_interaction(work)
                message_id = await self._send(work, dest, stored, state)
                metrics.MESSAGES_SENT.labels(kind=work.kind).inc()
                if position == len(unsent) - 1:
                    last_sent = (stored.id, message_id)  # recorded together with the delivery's end
                else:
                    await _persist(self._store, self._queue.mark_sent, stored.id, message_id, delivery_id)
        except Expired as exc:
            metrics.EXPIRED_TOKENS.inc()
            if exc.status is None:  # our safety margin, not Discord: the token still has its last minute
                await self._handoff_notice(work, dest)
            await self._fail(work, exc, "expired")
            return True
        except DestinationGone as exc:
            reason = f"{exc.message} (Discord {exc.code})" if exc.code else exc.message
            await self._store(self._queue.disable_destination, dest.key, reason)
            dest_disabled = ClaimedDestination(dest.key, dest.kind, True, reason, dest.bucket, dest.dm_channel_id)
            await self._fail(work, exc, "disabled")
            # Later deliveries to the same destination in this claim fail fast too.
            return await self._fail_rest(dest_disabled)
        except TooLarge as exc:
            return await self._shrink(work, exc)
        except Permanent as exc:
            if exc.code in PAYLOAD_BUG_CODES:
                metrics.PAYLOAD_BUGS.labels(code=str(exc.code)).inc()
                log.error("Discord refused our payload (%s): %s", exc.code, exc.message,
                          extra={"delivery_id": delivery_id, "field": exc.field})
            await self._fail(work, exc, "failed")
            return True
        except CloudflareBanned as exc:
            at = utcnow() + timedelta(seconds=exc.retry_after)
            await self._store(self._queue.reschedule, delivery_id, at=at, status=429, code=None,
                                    message=exc.message, outcome="rate_limited", count_attempt=False)
            return False
        except Transient as exc:
            await self._retry_later(work, exc)
            state["blocked_until"] = utcnow() + timedelta(seconds=TRANSIENT_DESTINATION_PAUSE_S)
            return False
        return _Delivered(last_sent)

    async def _fail_rest(self, dest: ClaimedDestination) -> bool:
        while not self._stop.is_set():
            work = await self._store(self._queue.start_next, dest.key)
            if work is None:
                break
            if work.stale:
                await self._store(self._queue.cancel, work.delivery_id, work.stale)
            else:
                await self._fail(work, Permanent(f"destination disabled: {dest.disabled_reason}"), "failed")
        return False

    def _check_interaction(self, work: Work) -> None:
        if work.kind != "interaction":
            return
        created = datetime.fromisoformat(work.target["created_at"])
        if utcnow() >= created + INTERACTION_TTL - timedelta(seconds=self._config.interaction_margin_s):
            raise Expired("interaction token expired (15 minutes after the command, less the safety margin)")

    async def _plans(self, work: Work) -> list[StoredPlan]:
        if work.plans:
            return list(work.plans)
        rendered = render(work.result, self._limits(work.render_scale), destination=work.kind)  # type: ignore[arg-type]
        return await self._store(self._queue.save_plans, work.delivery_id, rendered)

    def _limits(self, scale: int) -> Limits:
        limits = self._config.limits
        for _ in range(scale):
            limits = smaller(limits)
        return limits

    async def _shrink(self, work: Work, exc: TooLarge) -> bool:
        """A 413: re-render the unsent part with smaller files; never resend the same request."""
        plans = await self._store(self._queue.plans, work.delivery_id)
        sent = [p for p in plans if p.message_id is not None]
        scale = work.render_scale + 1
        rendered = render(work.result, self._limits(scale), destination=work.kind)  # type: ignore[arg-type]
        resumable = len(rendered) > len(sent) and all(
            _text_of(new.payload) == _text_of(old.plan.payload) for new, old in zip(rendered, sent, strict=False))
        if scale > MAX_RENDER_SCALE or not resumable:
            await self._fail(work, Permanent(f"still too large for Discord after {scale - 1} re-renders: "
                                             f"{exc.message}", status=exc.status, code=exc.code), "failed")
            return True
        await self._store(self._queue.set_render_scale, work.delivery_id, scale,
                                f"Discord answered {exc.status} ({exc.code}): re-rendered with files ≤ "
                                f"{self._limits(scale).max_attachment_bytes} bytes")
        await self._store(self._queue.save_plans, work.delivery_id, rendered[len(sent):], start_seq=len(plans))
        await self._store(self._queue.reschedule, work.delivery_id, at=utcnow(), status=exc.status,
                                code=exc.code, message=exc.message, outcome="rerendered", count_attempt=False)
        return True

    async def _retry_later(self, work: Work, exc: Transient) -> None:
        schedule = self._config.retry_schedule or (60.0,)
        delay = schedule[min(work.attempts - 1, len(schedule) - 1)]
        delay *= random.uniform(1 - self._config.retry_jitter, 1 + self._config.retry_jitter)
        first = work.first_attempt_at or utcnow()
        if (utcnow() + timedelta(seconds=delay) - first).total_seconds() > self._config.max_age_s:
            await self._fail(work, Permanent(f"gave up after {work.attempts} attempts: {exc.message}",
                                             status=exc.status, code=exc.code), "failed")
            return
        at = utcnow() + timedelta(seconds=delay)
        await self._store(self._queue.reschedule, work.delivery_id, at=at, status=exc.status, code=exc.code,
                                message=exc.message)
        metrics.DELIVERIES.labels(kind=work.kind, outcome="retry_scheduled").inc()
        log.warning("delivery will be retried", extra={"result_id": work.result_id, "delivery_id": work.delivery_id,
                                                       "retry_in_s": round(delay, 1), "error": exc.message})

    async def _fail(self, work: Work, exc: Permanent, outcome: str) -> None:
        finished = await self._store(self._queue.finish, work.delivery_id, delivered=False, status=exc.status,
                                           code=exc.code, message=exc.message, outcome=outcome)
        metrics.DELIVERIES.labels(kind=work.kind, outcome=outcome).inc()
        if finished.result_status == "undelivered":
            metrics.UNDELIVERED.inc()
        log.warning("delivery failed", extra={"result_id": work.result_id, "delivery_id": work.delivery_id,
                                              "kind": work.kind, "outcome": outcome, "http_status": exc.status,
                                              "discord_code": exc.code, "error": exc.message,
                                              "result_status": finished.result_status})

    # --- sending -----------------------------------------------------------------------------------

    async def _send(self, work: Work, dest: ClaimedDestination, stored: StoredPlan, state: dict[str, Any]) -> str:
        files = [
            OutgoingFile(f.filename, f.content_type, f.data if f.data is not None else await asyncio.to_thread(
                self._queue.read_attachment, work.result_id, f.attachment_index or 0, f.offset, f.length))
            for f in stored.plan.files
        ]
        payload = dict(stored.plan.payload)
        target = work.target
        if work.kind == "dm":
            channel = state["dm_channel_id"] or await self._open_dm(dest.key, target["user_id"])
            state["dm_channel_id"] = channel
            payload.update(nonce=stored.nonce, enforce_nonce=True)
            response = await self._transport.request("POST", f"/channels/{channel}/messages", route_key=dest.key,
                                                     kind="dm", bot=True, payload=payload, files=files)
        else:
            ident = target["webhook_id"] if work.kind == "webhook" else target["application_id"]
            params = {"wait": "true"}
            if target.get("thread_id"):
                params["thread_id"] = target["thread_id"]
            path = f"/webhooks/{ident}/{self._reveal(target['token'])}"
            response = await self._transport.request("POST", path, route_key=dest.key, kind=work.kind,
                                                     payload=payload, files=files, params=params)
        return str(response.json()["id"])

    async def _handoff_notice(self, work: Work, dest: ClaimedDestination) -> None:
        """Spend an expiring interaction token on telling the user where the result will arrive."""
        created = datetime.fromisoformat(work.target["created_at"])
        if work.notice_sent or utcnow() >= created + INTERACTION_TTL - LAST_SAFE_SEND:
            return
        path = f"/webhooks/{work.target['application_id']}/{self._reveal(work.target['token'])}"
        payload = {"content": handoff_text(work.next_kind), "allowed_mentions": {"parse": []}}
        try:
            await self._transport.request("POST", path, route_key=dest.key, kind="interaction", payload=payload,
                                          params={"wait": "true"})
        except DeliveryError as exc:
            log.warning("hand-off notice not sent: %s", exc.message, extra={"result_id": work.result_id})
            return
        await self._store(self._queue.mark_notice_sent, work.delivery_id)

    async def _open_dm(self, key: str, user_id: str) -> str:
        response = await self._transport.request("POST", "/users/@me/channels", route_key=f"{key}:open", kind="dm",
                                                 bot=True, payload={"recipient_id": user_id})
        return str(response.json()["id"])


async def _persist(run: Callable[..., Awaitable[T]], fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Write that Discord holds a message, retrying a busy or briefly unreachable store.

    Losing this write would make a retry send the message again, so it is worth waiting for: up
    to ``PERSIST_RETRY_S`` seconds with backoff, shielded from the drain's cancellation.
    """
    delay, waited = 0.05, 0.0
    while True:
        try:
            return await asyncio.shield(run(fn, *args, **kwargs))
        except (OperationalError, InterfaceError):
            if waited >= PERSIST_RETRY_S:
                raise
            log.warning("store busy while recording a sent message; retrying", exc_info=True)
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 2.0)


@dataclass(frozen=True)
class _Delivered:
    """Every message of a delivery is out; ``last_sent`` is recorded with the delivery's end."""

    last_sent: tuple[int, str] | None


def _text_of(payload: dict[str, Any]) -> Any:
    return {k: v for k, v in payload.items() if k not in ("attachments",)}
