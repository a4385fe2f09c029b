"""Composition root of the delivery engine: settings → transport, queue, worker, wake-ups, presence.

``delivery`` knows nothing of ``app``; this module builds it from the relay's settings, starts it
in the lifespan of ``relay serve`` or alone in ``relay worker``, and wires the wake-ups: an
in-process call after each commit, and PostgreSQL ``LISTEN/NOTIFY`` so a result accepted by one
replica starts delivering on another without waiting for the next poll (polling stays the backstop).
It also publishes the worker's presence (``store.presence``) so that a restarted relay takes over
a dead predecessor's destinations at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from app.destinations import parse_webhook_url
from app.runtime import Runtime
from app.settings import Settings
from delivery import metrics
from delivery.alerts import AlertLoop
from delivery.progress import ProgressWorker
from delivery.render import Limits
from delivery.supervise import backoff_delay, supervise
from delivery.transport import TIMEOUT, DiscordTransport, make_client
from delivery.webhook_send import ChannelPacing
from delivery.worker import DeliveryWorker, WorkerConfig
from schemas.work import PaceLimit
from store.errors import StoreUnavailable
from store.notify import PgListener, PgNotifier
from store.presence import FilePresence, PgPresence, Presence, new_owner_id, pg_application_name

log = logging.getLogger("relay.workers")
PRESENCE_WAIT_S = 10.0
PICKUP_COMMAND = "/results"  # the relay's pickup command (app.interactions.commands)


def worker_config(settings: Settings) -> WorkerConfig:
    """The worker's knobs from the relay's settings."""
    return WorkerConfig(
        concurrency=settings.worker_concurrency, lease_s=settings.lease_seconds, poll_interval=settings.poll_interval,
        retry_schedule=tuple(settings.retry_schedule), retry_jitter=settings.retry_jitter,
        max_age_s=settings.max_delivery_age, interaction_margin_s=settings.interaction_margin,
        shutdown_grace_s=settings.shutdown_grace, send_timeout_s=settings.discord_timeout + (TIMEOUT.connect or 0.0),
        max_crashes=settings.max_delivery_crashes,
        pickup_command=PICKUP_COMMAND if settings.interactions_enabled else None,
        limits=Limits(max_attachment_bytes=settings.max_attachment_bytes,
                      max_body_messages=settings.max_body_messages),
    )


def channel_limit(text: str) -> PaceLimit | None:
    """``RELAY_CHANNEL_LIMIT``: ``"30/60"`` → 30 webhook posts per 60 s per channel; ``"off"`` → no pacing."""
    if text.strip().lower() == "off":
        return None
    count, _, seconds = text.partition("/")
    per = float(seconds)
    # The margin absorbs the network's jitter between our clock and Discord's window: 2 % of it.
    return PaceLimit(count=int(count), per=per, margin=max(0.05, per * 0.02))


@dataclass
class Workers:
    """A running delivery loop and what it holds."""

    worker: DeliveryWorker
    client: httpx.AsyncClient
    stop_event: asyncio.Event
    task: asyncio.Task[None]
    closers: list[Callable[[], None]] = field(default_factory=list)

    def is_running(self) -> bool:
        """True while the loop runs (``/readyz``)."""
        return self.worker.running and not self.task.done()

    async def stop(self) -> None:
        """Stop claiming, drain within the grace period, release leases, close the client."""
        self.stop_event.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        for close in self.closers:
            close()
        await self.client.aclose()


def _count_errors(loop: str) -> Callable[[BaseException], None]:
    """An error hook for the store's threads: counted as ``relay_loop_errors_total{loop}``."""
    counter = metrics.LOOP_ERRORS.labels(loop=loop)
    return lambda _exc: counter.inc()


def build_workers(runtime: Runtime, client: httpx.AsyncClient, *,
                  presence: Presence | None = None) -> tuple[DeliveryWorker, ProgressWorker, AlertLoop | None]:
    """The delivery, progress and (with ``RELAY_ALERT_WEBHOOK``) alert loops for this runtime's store
    and settings, sharing one transport (so they share what the rate-limit headers taught)."""
    settings = runtime.settings
    bot = settings.discord_bot_token.get_secret_value() if settings.discord_bot_token else None
    transport = DiscordTransport(client, settings.discord_api_base, bot_token=bot,
                                 retry_attempts=settings.http_retry_attempts,
                                 cloudflare_backoff=settings.cloudflare_backoff)

    def reveal(stored: str) -> str:
        return runtime.cipher.decrypt(stored).reveal()

    channels = runtime.channels
    limit = channel_limit(settings.channel_limit)
    queue = runtime.deliveries
    alerts = alert_loop(runtime, transport)
    queue.record_alerts = alerts is not None
    worker = DeliveryWorker(queue, transport, reveal, worker_config(settings),
                            presence=presence, monitor=runtime.loops, channels=channels)
    # The pacer reserves a slot (a write) before every webhook message and the progress loop writes
    # beside the worker: both go through the worker's store runner, one writer thread on SQLite.
    if limit is not None:
        transport.pacing = ChannelPacing(channels, limit, max_wait_s=settings.channel_wait_max, run=worker.run_store)
    progress = ProgressWorker(runtime.progress_queue, transport, reveal, owner=worker.owner,
                              interaction_margin_s=settings.interaction_margin, lease_s=settings.lease_seconds,
                              monitor=runtime.loops, run=worker.run_store,
                              pickup_command=PICKUP_COMMAND if settings.interactions_enabled else None)
    return worker, progress, alerts


def alert_loop(runtime: Runtime, transport: DiscordTransport) -> AlertLoop | None:
    """The operator alert loop for ``RELAY_ALERT_WEBHOOK`` (None when it is not set)."""
    settings = runtime.settings
    if settings.alert_webhook is None:
        return None
    webhook_id, token, _thread = parse_webhook_url(settings.alert_webhook.get_secret_value(),
                                                   settings.discord_api_base)
    return AlertLoop(runtime.alerts, transport, webhook_id=webhook_id, token=lambda: token,
                     window_s=settings.alert_window, admin_url=settings.public_url)


async def start_workers(runtime: Runtime) -> Workers:
    """Start the delivery and progress loops in this event loop and point the runtime's wake-ups at them.

    Presence comes first: on PostgreSQL the LISTEN session carries the worker's name, on SQLite a
    lock file beside the database does; the worker claims nothing while it is not published.
    """
    settings = runtime.settings
    client = make_client(settings.discord_timeout)
    closers: list[Callable[[], None]] = []
    presence: Presence | None = None
    wake_target: list[DeliveryWorker] = []
    if runtime.db.postgres:
        owner = new_owner_id(presence=True)
        listener = PgListener(settings.database_url, lambda: wake_target[0].wake() if wake_target else None,
                              application_name=pg_application_name(owner), on_error=_count_errors("listen"))
        closers.append(listener.close)
        presence = PgPresence(runtime.db, owner, lambda: listener.connected)
        await asyncio.to_thread(listener.wait_connected, PRESENCE_WAIT_S)  # usually instant; never required
    elif settings.sqlite_path is not None:
        file_presence = FilePresence.beside(settings.sqlite_path, new_owner_id(presence=True))
        closers.append(file_presence.close)
        presence = file_presence
    worker, progress, alerts = build_workers(runtime, client, presence=presence)
    wake_target.append(worker)
    stop = asyncio.Event()
    task = asyncio.create_task(_run_loops(worker, progress, alerts, stop, runtime), name="delivery-worker")
    workers = Workers(worker=worker, client=client, stop_event=stop, task=task, closers=closers)
    runtime.workers_running = workers.is_running
    return workers


async def _run_loops(worker: DeliveryWorker, progress: ProgressWorker, alerts: AlertLoop | None,
                     stop: asyncio.Event, runtime: Runtime) -> None:
    """Run the loops until ``stop``; they are supervised, so an early end is a bug said out loud."""
    tasks = [asyncio.create_task(worker.run(stop), name="deliveries"),
             asyncio.create_task(progress.run(stop), name="progress")]
    if alerts is not None:
        tasks.append(asyncio.create_task(supervise("alerts", alerts.step, stop=stop, monitor=runtime.loops),
                                         name="alerts"))
    await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s loop ended with an error", task.get_name(), exc_info=task.exception())


def wire_wakeups(runtime: Runtime, workers: Workers | None) -> Callable[[], None]:
    """What ``runtime.wake_workers`` does: wake the local loop, and other replicas via NOTIFY."""
    local = workers.worker.wake if workers else (lambda: None)
    if not runtime.db.postgres:
        runtime.wake_workers = local
        return lambda: None
    notifier = PgNotifier(runtime.db, on_error=_count_errors("notify"))

    def wake() -> None:
        local()
        notifier.notify()

    runtime.wake_workers = wake
    return notifier.close


def _wait_for_store(runtime: Runtime, settings: Settings, stop: threading.Event) -> bool:
    """Bring the schema up (SQLite) or check it (PostgreSQL), retrying while the store is unreachable.

    Returns False if asked to stop first. An outdated schema is not retried: it raises
    ``SchemaOutdated`` and ``relay`` exits 2 — the one way a worker cannot start.
    """
    failures = 0
    while True:
        try:
            runtime.db.ensure_schema()
            return True
        except StoreUnavailable as exc:
            failures += 1
            metrics.LOOP_ERRORS.labels(loop="startup").inc()
            delay = backoff_delay(failures)
            log.warning("store unreachable at start (%s); retrying in %.1f s", exc, delay)
            if stop.wait(delay):
                return False


@contextlib.contextmanager
def startup_frozen() -> Iterator[None]:
    """Keep what start-up built out of the garbage collector's walks while the process serves.

    Modules, routes, compiled statements and pools live as long as the process. Left in the
    collector's oldest generation, every full collection walked them: under ingest load, 12 pauses
    of up to 139 ms in 20 s, which were the p99. ``gc.freeze`` moves them where no collection looks;
    leaving unfreezes them, so a stopped app (tests start many in one process) can be collected.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_worker_process(settings: Settings) -> int:
    """``relay worker``: the delivery loop alone, until SIGTERM/SIGINT; drains and exits 0.

    It waits for an unreachable store at start and survives outages later (every loop is
    supervised); it exits non-zero only when it cannot start at all (an outdated schema).
    """
    runtime = Runtime.build(settings)
    stop_requested = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop_requested.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if not _wait_for_store(runtime, settings, stop_requested):
            runtime.close()
            return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    async def main() -> None:
        from app.transcriptions import start_transcription_service

        workers = await start_workers(runtime)
        transcriptions = await start_transcription_service(runtime)
        health = None
        if settings.worker_health_port is not None:
            from app.probes import serve_health

            health = await serve_health(runtime, settings.worker_health_host, settings.worker_health_port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, workers.stop_event.set)
        if stop_requested.is_set():
            workers.stop_event.set()
        log.info("relay worker %s started", workers.worker.owner)
        with startup_frozen():
            await workers.stop_event.wait()
        log.info("relay worker draining (grace %.0f s)", settings.shutdown_grace)
        if transcriptions is not None:
            await transcriptions.stop()
        await workers.stop()
        if health is not None:
            health.close()
            await health.wait_closed()

    asyncio.run(main())
    runtime.close()
    return 0
