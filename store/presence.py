"""Worker presence: which lease owners are still alive, so a restarted relay takes over at once.

A lease names its owner. When the owner dies (SIGKILL, OOM, node loss) the lease would block its
destinations until it expires (``RELAY_LEASE_SECONDS``). Presence lets another worker see that
the owner is gone and take the destinations over immediately; expiry stays the backstop.

- SQLite (one host, one file): each worker holds an exclusive ``flock`` on a file of its own
  beside the database. The kernel drops the lock when the process dies, however it dies, so a
  lock another worker can take belongs to a dead owner. No clocks, no pid reuse.
- PostgreSQL: each worker keeps one session open whose ``application_name`` is its presence name
  (the ``LISTEN`` connection, see ``store.notify``). An owner with no such session in
  ``pg_stat_activity`` is gone. A session can also drop while its process lives on (a network
  blip, ``pg_terminate_backend``, a server restart), so an owner must be seen absent for
  ``confirm_s`` before its leases are taken (the worker reconnects well within that).

Only owners whose name ends in ``PRESENCE_MARK`` publish presence; leases of other owners (an
older relay during a rolling upgrade, a worker without presence) wait for expiry as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from sqlalchemy import text

from store.session import Database, translated

PRESENCE_MARK = ":p"
PG_APP_PREFIX = "relay:"
PG_APP_NAME_MAX = 63  # NAMEDATALEN - 1: PostgreSQL truncates longer application names


def new_owner_id(*, presence: bool) -> str:
    """A worker's lease-owner name: host, pid and a random tag (and the presence mark if it has one)."""
    host = socket.gethostname()[:32]
    tag = f"{host}:{os.getpid()}:{random.randrange(16**6):06x}"
    return tag + PRESENCE_MARK if presence else tag


def publishes_presence(owner: str) -> bool:
    """Whether ``owner`` announces itself, so that its absence means it is dead."""
    return owner.endswith(PRESENCE_MARK)


def pg_application_name(owner: str) -> str:
    """The ``application_name`` under which ``owner`` keeps its presence session."""
    return (PG_APP_PREFIX + owner)[:PG_APP_NAME_MAX]


class Presence(Protocol):
    """What the delivery worker needs to know about lease owners."""

    owner: str
    confirm_s: float

    def alive(self) -> bool:
        """Whether this worker's own presence is published now (it should not claim otherwise)."""

    def dead_owners(self, owners: Iterable[str]) -> set[str]:
        """The owners among ``owners`` that are certainly gone now."""

    def close(self) -> None:
        """Withdraw this worker's presence (clean shutdown)."""


def _lock_name(owner: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", owner) + ".lock"


class FilePresence:
    """Presence on one host: an exclusive ``flock`` held for the life of the process."""

    confirm_s = 0.0  # the kernel releases the lock exactly when the process dies

    def __init__(self, directory: Path, owner: str) -> None:
        self.owner = owner
        self._dir = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._path = directory / _lock_name(owner)
        self._fd: int | None = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    @classmethod
    def beside(cls, database_file: Path, owner: str) -> FilePresence:
        """Presence files in ``<database>.workers/`` next to the SQLite file."""
        return cls(database_file.with_name(database_file.name + ".workers"), owner)

    def alive(self) -> bool:
        """Always: the lock is held from construction to ``close``."""
        return self._fd is not None

    def dead_owners(self, owners: Iterable[str]) -> set[str]:
        """Owners whose lock file is gone or whose lock nobody holds any more."""
        dead = set()
        for owner in owners:
            if owner == self.owner or not publishes_presence(owner):
                continue
            path = self._dir / _lock_name(owner)
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                dead.add(owner)  # it never published here, or closed cleanly (and released its leases)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # held: alive
            else:
                dead.add(owner)
                with contextlib.suppress(OSError):
                    path.unlink()
            finally:
                os.close(fd)
        return dead

    def close(self) -> None:
        """Release the lock and remove the file."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self._path.unlink()
        os.close(self._fd)
        self._fd = None


class PgPresence:
    """Presence on PostgreSQL: a session named after the owner, checked in ``pg_stat_activity``."""

    confirm_s = 2.0

    def __init__(self, db: Database, owner: str, connected: Callable[[], bool]) -> None:
        self.owner = owner
        self._engine = db.engine
        self._connected = connected

    def alive(self) -> bool:
        """True while the presence session (the LISTEN connection) is up."""
        return self._connected()

    def dead_owners(self, owners: Iterable[str]) -> set[str]:
        """Owners that publish presence and have no session in this database now."""
        candidates = {o for o in owners if o != self.owner and publishes_presence(o)}
        if not candidates:
            return set()
        with translated(), self._engine.connect() as conn:
            live = set(conn.execute(text(
                "SELECT application_name FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name LIKE :prefix"),
                {"prefix": PG_APP_PREFIX + "%"}).scalars())
        return {o for o in candidates if pg_application_name(o) not in live}

    def close(self) -> None:
        """Nothing of its own: the session closes with the listener."""
