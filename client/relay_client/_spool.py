"""The durable spool: results the relay could not take yet, in one SQLite file (stdlib ``sqlite3``).

An entry is the request exactly as it will be sent (the JSON body, the Idempotency-Key, the
files' bytes copied in, 1 MiB per row), written in one transaction: it is in the spool whole or
not at all. Sending it is a claim (owner + lease) taken in a ``BEGIN IMMEDIATE`` transaction, so
several processes sharing the file never send one entry at the same time; the entry is deleted
only after the relay answered 2xx. A producer killed between the relay's 202 and the delete leaves
the entry in place, and its next sender repeats the same key: the relay answers with the
original id instead of creating a second result. A claim whose owner died (same host, pid gone)
or whose lease ran out is taken over.

Nothing leaves the spool unreported: an entry older than ``max_age`` is marked ``expired`` and
one the relay refused for good (a 4xx) is marked ``rejected``; both are logged, counted by
``stats()`` and kept until ``purge()``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay_client._exceptions import SpoolFull
from relay_client._files import FileSpec

log = logging.getLogger("relay_client.spool")

CHUNK = 1024 * 1024
DEFAULT_MAX_BYTES = 1024**3
DEFAULT_MAX_AGE = 7 * 24 * 3600.0
LEASE_S = 600.0  # a lease outlives any sane upload; a dead owner on this host is detected sooner by pid
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    owner TEXT, owner_host TEXT, owner_pid INTEGER, lease_until REAL
);
CREATE TABLE IF NOT EXISTS files (
    entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    n INTEGER NOT NULL, name TEXT NOT NULL, content_type TEXT NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (entry_id, n)
);
CREATE TABLE IF NOT EXISTS chunks (
    entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    n INTEGER NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (entry_id, n, seq)
);
"""


@dataclass(frozen=True)
class SpoolStats:
    """What the spool holds: ``pending`` entries waiting to be sent, and the ones it reports."""

    pending: int
    pending_bytes: int
    expired: int
    rejected: int
    total_bytes: int
    sent: int
    """Entries this ``Spool`` object handed over since it was opened."""


@dataclass(frozen=True)
class SpoolEntry:
    """A claimed entry: what to send, and with which key."""

    id: int
    idempotency_key: str
    payload: dict[str, Any]
    files: list[FileSpec]
    created_at: float
    attempts: int
    claim: str


@dataclass(frozen=True)
class ReportedEntry:
    """An expired or rejected entry, kept for the operator."""

    id: int
    idempotency_key: str
    state: str
    payload: dict[str, Any]
    created_at: float
    last_error: str | None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    """A spool file; safe to share between threads (one lock) and processes (SQLite locking)."""

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_age: float = DEFAULT_MAX_AGE) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_age = max_bytes, max_age
        self._host, self._pid = socket.gethostname(), os.getpid()
        self._owner = f"{self._host}:{self._pid}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.RLock()
        self._sent = 0
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=FULL")  # an entry is the only copy of a result: fsync it
        with self._tx():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)

    def __repr__(self) -> str:
        return f"Spool({str(self.path)!r})"

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the file (entries stay in it)."""
        with self._lock:
            self._db.close()

    def put(self, idempotency_key: str, payload: dict[str, Any], files: Sequence[FileSpec] = ()) -> int:
        """Store a request whole (files copied in), or raise ``SpoolFull``; its id."""
        body = json.dumps(payload, separators=(",", ":"))
        size = len(body.encode()) + sum(spec.size() for spec in files)
        with self._tx() as db:
            row = db.execute("SELECT id FROM entries WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
            if row is not None:
                return int(row[0])  # spooled already (a retry of the same send): one entry, one result
            used = db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
            if used + size > self.max_bytes:
                raise SpoolFull(f"the spool {self.path} holds {used} bytes; this result ({size} bytes) would put it "
                                f"over spool_max_bytes={self.max_bytes}. Nothing was dropped: the result was not "
                                "taken. Free space by letting it flush, or purge() expired/rejected entries.")
            cur = db.execute("INSERT INTO entries (idempotency_key, payload, size, created_at) VALUES (?, ?, ?, ?)",
                             (idempotency_key, body, size, time.time()))
            entry_id = int(cur.lastrowid or 0)
            for n, spec in enumerate(files):
                db.execute("INSERT INTO files (entry_id, n, name, content_type, size) VALUES (?, ?, ?, ?, ?)",
                           (entry_id, n, spec.name, spec.content_type, spec.size()))
                with spec.open() as fh:
                    seq = 0
                    while chunk := fh.read(CHUNK):
                        db.execute("INSERT INTO chunks (entry_id, n, seq, data) VALUES (?, ?, ?, ?)",
                                   (entry_id, n, seq, chunk))
                        seq += 1
        log.info("spooled result %s (%d bytes) in %s", idempotency_key, size, self.path)
        return entry_id

    def _claimable(self, row: sqlite3.Row | tuple[Any, ...], now: float) -> bool:
        owner, host, pid, lease_until = row
        if owner is None or lease_until is None or lease_until < now:
            return True
        # Claims are per call, not per process: the flusher thread and a flush() in the same
        # process must not both hold one entry. A claim of a dead process on this host is free.
        return bool(host == self._host and pid != self._pid and not _pid_alive(int(pid)))

    def claim(self) -> SpoolEntry | None:
        """Take the oldest pending entry nobody alive is sending (expiring old ones on the way)."""
        now = time.time()
        with self._tx() as db:
            self._expire(db, now)
            rows = db.execute("SELECT id, owner, owner_host, owner_pid, lease_until FROM entries "
                              "WHERE state = 'pending' ORDER BY id").fetchall()
            chosen = next((r[0] for r in rows if self._claimable(r[1:], now)), None)
            if chosen is None:
                return None
            claim = f"{self._owner}:{uuid.uuid4().hex[:8]}"
            db.execute("UPDATE entries SET owner = ?, owner_host = ?, owner_pid = ?, lease_until = ?, "
                       "attempts = attempts + 1 WHERE id = ?",
                       (claim, self._host, self._pid, now + LEASE_S, chosen))
            key, payload, created, attempts = db.execute(
                "SELECT idempotency_key, payload, created_at, attempts FROM entries WHERE id = ?",
                (chosen,)).fetchone()
            files = [FileSpec(name, ctype, _SpoolFileSource(self, chosen, n, size))  # type: ignore[arg-type]
                     for n, name, ctype, size in db.execute(
                         "SELECT n, name, content_type, size FROM files WHERE entry_id = ? ORDER BY n", (chosen,))]
        return SpoolEntry(chosen, key, json.loads(payload), files, created, attempts, claim)

    def in_flight_here(self) -> int:
        """Pending entries that this process is sending right now (its flusher thread, say)."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM entries WHERE state = 'pending' AND owner_pid = ? "
                                   "AND owner_host = ? AND lease_until >= ?",
                                   (self._pid, self._host, time.time())).fetchone()
        return int(row[0])

    def _expire(self, db: sqlite3.Connection, now: float) -> None:
        old = db.execute("SELECT id, idempotency_key, created_at FROM entries WHERE state = 'pending' "
                         "AND created_at < ?", (now - self.max_age,)).fetchall()
        for entry_id, key, created in old:
            log.error("spooled result %s expired unsent after %.0f s (spool_max_age=%.0f s); kept in %s as "
                      "'expired' until purge()", key, now - created, self.max_age, self.path)
            db.execute("UPDATE entries SET state = 'expired', owner = NULL WHERE id = ?", (entry_id,))

    def done(self, entry_id: int) -> None:
        """The relay took it: remove it (files too)."""
        with self._tx() as db:
            db.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
        self._sent += 1

    def release(self, entry: SpoolEntry, error: str) -> None:
        """Sending failed for now: let anyone (this flusher after its backoff, included) take it again."""
        with self._tx() as db:
            db.execute("UPDATE entries SET owner = NULL, lease_until = NULL, last_error = ? WHERE id = ? "
                       "AND owner = ?", (error[:1000], entry.id, entry.claim))

    def reject(self, entry_id: int, error: str) -> None:
        """The relay refused it for good (4xx): keep it as ``rejected`` and say so loudly."""
        with self._tx() as db:
            db.execute("UPDATE entries SET state = 'rejected', owner = NULL, last_error = ? WHERE id = ?",
                       (error[:1000], entry_id))
        log.error("spooled entry %d was refused by the relay and is kept as 'rejected': %s", entry_id, error)

    def stats(self) -> SpoolStats:
        """Counts and bytes by state (expiring what is due first, so the counts are current)."""
        with self._tx() as db:
            self._expire(db, time.time())
            by_state = {state: (count, size) for state, count, size in db.execute(
                "SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM entries GROUP BY state")}
        pending = by_state.get("pending", (0, 0))
        return SpoolStats(pending=pending[0], pending_bytes=pending[1], expired=by_state.get("expired", (0, 0))[0],
                          rejected=by_state.get("rejected", (0, 0))[0],
                          total_bytes=sum(size for _, size in by_state.values()), sent=self._sent)

    def reported(self) -> list[ReportedEntry]:
        """The expired and rejected entries, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, idempotency_key, state, payload, created_at, last_error FROM entries "
                                    "WHERE state != 'pending' ORDER BY id").fetchall()
        return [ReportedEntry(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    def purge(self, *, states: Sequence[str] = ("expired", "rejected")) -> int:
        """Delete reported entries (never pending ones unless asked); how many went."""
        marks = ",".join("?" * len(states))
        with self._tx() as db:
            return db.execute(f"DELETE FROM entries WHERE state IN ({marks})", tuple(states)).rowcount

    def read_chunk(self, entry_id: int, n: int, seq: int) -> bytes:
        """One stored piece of a spooled file."""
        with self._lock:
            row = self._db.execute("SELECT data FROM chunks WHERE entry_id = ? AND n = ? AND seq = ?",
                                   (entry_id, n, seq)).fetchone()
        return bytes(row[0]) if row else b""


class _SpoolFileSource:
    """A spooled file as a seekable binary reader, fetched from the spool 1 MiB at a time."""

    def __init__(self, spool: Spool, entry_id: int, n: int, size: int) -> None:
        self._spool, self._entry, self._n, self._size = spool, entry_id, n, size
        self._pos = 0
        self._cached: tuple[int, bytes] = (-1, b"")

    def _chunk(self, seq: int) -> bytes:
        if self._cached[0] != seq:  # httpx reads 64 KiB at a time; fetch each stored MiB once
            self._cached = (seq, self._spool.read_chunk(self._entry, self._n, seq))
        return self._cached[1]

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from the current position."""
        if self._pos >= self._size:
            return b""
        want = self._size - self._pos if size < 0 else min(size, self._size - self._pos)
        out = bytearray()
        while len(out) < want:
            seq, offset = divmod(self._pos, CHUNK)
            piece = self._chunk(seq)[offset:offset + want - len(out)]
            if not piece:
                break
            out += piece
            self._pos += len(piece)
        return bytes(out)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move; ``seek(0, SEEK_END)`` tells httpx the length without reading."""
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        """The current position."""
        return self._pos

