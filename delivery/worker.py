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
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from delivery import metrics
from delivery.classify import PAYLOAD_BUG_CODES
from delivery.errors import (
    ChannelBusy,
    CloudflareBanned,
    DeliveryError,
    DestinationGone,
    Expired,
    Permanent,
    ShuttingDown,
    TooLarge,
    Transient,
)
from delivery.ports import ChannelStore, DeliveryStore
from delivery.progress import handoff_text
from delivery.render import SUPPRESS_NOTIFICATIONS, Limits, MessagePlan, RenderInput, render, smaller
from delivery.supervise import LoopMonitor, supervise
from delivery.transport import DiscordTransport, OutgoingFile
from delivery.webhook_send import ChannelState, WebhookSender
from schemas.clock import utcnow
from schemas.messages import LAST_SAFE_SEND
from schemas.work import ClaimedDestination, Finished, Release, StoredPlan, Work
from store.errors import AttachmentMissing, StoreUnavailable
from store.group_commit import GroupCommitter
from store.presence import Presence, new_owner_id

log = logging.getLogger("relay.delivery")

INTERACTION_TTL = timedelta(minutes=15)
MAX_RENDER_SCALE = 5
INLINE_RENDER_MAX_CHARS = 256 * 1024
PERSIST_RETRY_S = 60.0
DESTINATION_CRASH_PAUSE_S = 10.0  # a destination whose serving crashed outside any one delivery rests this long
DEAD_OWNER_CHECK_S = 1.0  # how often presence is asked which lease owners died
STORE_BATCH_MAX = 64  # store calls in one transaction of the writer thread, at most
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
    shutdown_grace_s: float = 30.0
    send_timeout_s: float = 25.0  # one Discord attempt at most (connect + read): what the drain waits for
    max_crashes: int = 3
    limits: Limits = Limits()
    pickup_command: str | None = None  # named in the hand-off notice (``/results``), when the relay has one


class DeliveryWorker:
    """One process's delivery loop. ``reveal`` decrypts stored tokens (the store encrypts them).

    ``presence`` (optional) publishes this worker as alive and tells which other lease owners
    died, so their destinations are taken over at once instead of when their leases expire.
    ``monitor`` is where the supervised loops report their liveness (``/healthz``).
    ``channels`` (optional) is where webhook channels are learned and paced (``store.channels``).
    """

    def __init__(self, queue: DeliveryStore, transport: DiscordTransport, reveal: Callable[[str], str],
                 config: WorkerConfig, *, owner: str | None = None, presence: Presence | None = None,
                 monitor: LoopMonitor | None = None, channels: ChannelStore | None = None) -> None:
        self._queue, self._transport, self._reveal, self._config = queue, transport, reveal, config
        self._webhooks = WebhookSender(transport, channels, reveal, run=self.run_store)
        self._presence = presence
        self.owner = presence.owner if presence is not None else (owner or new_owner_id(presence=False))
        self.monitor = monitor or LoopMonitor()
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        self._absent_since: dict[str, float] = {}
        self._dead: list[str] = []
        self._dead_checked_at = float("-inf")
        self.running = False
        # Every store call of this worker goes through its writer thread, and what queued while it
        # wrote goes in one transaction (group commit, ``store.group_commit``): each caller still
        # resumes only after its own writes are committed. SQLite has a single writer anyway: its
        # writers then queue in Python, never in SQLite's sleep-and-retry busy handler; on both
        # stores BEGIN, COMMIT (PostgreSQL's WAL flush) and the thread hop are paid once per batch.
        # On PostgreSQL there are several such threads (``writers``), each with a batch of its own:
        # one alone waited out a round trip per statement while the cores idled.
        self._writer: GroupCommitter[Callable[[], object], object] = GroupCommitter(
            self._write_together, max_items=STORE_BATCH_MAX, name="delivery-store", writers=queue.writers)

    async def run_store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call off the event loop, on a writer thread, committed with its batch.

        Public so that whatever writes beside this worker in the same process (the channel pacer,
        the progress loop) queues on the same thread: SQLite's writers then wait in Python, never in
        SQLite's busy handler, which sleeps in steps of up to 100 ms while another thread holds the lock.
        """
        return cast(T, await self._writer.call_async(functools.partial(fn, *args, **kwargs)))

    def _write_together(self, calls: list[Callable[[], object]]) -> list[object]:
        metrics.STORE_BATCH_CALLS.observe(len(calls))
        return self._queue.run_together(calls)

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
        """Deliver until ``stop`` is set, then drain within the grace period and release leases.

        The claim loop and the lease heartbeat are supervised: a store outage or a bug in one step
        is logged, counted and backed off from, never the end of delivery. The heartbeat outlives
        the drain, so leases held while in-flight sends finish do not expire under them.
        """
        self._loop, self._wakeup, self._stop = asyncio.get_running_loop(), asyncio.Event(), stop
        self.running = True
        heartbeat_stop = asyncio.Event()
        heartbeat = asyncio.create_task(supervise("delivery-heartbeat", self._heartbeat, stop=heartbeat_stop,
                                                  monitor=self.monitor), name="delivery-heartbeat")
        try:
            await supervise("deliveries", self._claim_step, stop=stop, monitor=self.monitor, pause=self._wait)
        finally:
            try:
                await self._drain()
                await asyncio.shield(self.run_store(self._queue.release_all, self.owner))
            except StoreUnavailable as exc:
                log.warning("shutdown: leases not released (%s); they are taken over when they expire", exc)
            finally:
                heartbeat_stop.set()
                await heartbeat
                self.running = False

    async def _claim_step(self) -> float:
        """One pass of the claim loop; returns how long to wait for a wake-up before the next."""
        banned = self._transport.banned_for()
        if banned > 0:
            return min(self._config.poll_interval, banned)
        return await self._claim()

    async def _claim(self) -> float:
        poll = self._config.poll_interval
        free = self._config.concurrency - len(self._active)
        if free <= 0:
            return poll
        if self._presence is not None and not self._presence.alive():
            return min(poll, 0.5)  # not published as alive: others could take what we claim
        dead, recheck = await self._dead_owners()
        claimed = await self.run_store(self._queue.claim_destinations, self.owner, limit=free,
                                       lease_s=self._config.lease_s, exclude=list(self._active), dead_owners=dead)
        taken_over = sum(1 for d in claimed if d.previous_owner in dead)
        if taken_over:
            log.info("took over %d destinations of workers that are gone", taken_over,
                     extra={"owners": sorted({d.previous_owner for d in claimed if d.previous_owner in dead})})
        for dest in claimed:
            if dest.key in self._active:  # served already (claimed again while this claim ran)
                continue
            task = asyncio.create_task(self._serve(dest), name=f"destination:{dest.key}")
            self._active[dest.key] = task
            task.add_done_callback(self._done)
        return min(poll, recheck)

    async def _dead_owners(self) -> tuple[list[str], float]:
        """Lease owners known to be gone (confirmed for the presence's ``confirm_s``), and when to look again."""
        if self._presence is None:
            return [], float("inf")
        now = time.monotonic()
        if now - self._dead_checked_at >= DEAD_OWNER_CHECK_S:
            self._dead_checked_at = now
            owners = await self.run_store(self._queue.leased_owners, exclude=self.owner)
            absent = await self.run_store(self._presence.dead_owners, owners) if owners else set()
            self._absent_since = {o: self._absent_since.get(o, now) for o in absent}
            self._dead = sorted(o for o, since in self._absent_since.items()
                                if now - since >= self._presence.confirm_s)
        unconfirmed = len(self._absent_since) > len(self._dead)
        return self._dead, (max(0.05, self._presence.confirm_s / 2) if unconfirmed else float("inf"))

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

    async def _heartbeat(self) -> float:
        await self.run_store(self._queue.renew, self.owner, list(self._active), lease_s=self._config.lease_s)
        count, age = await self.run_store(self._queue.queue_stats)
        metrics.QUEUE_DEPTH.set(count)
        metrics.OLDEST_PENDING.set(age)
        return self._config.lease_s / 3

    async def _drain(self) -> None:
        """Let destinations finish the message they are on; never cut a send that is on the wire.

        Within the grace period every task ends after its current message. Then the transport's
        gates close: nothing new starts and every wait ends, while a request already on the wire
        runs to its answer (bounded by ``send_timeout_s``) so its message id is recorded. Only what
        is still running after that is cancelled.
        """
        if not self._active:
            return
        tasks = list(self._active.values())
        _, pending = await asyncio.wait(tasks, timeout=self._config.shutdown_grace_s)
        if not pending:
            return
        self._transport.close_gates()
        _, pending = await asyncio.wait(pending, timeout=self._config.send_timeout_s + 5)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            log.warning("shutdown: %d destinations cancelled mid-send; unsent messages resume later", len(pending))

    # --- one destination --------------------------------------------------------------------------

    async def _serve(self, dest: ClaimedDestination) -> None:
        """Serve one claimed destination until it has nothing due, then give it back.

        Whatever happens here ends with the lease released: a store outage ends the task quietly
        (this worker takes its own lease back once the store returns), a bug outside any one
        delivery rests the destination for ``DESTINATION_CRASH_PAUSE_S``. Neither ends the loop.
        """
        self._transport.limiter.load(dest.key, dest.bucket)
        state: dict[str, Any] = {"dm_channel_id": dest.dm_channel_id, "blocked_until": None,
                                 "channel": ChannelState(dest.channel_id, dest.guild_id)}
        try:
            await self._serve_due(dest, state)
        except StoreUnavailable as exc:
            metrics.LOOP_ERRORS.labels(loop="destination").inc()
            log.warning("destination %s paused: store unavailable (%s)", dest.key, exc)
        except Exception:  # noqa: BLE001 - contained to this destination; counted and rested
            metrics.LOOP_ERRORS.labels(loop="destination").inc()
            log.exception("serving destination %s failed; it rests %.0f s", dest.key, DESTINATION_CRASH_PAUSE_S)
            state["blocked_until"] = utcnow() + timedelta(seconds=DESTINATION_CRASH_PAUSE_S)
        finally:
            try:
                if not state.get("released"):  # else given back with the last delivery's record
                    await asyncio.shield(self.run_store(self._queue.release, dest.key, self._release(dest, state)))
            except StoreUnavailable as exc:
                log.warning("lease of %s not released (%s); this worker takes it back when the store returns",
                            dest.key, exc)

    def _release(self, dest: ClaimedDestination, state: dict[str, Any]) -> Release:
        """The lease of ``dest`` as this worker gives it back: with what its bucket and DM channel taught."""
        return Release(self.owner, self._transport.limiter.state(dest.key), state["dm_channel_id"],
                       state["blocked_until"])

    async def _serve_due(self, dest: ClaimedDestination, state: dict[str, Any]) -> None:
        work = await self.run_store(self._queue.start_next, dest.key, self._render_inline)
        while work is not None and not self._stop.is_set():
            outcome = await self._deliver(work, dest, state)
            if outcome is False:
                break
            if isinstance(outcome, _Delivered):
                # Record this delivery and take the next one in one transaction (one commit per message).
                take_next = None if self._stop.is_set() else dest.key
                # Nothing more due: the lease goes back in the same commit (``_serve`` then skips it).
                finished, following = await _persist(
                    self.run_store, self._queue.finish_and_start_next, work.delivery_id,
                    sent=outcome.last_sent, key=take_next, render=self._render_inline,
                    release=self._release(dest, state))
                self._delivered(work, dest, finished)
                state["released"] = finished.released
                work = following
            elif not self._stop.is_set():
                work = await self.run_store(self._queue.start_next, dest.key, self._render_inline)

    def _render_inline(self, result: RenderInput, scale: int, kind: str) -> list[MessagePlan] | None:
        """Render inside the claim's transaction, unless the body is big enough to hold the write lock long.

        A result that makes the renderer raise is declined here (the transaction must not roll
        back, or the claim would be retried forever); it is rendered again in ``_deliver``, where a
        crash is contained to that delivery.
        """
        if len(result.body or "") > INLINE_RENDER_MAX_CHARS:
            return None
        try:
            return render(result, self._limits(scale), destination=kind)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - see the docstring: handled by the crash containment
            return None

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
            await self.run_store(self._queue.cancel, delivery_id, work.stale)
            return True
        if dest.disabled:
            await self._fail(work, Permanent(f"destination disabled: {dest.disabled_reason}"), "failed")
            return True
        try:
            if work.defect is not None:
                raise UnreadableResult(work.defect)
            self._check_interaction(work)
            unsent = [p for p in await self._plans(work) if p.message_id is None]  # resume, never repeat
            for position, stored in enumerate(unsent):
                if self._stop.is_set():
                    return False
                self._check_interaction(work)
                message_id, recorded = await self._send(work, dest, stored, state)
                metrics.MESSAGES_SENT.labels(kind=work.kind).inc()
                if recorded:
                    pass  # its id went in with the forum post it created (``set_thread``)
                elif position == len(unsent) - 1:
                    last_sent = (stored.id, message_id)  # recorded together with the delivery's end
                else:
                    await _persist(self.run_store, self._queue.mark_sent, stored.id, message_id, delivery_id)
        except Expired as exc:
            metrics.EXPIRED_TOKENS.inc()
            if exc.status is None:  # our safety margin, not Discord: the token still has its last minute
                await self._handoff_notice(work, dest)
            await self._fail(work, exc, "expired")
            return True
        except DestinationGone as exc:
            reason = f"{exc.message} (Discord {exc.code})" if exc.code else exc.message
            await self.run_store(self._queue.disable_destination, dest.key, reason)
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
        except ChannelBusy as exc:
            # Discord's per-channel cap: the whole channel waits; no retry is spent and the
            # destination is held, so its later results keep their order.
            at = datetime.fromtimestamp(exc.until, UTC)
            await self.run_store(self._queue.reschedule, delivery_id, at=at, status=None, code=None,
                                 message=exc.message, outcome="channel_paced", count_attempt=False,
                                 hold_destination=True)
            state["blocked_until"] = at
            return False
        except CloudflareBanned as exc:
            at = utcnow() + timedelta(seconds=exc.retry_after)
            await self.run_store(self._queue.reschedule, delivery_id, at=at, status=429, code=None,
                                 message=exc.message, outcome="rate_limited", count_attempt=False)
            return False
        except ShuttingDown as exc:  # nothing of this message is on the wire: it goes after the restart
            await self.run_store(self._queue.reschedule, delivery_id, at=utcnow(), status=None, code=None,
                                 message=exc.message, outcome="interrupted", count_attempt=False)
            return False
        except Transient as exc:
            # A 5xx or a timeout is about the destination or Discord, not this result: the destination
            # waits with it, so later results cannot overtake it (per-destination order).
            state["blocked_until"] = await self._retry_later(work, exc)
            return False
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug or bad data in one result must not stop the others
            await self._crashed(work, exc)
            return True
        return _Delivered(last_sent)

    async def _fail_rest(self, dest: ClaimedDestination) -> bool:
        while not self._stop.is_set():
            work = await self.run_store(self._queue.start_next, dest.key)
            if work is None:
                break
            if work.stale:
                await self.run_store(self._queue.cancel, work.delivery_id, work.stale)
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
        return await self.run_store(self._queue.save_plans, work.delivery_id, rendered)

    def _limits(self, scale: int) -> Limits:
        limits = self._config.limits
        for _ in range(scale):
            limits = smaller(limits)
        return limits

    async def _shrink(self, work: Work, exc: TooLarge) -> bool:
        """A 413: re-render the unsent part with smaller files; never resend the same request."""
        plans = await self.run_store(self._queue.plans, work.delivery_id)
        sent = [p for p in plans if p.message_id is not None]
        scale = work.render_scale + 1
        rendered = render(work.result, self._limits(scale), destination=work.kind)  # type: ignore[arg-type]
        resumable = len(rendered) > len(sent) and all(
            _text_of(new.payload) == _text_of(old.plan.payload) for new, old in zip(rendered, sent, strict=False))
        if scale > MAX_RENDER_SCALE or not resumable:
            await self._fail(work, Permanent(f"still too large for Discord after {scale - 1} re-renders: "
                                             f"{exc.message}", status=exc.status, code=exc.code), "failed")
            return True
        await self.run_store(self._queue.set_render_scale, work.delivery_id, scale,
                             f"Discord answered {exc.status} ({exc.code}): re-rendered with files ≤ "
                             f"{self._limits(scale).max_attachment_bytes} bytes")
        await self.run_store(self._queue.save_plans, work.delivery_id, rendered[len(sent):], start_seq=len(plans))
        await self.run_store(self._queue.reschedule, work.delivery_id, at=utcnow(), status=exc.status,
                             code=exc.code, message=exc.message, outcome="rerendered", count_attempt=False)
        return True

    def _retry_delay(self, work: Work) -> float:
        """The durable schedule's next delay for this delivery, jittered."""
        schedule = self._config.retry_schedule or (60.0,)
        delay = schedule[min(max(work.attempts, 1) - 1, len(schedule) - 1)]
        return delay * random.uniform(1 - self._config.retry_jitter, 1 + self._config.retry_jitter)

    async def _retry_later(self, work: Work, exc: Transient) -> datetime | None:
        """Reschedule on the durable schedule, holding the destination until then; None if it gave up."""
        delay = self._retry_delay(work)
        first = work.first_attempt_at or utcnow()
        if (utcnow() + timedelta(seconds=delay) - first).total_seconds() > self._config.max_age_s:
            await self._fail(work, Permanent(f"gave up after {work.attempts} attempts: {exc.message}",
                                             status=exc.status, code=exc.code), "failed")
            return None
        at = utcnow() + timedelta(seconds=delay)
        await self.run_store(self._queue.reschedule, work.delivery_id, at=at, status=exc.status, code=exc.code,
                             message=exc.message, hold_destination=True)
        metrics.DELIVERIES.labels(kind=work.kind, outcome="retry_scheduled").inc()
        log.warning("delivery will be retried", extra={"result_id": work.result_id, "delivery_id": work.delivery_id,
                                                       "retry_in_s": round(delay, 1), "error": exc.message})
        return at

    async def _crashed(self, work: Work, exc: Exception) -> None:
        """An unexpected exception while delivering one result: contain it to that delivery.

        Logged once per attempt with the result id and counted; rescheduled on the durable
        schedule (never faster), without holding the destination: the next results go on. After
        ``max_crashes`` the delivery fails with the reason in words and the route moves on.
        """
        metrics.DELIVERY_CRASHES.inc()
        reason = f"internal error: {_crash_reason(exc)}"
        log.error("delivery crashed", exc_info=exc, extra={"result_id": work.result_id,
                                                            "delivery_id": work.delivery_id,
                                                            "attempts": work.attempts})
        crashes = await self.run_store(self._queue.crash_count, work.delivery_id) + 1
        if crashes >= self._config.max_crashes:
            await self._fail(work, Permanent(f"{reason} (gave up after {crashes} crashes)"), "failed")
            return
        at = utcnow() + timedelta(seconds=self._retry_delay(work))
        await self.run_store(self._queue.reschedule, work.delivery_id, at=at, status=None, code=None,
                             message=reason, outcome="crashed")

    async def _fail(self, work: Work, exc: Permanent, outcome: str) -> None:
        finished = await self.run_store(self._queue.finish, work.delivery_id, delivered=False, status=exc.status,
                                        code=exc.code, message=exc.message, outcome=outcome)
        metrics.DELIVERIES.labels(kind=work.kind, outcome=outcome).inc()
        if finished.result_status == "undelivered":
            metrics.UNDELIVERED.inc()
        log.warning("delivery failed", extra={"result_id": work.result_id, "delivery_id": work.delivery_id,
                                              "kind": work.kind, "outcome": outcome, "http_status": exc.status,
                                              "discord_code": exc.code, "error": exc.message,
                                              "result_status": finished.result_status})

    # --- sending -----------------------------------------------------------------------------------

    async def _send(self, work: Work, dest: ClaimedDestination, stored: StoredPlan,
                    state: dict[str, Any]) -> tuple[str, bool]:
        files = [
            OutgoingFile(f.filename, f.content_type, f.data if f.data is not None else await asyncio.to_thread(
                self._queue.read_attachment, work.result_id, f.attachment_index or 0, f.offset, f.length))
            for f in stored.plan.files
        ]
        payload = dict(stored.plan.payload)
        if work.silent:
            payload["flags"] = int(payload.get("flags") or 0) | SUPPRESS_NOTIFICATIONS
        target = work.target
        if work.kind == "dm":
            channel = state["dm_channel_id"] or await self._open_dm(dest.key, target["user_id"])
            state["dm_channel_id"] = channel
            payload.update(nonce=stored.nonce, enforce_nonce=True)
            response = await self._transport.request("POST", f"/channels/{channel}/messages", route_key=dest.key,
                                                     kind="dm", bot=True, payload=payload, files=files)
            return str(response.json()["id"]), False
        thread_id = state.get("threads", {}).get(work.delivery_id, work.thread_id)
        message = await self._webhooks.send(kind=work.kind, route_key=dest.key, target=target, payload=payload,
                                            files=files, thread_id=thread_id, channel=state["channel"])
        if work.kind == "webhook" and target.get("thread_name") and not (target.get("thread_id") or thread_id):
            # The first message created the forum post: every later message of this result goes there,
            # also after a crash right after this line, so it is stored before the next send, in one
            # transaction with this message's id (stored apart, a crash between the two would have
            # sent this message again, into the post it had just created).
            created = str(message.get("channel_id") or "")
            if created.isdigit():
                await _persist(self.run_store, self._queue.set_thread, work.delivery_id, created,
                               sent=(stored.id, str(message["id"])))
                state.setdefault("threads", {})[work.delivery_id] = created
                return str(message["id"]), True
        return str(message["id"]), False

    async def _handoff_notice(self, work: Work, dest: ClaimedDestination) -> None:
        """Spend an expiring interaction token on telling the user where the result will arrive."""
        created = datetime.fromisoformat(work.target["created_at"])
        if work.notice_sent or utcnow() >= created + INTERACTION_TTL - LAST_SAFE_SEND:
            return
        path = f"/webhooks/{work.target['application_id']}/{self._reveal(work.target['token'])}"
        payload = {"content": handoff_text(work.next_kind, self._config.pickup_command),
                   "allowed_mentions": {"parse": []}}
        try:
            await self._transport.request("POST", path, route_key=dest.key, kind="interaction", payload=payload,
                                          params={"wait": "true"})
        except DeliveryError as exc:
            log.warning("hand-off notice not sent: %s", exc.message, extra={"result_id": work.result_id})
            return
        await self.run_store(self._queue.mark_notice_sent, work.delivery_id)

    async def _open_dm(self, key: str, user_id: str) -> str:
        response = await self._transport.request("POST", "/users/@me/channels", route_key=f"{key}:open", kind="dm",
                                                 bot=True, payload={"recipient_id": user_id})
        return str(response.json()["id"])


async def _persist(run: Callable[..., Awaitable[Any]], fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Write that Discord holds a message, retrying a busy or briefly unreachable store.

    Losing this write would make a retry send the message again, so it is worth waiting for: up
    to ``PERSIST_RETRY_S`` seconds with backoff, shielded from the drain's cancellation.
    """
    delay, waited = 0.05, 0.0
    while True:
        try:
            return cast(T, await asyncio.shield(run(fn, *args, **kwargs)))
        except StoreUnavailable as exc:
            if waited >= PERSIST_RETRY_S:
                raise
            if waited == 0.0:  # once per message, not once per retry: an outage must not flood the log
                log.warning("store unavailable while recording a sent message (%s); retrying for up to %.0f s",
                            exc, PERSIST_RETRY_S)
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 2.0)


class UnreadableResult(Exception):
    """The store could not decode this delivery's result: handled as a crash of that delivery."""


@dataclass(frozen=True)
class _Delivered:
    """Every message of a delivery is out; ``last_sent`` is recorded with the delivery's end."""

    last_sent: tuple[int, str] | None


def _crash_reason(exc: Exception) -> str:
    """The words for an unexpected exception, as the API and the admin page show them."""
    if isinstance(exc, AttachmentMissing | UnreadableResult):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _text_of(payload: dict[str, Any]) -> Any:
    return {k: v for k, v in payload.items() if k not in ("attachments",)}
