"""Group commit: many concurrent writers, one writer thread (or a few), one transaction per batch.

Why: a durable ``202`` needs a committed transaction per request. With one transaction per request,
every request thread contends for the store's single write lock (SQLite's ``BEGIN IMMEDIATE``
waits in the busy handler's sleep-and-retry loop, tens of milliseconds per round under load) and
pays a full session/transaction/commit. A single writer thread instead takes everything queued
since its last commit, writes it in one transaction, commits, and only then resolves each caller's
future: "202 means committed" holds per item, while the lock is never fought over and the commit
cost is shared. There is no artificial wait: a lone request is written at once, and batches form
by themselves while the previous batch is committing.

On a store that takes concurrent writers (PostgreSQL), ``writers`` threads may each hold a batch at
once: a writer that waits for the database's answer to one statement after another (a network
round trip each) was the limit of the delivery engine there, with the cores idle. A second thread
starts only when every running one is busy and items are waiting, so a light load still forms one
batch at a time. Items of one caller stay in order only because a caller waits for each outcome
before it submits the next; nothing orders items of different callers.

The committer knows nothing about results: ``write_batch`` receives the items and returns one
outcome per item, a value or an exception (so one bad item fails alone). A thread starts on the
first submission and each ends after ``idle_exit_s`` without work, so a store that is dropped (tests,
CLI commands) leaves no thread behind and needs no close hook.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger("relay.group_commit")

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class CommitStats:
    """Counters for tests and benchmarks: how many batches, items, and the largest batch."""

    batches: int = 0
    items: int = 0
    largest: int = 0


class GroupCommitter(Generic[T, R]):
    """Batches items submitted from any thread (or event loop) into calls of ``write_batch``."""

    def __init__(
        self,
        write_batch: Callable[[list[T]], Sequence[R | BaseException]],
        *,
        max_items: int = 256,
        max_bytes: int = 32 * 1024 * 1024,
        size_of: Callable[[T], int] = lambda _item: 0,
        idle_exit_s: float = 2.0,
        name: str = "group-commit",
        writers: int = 1,
    ) -> None:
        if writers < 1:
            raise ValueError("a group committer needs at least one writer thread")
        self._write_batch = write_batch
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._size_of = size_of
        self._idle_exit_s = idle_exit_s
        self._name = name
        self._cond = threading.Condition()
        self._pending: list[tuple[T, Future[R]]] = []
        self._writers = writers
        self._threads = 0  # writer threads alive
        self._waiting = 0  # of them, those waiting for items
        self.stats = CommitStats()

    def submit(self, item: T) -> Future[R]:
        """Queue ``item``; the future resolves after the transaction holding it commits (or fails)."""
        future: Future[R] = Future()
        with self._cond:
            self._pending.append((item, future))
            if self._waiting:
                self._cond.notify()
            elif self._threads < self._writers:
                self._threads += 1
                name = self._name if self._writers == 1 else f"{self._name}-{self._threads}"
                threading.Thread(target=self._run, name=name, daemon=True).start()
        return future

    def call(self, item: T) -> R:
        """Submit and wait (for callers already on a worker thread)."""
        return self.submit(item).result()

    async def call_async(self, item: T) -> R:
        """Submit and await without occupying a thread-pool thread while the batch commits."""
        return await asyncio.wrap_future(self.submit(item))

    def _take_batch(self) -> list[tuple[T, Future[R]]]:
        # Called with the lock held and ``_pending`` non-empty. Always takes at least one item, so an
        # item over ``max_bytes`` still goes (alone).
        size = 0
        count = 0
        for item, _ in self._pending:
            size += self._size_of(item)
            if count and (count >= self._max_items or size > self._max_bytes):
                break
            count += 1
        batch, self._pending = self._pending[:count], self._pending[count:]
        # From here on a waiter can no longer cancel: what it submitted is written and it hears the
        # outcome. One that cancelled before (its task was cancelled) is left out, never written:
        # resolving a cancelled future would raise in this thread and end it.
        return [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._waiting += 1
                    notified = self._cond.wait(timeout=self._idle_exit_s)
                    self._waiting -= 1
                    if not notified and not self._pending:
                        # Decided under the lock: a later submit sees one thread fewer and starts one if needed.
                        self._threads -= 1
                        return
                batch = self._take_batch()
            self._process(batch)

    def _process(self, batch: list[tuple[T, Future[R]]]) -> None:
        if not batch:
            return
        items = [item for item, _ in batch]
        try:
            outcomes = list(self._write_batch(items))
            if len(outcomes) != len(items):
                raise RuntimeError(f"write_batch returned {len(outcomes)} outcomes for {len(items)} items")
        except BaseException as exc:  # noqa: BLE001 - every waiter must hear about it; the thread lives on
            log.exception("group commit of %d items failed", len(items))
            outcomes = [exc] * len(items)
        with self._cond:  # several writers may finish at once
            self.stats.batches += 1
            self.stats.items += len(items)
            self.stats.largest = max(self.stats.largest, len(items))
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
