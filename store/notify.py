"""PostgreSQL ``LISTEN/NOTIFY``: a result accepted by one replica wakes the workers of every replica.

Polling stays the backstop, so a lost notification only delays delivery to the next poll. The
listener's session doubles as the worker's presence (``store.presence.PgPresence``): its
``application_name`` names the worker, and it reconnects on its own after any outage.
Both run in daemon threads; errors are reported to an injected callback (the composition root
counts them as ``relay_loop_errors_total{loop="notify"|"listen"}``) and never end the thread.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from store.session import Database

log = logging.getLogger("relay.notify")

CHANNEL = "relay_work"
RECONNECT_FIRST_S = 0.25
RECONNECT_CAP_S = 3.0

ErrorHook = Callable[[BaseException], None]


def _ignore(_: BaseException) -> None:
    return None


class PgNotifier:
    """Sends ``NOTIFY relay_work`` from a background thread; bursts of wake-ups coalesce into one."""

    def __init__(self, db: Database, *, on_error: ErrorHook = _ignore) -> None:
        self._engine = db.engine
        self._on_error = on_error
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
            except Exception as exc:  # noqa: BLE001 - a lost wake-up only delays delivery to the next poll
                self._on_error(exc)
                log.debug("NOTIFY failed; workers will find the work at their next poll", exc_info=True)

    def close(self) -> None:
        """Stop the thread."""
        self._closed = True
        self._pending.set()


class PgListener:
    """``LISTEN relay_work`` on its own connection; every notification (and every reconnect) wakes the worker."""

    def __init__(self, url: str, on_notify: Callable[[], None], *, application_name: str = "relay",
                 on_error: ErrorHook = _ignore, on_tick: Callable[[], None] | None = None) -> None:
        self._conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._on_notify, self._on_error, self._on_tick = on_notify, on_error, on_tick
        self._application_name = application_name
        self._stopped = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        """True while the LISTEN session is up (the worker's presence on PostgreSQL)."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the session is up or ``timeout`` passes; returns whether it is up."""
        return self._connected.wait(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5,
                                     application_name=self._application_name) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._connected.set()
                    failures = 0
                    self._on_notify()  # work may have arrived while we were away
                    while not self._stopped.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self._on_notify()
                        if self._on_tick is not None:
                            self._on_tick()
            except Exception as exc:  # noqa: BLE001 - reconnect; polling covers the gap
                self._connected.clear()
                failures += 1
                self._on_error(exc)
                log.debug("LISTEN connection lost; reconnecting", exc_info=True)
                ceiling = min(RECONNECT_CAP_S, RECONNECT_FIRST_S * 2 ** (failures - 1))
                self._stopped.wait(random.uniform(ceiling / 2, ceiling))
        self._connected.clear()

    def close(self) -> None:
        """Stop listening."""
        self._stopped.set()
