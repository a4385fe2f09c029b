"""Durable transcription jobs: the store that holds them and the service that runs them.

A job is a row of ``transcriptions`` holding the uploaded audio until its transcript is stored as
a Result. ``TranscriptionStore`` is the only code that touches the table: one method per operation,
each one transaction, the claim (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, an IMMEDIATE write
transaction on SQLite) in one place. ``TranscriptionService`` owns the engine (faster-whisper in a
process pool, created on the first job so a relay that never transcribes never loads a model) and
the loop that claims jobs, feeds them to the engine and turns transcripts into Results.

A job's life: ``queued`` → ``running`` (leased, progress and lease renewed while it runs) →
``done`` (result stored, audio dropped) | ``failed`` (reason in words; a notice is delivered through
the route so nobody waits for a transcript that will never come). A stopped relay puts its jobs
back to ``queued``; a crashed one leaves ``running`` rows whose leases expire and are claimed again.
Every attempt creates its Result with the idempotency key ``transcription:<id>``, so a job that is
run twice (a lease lost, a crash after the result was stored) still produces exactly one Result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from time import monotonic
from typing import Any, Protocol

from app.runtime import Runtime
from app.transcription_jobs import MAX_ATTEMPTS, failure_result, transcribe_options, transcript_result
from delivery.supervise import supervise
from store.errors import StoreUnavailable
from store.transcriptions import AudioMissing, Job
from transcription import (
    EngineClosed,
    InvalidAudio,
    TranscribeOptions,
    Transcript,
    TranscriptionCrashed,
    TranscriptionEngine,
    TranscriptionError,
)

log = logging.getLogger("relay.transcriptions")

PROGRESS_INTERVAL_S = 0.5  # at most one progress write per job per this many seconds


class Engine(Protocol):
    """What the service needs of ``transcription.TranscriptionEngine`` (tests pass a fake)."""

    async def transcribe(self, audio_path: str | os.PathLike[str], options: TranscribeOptions | None = None,
                         on_progress: Any = None) -> Transcript:
        """Transcribe one file."""

    async def close(self) -> None:
        """Stop the workers, abandoning running jobs."""


class _Progress:
    """The newest progress of one job, written by the engine's callback, read by the heartbeat."""

    def __init__(self, duration: float | None) -> None:
        self.processed = 0.0
        self.duration = duration
        self.version = 0

    def update(self, done: float, total: float) -> None:
        """The engine's ``on_progress``: remember only; the heartbeat decides when to write."""
        self.processed, self.duration = done, total or self.duration
        self.version += 1


class TranscriptionService:
    """Claims queued jobs, runs them in the engine's process pool, stores their Results.

    At most ``RELAY_TRANSCRIPTION_WORKERS`` jobs run at once (one per worker process). Every
    database call goes through ``asyncio.to_thread`` and every transcription through the pool, so
    the event loop serving the API never waits on either.
    """

    def __init__(self, runtime: Runtime, *, engine_factory: Callable[[], Engine] | None = None) -> None:
        settings = runtime.settings
        self._runtime = runtime
        self.store = runtime.transcriptions
        self.owner = f"tr-{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        self._factory = engine_factory or (lambda: TranscriptionEngine(
            settings.whisper_model, settings.whisper_device, settings.transcription_workers))
        self._capacity = settings.transcription_workers
        self._lease_s = settings.lease_seconds
        self._engine: Engine | None = None
        self._engine_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self._jobs: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """True while the claim loop runs."""
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        """A job was just committed: claim it now instead of at the next poll."""
        self._wakeup.set()

    async def start(self) -> None:
        """Start the claim loop (the model loads with the first job)."""
        self._task = asyncio.create_task(self._loop(), name="transcription-service")

    async def stop(self) -> None:
        """Stop claiming, close the engine (running jobs go back to the queue), wait for the jobs."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            await engine.close()
        if self._jobs:
            _, late = await asyncio.wait(self._jobs, timeout=self._runtime.settings.shutdown_grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        # A job whose future the closing pool cancelled ends without reaching its own requeue.
        try:
            await asyncio.to_thread(self.store.release_owned, self.owner)
        except StoreUnavailable as exc:
            log.warning("transcription leases not released (%s); they will expire", exc)

    async def _loop(self) -> None:
        """The claim loop, supervised: a store outage or a bug in one pass is counted and backed off from."""
        await supervise("transcriptions", self._claim_step, stop=self._stop, monitor=self._runtime.loops,
                        pause=self._pause)

    async def _claim_step(self) -> float:
        self._wakeup.clear()  # before claiming, so a wake-up during the claim is not lost
        while len(self._jobs) < self._capacity and not self._stop.is_set():
            job = await asyncio.to_thread(self.store.claim, self.owner, lease_s=self._lease_s)
            if job is None:
                break
            task = asyncio.create_task(self._run(job), name=f"transcription-{job.id}")
            self._jobs.add(task)
            task.add_done_callback(self._job_done)
        return self._runtime.settings.poll_interval

    async def _pause(self, seconds: float) -> None:
        waits = [asyncio.create_task(self._wakeup.wait()), asyncio.create_task(self._stop.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._jobs.discard(task)
        self._wakeup.set()  # a slot is free
        if not task.cancelled() and task.exception() is not None:
            log.error("transcription job task died", exc_info=task.exception())

    async def _get_engine(self) -> Engine:
        async with self._engine_lock:
            if self._stop.is_set():
                raise EngineClosed()
            if self._engine is None:
                # Resolving the model may import CTranslate2: seconds of blocking work, off the loop.
                self._engine = await asyncio.to_thread(self._factory)
            return self._engine

    async def _run(self, job: Job) -> None:
        """One attempt at one job; every outcome ends in a store write (or a lease left to expire)."""
        store = self.store
        try:
            if job.attempts > MAX_ATTEMPTS:
                await self._give_up(job, f"the job was interrupted {job.attempts - 1} times "
                                         "(the relay stopped or its worker crashed while it ran)")
                return
            existing = await asyncio.to_thread(store.existing_result, job.key_id, job.idempotency_key)
            if existing is None:
                transcript = await self._transcribe(job)
                new = transcript_result(job, transcript, model=self._runtime.settings.whisper_model)
                result_id, _ = await self._runtime.results.create_async(new)
                language, duration = transcript.language, transcript.duration
            else:  # an earlier attempt stored the Result and died before recording it here
                result_id, language, duration = existing, None, None
            await asyncio.to_thread(store.finish, job.id, status="done", result_id=result_id, language=language,
                                    duration=duration, keep_audio=self._runtime.settings.keep_audio)
            self._runtime.wake_workers()
            log.info("transcription %s done: result %s", job.id, result_id)
        except EngineClosed:
            await self._requeue(job, count_attempt=False, error=None)
        except TranscriptionCrashed as exc:
            if job.attempts >= MAX_ATTEMPTS:
                await self._give_up(job, f"the transcription worker crashed {job.attempts} times "
                                         f"(last: {exc.reason})")
            else:
                log.warning("transcription %s: worker crashed (%s); retrying", job.id, exc.reason)
                await self._requeue(job, count_attempt=True, error=str(exc))
        except TranscriptionError as exc:  # invalid audio, model missing or unloadable: retrying cannot help
            await self._give_up(job, str(exc))
        except StoreUnavailable as exc:
            # Nothing can be written now; the lease expires and the job is claimed again later.
            log.warning("transcription %s: store unavailable (%s); the job will be retried", job.id, exc)

    async def _transcribe(self, job: Job) -> Transcript:
        """Audio to a private temp file, through the engine, progress to the row, file removed."""
        engine = await self._get_engine()
        directory = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="relay-tr-"))
        progress = _Progress(job.duration)
        heartbeat = asyncio.create_task(self._heartbeat(job, progress), name=f"transcription-heartbeat-{job.id}")
        try:
            path = directory / f"audio{job.audio_suffix()}"
            try:
                await asyncio.to_thread(self.store.write_audio, job.id, path)
            except AudioMissing as exc:
                raise InvalidAudio(str(exc)) from None
            return await engine.transcribe(path, transcribe_options(job), on_progress=progress.update)
        finally:
            heartbeat.cancel()
            await asyncio.wait([heartbeat])
            await asyncio.to_thread(shutil.rmtree, directory, True)

    async def _heartbeat(self, job: Job, progress: _Progress) -> None:
        """Write progress at most every ``PROGRESS_INTERVAL_S``, and renew the lease well before it ends."""
        written, last = 0, monotonic()
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            if progress.version == written and monotonic() - last < self._lease_s / 3:
                continue
            written, last = progress.version, monotonic()
            try:
                held = await asyncio.to_thread(self.store.heartbeat, job.id, self.owner, processed=progress.processed,
                                               duration=progress.duration, lease_s=self._lease_s)
            except StoreUnavailable as exc:
                log.warning("transcription %s: progress not recorded, store unavailable: %s", job.id, exc)
                continue
            if not held:
                # Another worker took the job over (our lease expired); its Result and ours share
                # one idempotency key, so finishing anyway cannot deliver twice.
                log.warning("transcription %s: lease lost to another worker", job.id)

    async def _requeue(self, job: Job, *, count_attempt: bool, error: str | None) -> None:
        try:
            await asyncio.shield(asyncio.to_thread(self.store.requeue, job.id, self.owner,
                                                   count_attempt=count_attempt, error=error))
        except StoreUnavailable as exc:
            log.warning("transcription %s not requeued (%s); its lease will expire", job.id, exc)
        self._wakeup.set()

    async def _give_up(self, job: Job, reason: str) -> None:
        """Fail the job and deliver a notice through its route, once (same idempotency key as a transcript)."""
        log.warning("transcription %s failed: %s", job.id, reason)
        result_id: str | None = None
        try:
            result_id, _ = await self._runtime.results.create_async(failure_result(job, reason))
        except Exception:  # noqa: BLE001 - the job must still be marked failed; the notice is a courtesy
            log.exception("transcription %s: could not store the failure notice", job.id)
        await asyncio.shield(asyncio.to_thread(self.store.finish, job.id, status="failed", result_id=result_id,
                                               error=reason, keep_audio=self._runtime.settings.keep_audio))
        if result_id is not None:
            self._runtime.wake_workers()


async def start_transcription_service(runtime: Runtime) -> TranscriptionService | None:
    """The service for this process, or None when the ``[transcription]`` extra is not installed."""
    import transcription

    if not transcription.available():
        log.info("transcription is not installed ([transcription] extra); jobs are not processed here")
        return None
    service = TranscriptionService(runtime)
    await service.start()
    return service
