"""Composition root of the delivery engine: settings → transport, queue, worker, wake-ups.

``delivery`` knows nothing of ``app``; this module builds it from the relay's settings, starts it
in the lifespan of ``relay serve`` or alone in ``relay worker``, and wires the wake-ups: an
in-process call after each commit, and PostgreSQL ``LISTEN/NOTIFY`` so a result accepted by one
replica starts delivering on another without waiting for the next poll (polling stays the backstop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from app.runtime import Runtime
from app.settings import Settings
from delivery.progress import ProgressQueue, ProgressWorker
from delivery.queue import DeliveryQueue
from delivery.render import Limits
from delivery.transport import DiscordTransport, make_client
from delivery.worker import DeliveryWorker, WorkerConfig

log = logging.getLogger("relay.workers")
CHANNEL = "relay_work"


def worker_config(settings: Settings) -> WorkerConfig:
    """The worker's knobs from the relay's settings."""
    return WorkerConfig(
        concurrency=settings.worker_concurrency, lease_s=settings.lease_seconds, poll_interval=settings.poll_interval,
        retry_schedule=tuple(settings.retry_schedule), retry_jitter=settings.retry_jitter,
        max_age_s=settings.max_delivery_age, interaction_margin_s=settings.interaction_margin,
        shutdown_grace_s=settings.shutdown_grace,
        limits=Limits(max_attachment_bytes=settings.max_attachment_bytes,
                      max_body_messages=settings.max_body_messages),
    )


class PgNotifier:
    """Sends ``NOTIFY relay_work`` from a background thread; bursts of wake-ups coalesce into one."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pending = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="pg-notify", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Ask for a NOTIFY soon (never blocks the caller)."""
        self._pending.set()

    def _run(self) -> None:
        while not self._closed:
            self._pending.wait()
            self._pending.clear()
            if self._closed:
                return
            try:
                with self._engine.connect() as conn:
                    conn.execute(text(f"NOTIFY {CHANNEL}"))
                    conn.commit()
            except Exception:  # noqa: BLE001 - a lost wake-up only delays delivery to the next poll
                log.debug("NOTIFY failed; workers will find the work at their next poll", exc_info=True)

    def close(self) -> None:
        """Stop the thread."""
        self._closed = True
        self._pending.set()


class PgListener:
    """``LISTEN relay_work`` on its own connection; every notification wakes the local worker."""

    def __init__(self, url: str, on_notify: Callable[[], None]) -> None:
        self._conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._on_notify = on_notify
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stopped.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self._on_notify()
            except Exception:  # noqa: BLE001 - reconnect; polling covers the gap
                log.debug("LISTEN connection lost; reconnecting", exc_info=True)
                self._stopped.wait(2.0)

    def close(self) -> None:
        """Stop listening."""
        self._stopped.set()


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


def build_workers(runtime: Runtime, client: httpx.AsyncClient) -> tuple[DeliveryWorker, ProgressWorker]:
    """The delivery and progress loops for this runtime's store and settings, sharing one transport
    (so they share what the rate-limit headers taught)."""
    settings = runtime.settings
    bot = settings.discord_bot_token.get_secret_value() if settings.discord_bot_token else None
    transport = DiscordTransport(client, settings.discord_api_base, bot_token=bot,
                                 retry_attempts=settings.http_retry_attempts,
                                 cloudflare_backoff=settings.cloudflare_backoff)

    def reveal(stored: str) -> str:
        return runtime.cipher.decrypt(stored).reveal()

    worker = DeliveryWorker(DeliveryQueue(runtime.engine), transport, reveal, worker_config(settings))
    progress = ProgressWorker(ProgressQueue(runtime.engine), transport, reveal, owner=worker.owner,
                              interaction_margin_s=settings.interaction_margin, lease_s=settings.lease_seconds)
    return worker, progress


async def start_workers(runtime: Runtime) -> Workers:
    """Start the delivery and progress loops in this event loop and point the runtime's wake-ups at them."""
    client = make_client(runtime.settings.discord_timeout)
    worker, progress = build_workers(runtime, client)
    stop = asyncio.Event()
    task = asyncio.create_task(_run_both(worker, progress, stop), name="delivery-worker")
    workers = Workers(worker=worker, client=client, stop_event=stop, task=task)
    wake_local = worker.wake
    if runtime.engine.dialect.name == "postgresql":
        listener = PgListener(runtime.settings.database_url, wake_local)
        workers.closers.append(listener.close)
    runtime.workers_running = workers.is_running
    return workers


async def _run_both(worker: DeliveryWorker, progress: ProgressWorker, stop: asyncio.Event) -> None:
    """Run both loops; if one dies, stop the other loudly rather than limp on half-working."""
    tasks = [asyncio.create_task(worker.run(stop), name="deliveries"),
             asyncio.create_task(progress.run(stop), name="progress")]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s loop died; the worker stopped", task.get_name(), exc_info=task.exception())


def wire_wakeups(runtime: Runtime, workers: Workers | None) -> Callable[[], None]:
    """What ``runtime.wake_workers`` does: wake the local loop, and other replicas via NOTIFY."""
    local = workers.worker.wake if workers else (lambda: None)
    if runtime.engine.dialect.name != "postgresql":
        runtime.wake_workers = local
        return lambda: None
    notifier = PgNotifier(runtime.engine)

    def wake() -> None:
        local()
        notifier.notify()

    runtime.wake_workers = wake
    return notifier.close


def run_worker_process(settings: Settings) -> int:
    """``relay worker``: the delivery loop alone, until SIGTERM/SIGINT; drains and exits 0."""
    from app.db import ensure_schema

    runtime = Runtime.build(settings)
    ensure_schema(runtime.engine, settings)  # an outdated schema raises; ``relay`` reports it (exit 2)

    async def main() -> None:
        from app.transcriptions import start_transcription_service

        workers = await start_workers(runtime)
        transcriptions = await start_transcription_service(runtime)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, workers.stop_event.set)
        log.info("relay worker %s started", workers.worker.owner)
        await workers.stop_event.wait()
        log.info("relay worker draining (grace %.0f s)", settings.shutdown_grace)
        if transcriptions is not None:
            await transcriptions.stop()
        await workers.stop()

    asyncio.run(main())
    runtime.close()
    return 0
