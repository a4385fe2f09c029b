"""The FastAPI application: routers, error handlers, and the lifespan that owns every resource.

The lifespan is the only start/stop path: it opens the store (migrating the embedded SQLite file,
refusing an outdated PostgreSQL schema), starts the retention purge and the delivery workers, and
stops them in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from app.admin import router as admin_router
from app.api import destinations, health, metrics, progress, results, transcriptions
from app.api.transcriptions import TranscriptionBodyLimit
from app.errors import install_error_handlers
from app.interactions import open_interactions
from app.interactions import router as interactions_router
from app.openapi import install_openapi
from app.runtime import Runtime
from app.settings import Settings
from app.transcriptions import start_transcription_service
from app.workers import start_workers, startup_frozen, wire_wakeups
from delivery.supervise import supervise
from schemas.clock import utcnow
from store.results import retention_cutoffs

log = logging.getLogger("relay.app")


async def purge_forever(runtime: Runtime, stop: asyncio.Event) -> None:
    """Retention: every ``purge_interval`` seconds, delete finished results past their retention.

    Supervised: a pass that fails (store away) is counted and retried after a short backoff.
    """
    settings = runtime.settings

    async def step() -> float:
        delivered_before, undelivered_before = retention_cutoffs(
            utcnow(), settings.retention_delivered, settings.retention_undelivered)
        purged = await run_in_threadpool(
            runtime.results.purge, delivered_before=delivered_before, undelivered_before=undelivered_before)
        if purged:
            log.info("retention purged %d results", purged)
        return settings.purge_interval

    await supervise("retention-purge", step, stop=stop, monitor=runtime.loops)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """An app for ``settings`` (read from the environment when omitted)."""
    settings = settings or (runtime.settings if runtime else Settings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime.build(settings)
        await run_in_threadpool(rt.db.ensure_schema)
        app.state.runtime = rt
        app.state.interactions, close_interactions = open_interactions(rt)
        workers = await start_workers(rt) if settings.run_workers else None
        app.state.transcriptions = await start_transcription_service(rt) if settings.run_workers else None
        close_wakeups = wire_wakeups(rt, workers)
        purge_stop = asyncio.Event()
        purge = asyncio.create_task(purge_forever(rt, purge_stop), name="retention-purge")
        try:
            with startup_frozen():
                yield
        finally:
            purge_stop.set()
            await purge
            if app.state.transcriptions is not None:
                await app.state.transcriptions.stop()
            if workers is not None:
                await workers.stop()
            close_wakeups()
            await close_interactions()
            if runtime is None:
                rt.close()

    # /docs and /redoc from assets that ship in the fastapi-offline wheel: they work with no CDN,
    # like the admin page (a relay often runs where the internet is not reachable).
    app = FastAPIOffline(
        title="result-relay",
        version="0.1.0",
        summary="Durable delivery of workflow results to Discord.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_openapi(app, settings.discord_api_base)
    app.include_router(results.router)
    app.include_router(progress.router)
    app.include_router(destinations.router)
    app.include_router(transcriptions.router)
    app.include_router(health.router)
    app.include_router(admin_router)
    app.include_router(metrics.router)
    app.include_router(interactions_router)
    app.add_middleware(TranscriptionBodyLimit, limit=settings.max_result_bytes, audio_limit=settings.max_audio_bytes)
    return app
