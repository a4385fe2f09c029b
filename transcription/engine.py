"""The transcription engine: faster-whisper in a process pool, awaited without blocking.

CPU Whisper holds a core (and the GIL, in the parts that are Python) for
seconds to minutes per file; run in the service's own process it stalled the
event loop for 10-20 s at a time. Here every job runs in a worker process of a
``ProcessPoolExecutor`` started with ``spawn`` (forking a process that has an
event loop and threads copies locks in whatever state they were in), and the
parent only ever awaits: ``asyncio.wrap_future`` for results, a relay thread
for progress, ``asyncio.to_thread`` for anything that blocks.

A worker that dies (SIGKILL, the OOM killer, a native crash) breaks the whole
pool in the standard library's design. The engine turns that into
``TranscriptionCrashed`` for the jobs that were running, replaces the pool,
and runs jobs that had not yet reached a worker again on the new one.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import multiprocessing
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from . import _worker
from ._progress import JobChannel, ProgressRelay
from .audio import probe_audio
from .errors import EngineClosed, TranscriptionCrashed
from .model import ModelSpec, resolve_model
from .transcript import TranscribeOptions, Transcript

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, float], Awaitable[None] | None]
"""Called with (seconds of audio processed, total duration in seconds); may be async."""

# After the result arrives, how long to wait for the last progress messages.
# They were sent before the result, so this only matters if the relay is dead.
_PROGRESS_DRAIN_TIMEOUT = 30.0


class TranscriptionEngine:
    """Transcribes audio files in worker processes that each hold the model once.

    Create it in the application's lifespan, ``await start()`` to load the
    model in every worker before traffic arrives (``transcribe`` starts it
    lazily otherwise), and ``await close()`` on shutdown. Safe to share
    between coroutines, including ones running on different event loops.
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        workers: int = 1,
        *,
        compute_type: str | None = None,
        cpu_threads: int | None = None,
    ) -> None:
        """Resolve the model now, so a misconfiguration fails at construction.

        ``cpu_threads`` is per worker; by default the usable CPUs are split
        evenly between workers, because CTranslate2 otherwise starts one
        thread per core in every worker and they fight over the cores.
        """
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.spec: ModelSpec = resolve_model(model, device, compute_type)
        self.workers = workers
        self.cpu_threads = cpu_threads or max(1, _usable_cpus() // workers)
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()  # guards _pool and _closed; never held across a wait
        self._start_lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._manager: Any = None
        self._relay: ProgressRelay | None = None
        self._job_ids = itertools.count(1)
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"TranscriptionEngine(model={self.spec.name!r}, device={self.spec.device!r}, "
            f"compute_type={self.spec.compute_type!r}, workers={self.workers})"
        )

    async def __aenter__(self) -> TranscriptionEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the worker processes and load the model in each; idempotent.

        Raises ``ModelLoadError`` when a worker cannot load the model.
        """
        await asyncio.to_thread(self._start_blocking)
        pings = [asyncio.wrap_future(self._submit(_worker.ping)[1]) for _ in range(self.workers)]
        await asyncio.gather(*pings)

    async def transcribe(
        self,
        audio_path: str | os.PathLike[str],
        options: TranscribeOptions | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Transcript:
        """Transcribe one audio file in a worker process.

        Raises ``InvalidAudio`` (before using a worker) when the file is not
        decodable audio, ``TranscriptionCrashed`` when the worker died during
        the job, ``ModelLoadError`` and ``EngineClosed``. ``on_progress`` gets
        ``(0, duration)`` once the audio is decoded, then the end of each
        segment, then ``(duration, duration)``, all before this returns; an
        exception it raises propagates from here once the job has finished.

        Cancelling the caller abandons the result, but a job already running
        in a worker runs to its end: a process cannot be interrupted safely
        in the middle of CTranslate2.
        """
        options = options or TranscribeOptions()
        path = os.fspath(audio_path)
        self._ensure_open()
        await asyncio.to_thread(probe_audio, path)
        if self._relay is None:
            await asyncio.to_thread(self._start_blocking)
        assert self._relay is not None
        relay = self._relay

        for attempt in (1, 2):
            job_id = next(self._job_ids)
            channel = relay.register(job_id)
            try:
                pool, future = self._submit(_worker.run_job, job_id, path, options)
                try:
                    return await self._await_job(future, channel, on_progress)
                except BrokenProcessPool as exc:
                    self._replace_broken_pool(pool)
                    if self._closed:
                        raise EngineClosed() from exc
                    if channel.started or attempt == 2:
                        raise TranscriptionCrashed() from exc
                    logger.info("transcription job %d was queued behind a crashed worker; resubmitting", job_id)
                except Exception as exc:
                    if self._closed:  # e.g. the manager went first and progress could not be sent
                        raise EngineClosed() from exc
                    raise
            finally:
                relay.unregister(job_id)
        raise AssertionError("unreachable")  # the loop returns or raises

    def worker_pids(self) -> list[int]:
        """Process ids of the current pool's live workers (for diagnostics and tests)."""
        with self._lock:
            pool = self._pool
        return sorted(p.pid for p in _worker_processes(pool) if p.is_alive() and p.pid is not None)

    async def close(self) -> None:
        """Stop the workers, abandoning queued and running jobs, then stop the manager.

        Shutdown must not wait for a 20-minute transcription to end; jobs cut
        off here fail with ``EngineClosed`` and are for the job store to retry.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            # Snapshot first: shutdown() forgets the pool's processes at once.
            processes = _worker_processes(pool)
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            await asyncio.to_thread(_join_all, processes)
        await asyncio.to_thread(self._stop_progress)

    # -- internals -----------------------------------------------------------------

    def _ensure_open(self) -> None:
        if self._closed:
            raise EngineClosed()

    def _start_blocking(self) -> None:
        """Start the manager (its own process, hence blocking) and the relay, once."""
        with self._start_lock:
            self._ensure_open()
            if self._relay is None:
                self._manager = self._context.Manager()
                relay = ProgressRelay(self._manager.Queue())
                relay.start()
                self._relay = relay

    def _stop_progress(self) -> None:
        """Stop the relay, then the manager (blocking: waits for a concurrent start to finish)."""
        with self._start_lock:
            if self._relay is not None:
                self._relay.stop()
            if self._manager is not None:
                self._manager.shutdown()

    def _new_pool(self) -> ProcessPoolExecutor:
        assert self._relay is not None
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._context,
            initializer=_worker.initialize,
            initargs=(self.spec, self._relay.queue, self.cpu_threads),
        )

    def _submit(self, fn: Callable[..., Any], *args: Any) -> tuple[ProcessPoolExecutor, Future[Any]]:
        """Submit to the current pool, creating one if there is none.

        Submitting spawns a worker when none is idle: a fork-exec, not a wait.
        """
        with self._lock:
            self._ensure_open()
            if self._pool is None:
                self._pool = self._new_pool()
            pool = self._pool
        try:
            return pool, pool.submit(fn, *args)
        except BrokenProcessPool:
            # Broken between our last job and this one (a worker was killed
            # while idle): replace it and submit once more.
            self._replace_broken_pool(pool)
            return self._submit(fn, *args)

    async def _await_job(
        self, future: Future[Transcript], channel: JobChannel, on_progress: ProgressCallback | None
    ) -> Transcript:
        pump = asyncio.create_task(
            _pump_progress(channel, on_progress), name=f"transcription-progress-{channel.job_id}"
        )
        try:
            result = await asyncio.wrap_future(future)
        except BaseException:
            pump.cancel()
            await asyncio.wait([pump])
            raise
        done, _ = await asyncio.wait([pump], timeout=_PROGRESS_DRAIN_TIMEOUT)
        if not done:
            logger.warning("progress for transcription job %d did not finish arriving", channel.job_id)
            pump.cancel()
            await asyncio.wait([pump])
        else:
            pump.result()  # re-raise an exception from on_progress
        return result

    def _replace_broken_pool(self, broken: ProcessPoolExecutor) -> None:
        """Swap in a fresh pool (once, however many jobs saw the breakage) and warm it up."""
        with self._lock:
            if self._pool is not broken or self._closed:
                return
            logger.warning("a transcription worker died; starting a new process pool")
            self._pool = pool = self._new_pool()
        broken.shutdown(wait=False, cancel_futures=True)
        # Loading the model now, rather than in the next job, keeps that job's latency normal.
        for _ in range(self.workers):
            pool.submit(_worker.ping).add_done_callback(_log_warmup_failure)


async def _pump_progress(channel: JobChannel, on_progress: ProgressCallback | None) -> None:
    """Deliver one job's progress messages to ``on_progress`` in order, until ``done``."""
    while True:
        message = await channel.messages.get()
        kind = message[0]
        if kind == "done":
            return
        if kind == "progress" and on_progress is not None:
            outcome = on_progress(message[2], message[3])
            if inspect.isawaitable(outcome):
                await outcome


def _log_warmup_failure(future: Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        logger.warning("warming up a new transcription worker failed: %s", exc)


def _worker_processes(pool: ProcessPoolExecutor | None) -> list[multiprocessing.process.BaseProcess]:
    # ProcessPoolExecutor exposes no public list of its processes before
    # Python 3.14; ``_processes`` (pid -> Process) has been stable since 3.2.
    processes = getattr(pool, "_processes", None) or {}
    return list(dict(processes).values())


def _join_all(processes: list[multiprocessing.process.BaseProcess]) -> None:
    for process in processes:
        process.join()


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset and cgroup cpusets
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
