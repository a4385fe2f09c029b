"""Carrying progress messages from worker processes to the waiting coroutines.

Workers put small tuples on one ``multiprocessing.Manager().Queue()`` shared by
the whole engine. A manager queue, rather than ``multiprocessing.Queue``,
because every ``put`` is a complete request to the manager process: a worker
killed mid-``put`` loses that message, whereas one killed while holding a
``multiprocessing.Queue``'s pipe lock can leave the queue wedged for everyone.

One daemon thread in the parent blocks on the queue (so the event loop never
does) and hands each message to the event loop of the job it belongs to with
``call_soon_threadsafe``. Jobs are looked up by id, so messages from a job
whose caller has gone away are dropped, and one engine can serve coroutines
on different event loops (tests start a new loop per test).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

Message = tuple[Any, ...]


@dataclass(eq=False)
class JobChannel:
    """The parent's end of one job's progress stream."""

    job_id: int
    loop: asyncio.AbstractEventLoop
    messages: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    # Written by the relay thread and read on the loop; a plain attribute is
    # enough because the only transition is False -> True.
    started: bool = False


class ProgressRelay:
    """Reads the engine's progress queue on one thread and routes messages to jobs."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self._jobs: dict[int, JobChannel] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="transcription-progress", daemon=True)

    def start(self) -> None:
        """Start the reader thread."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Wake the reader with a sentinel and wait for it to finish (blocking: call from a thread)."""
        if self._thread.is_alive():
            try:
                self.queue.put(None)
            except (OSError, EOFError):
                return  # the manager is already gone, and the thread with it
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether messages are still being delivered."""
        return self._thread.is_alive()

    def register(self, job_id: int) -> JobChannel:
        """Open a channel for ``job_id`` on the running event loop; must be called on that loop."""
        channel = JobChannel(job_id, asyncio.get_running_loop())
        with self._lock:
            self._jobs[job_id] = channel
        return channel

    def unregister(self, job_id: int) -> None:
        """Stop routing messages for ``job_id``; later ones are dropped."""
        with self._lock:
            self._jobs.pop(job_id, None)

    def _run(self) -> None:
        while True:
            try:
                message = self.queue.get()
            except (OSError, EOFError):
                # The manager process went away; jobs still finish, they just
                # stop receiving progress, and the engine's drain wait times out.
                logger.warning("transcription progress queue closed; progress reports stop")
                return
            if message is None:
                return
            self._route(message)

    def _route(self, message: Message) -> None:
        with self._lock:
            channel = self._jobs.get(message[1])
        if channel is None:
            return
        if message[0] == "start":
            channel.started = True
        # RuntimeError: the job's loop has closed, so nobody is waiting for this message.
        with contextlib.suppress(RuntimeError):
            channel.loop.call_soon_threadsafe(channel.messages.put_nowait, message)
