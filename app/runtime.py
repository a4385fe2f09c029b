"""Everything one relay process holds: settings, store, cipher, and the hooks the workers listen on.

Built once by the lifespan (or by the CLI for one-off commands) and reached through ``app.deps``;
nothing is created at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from app.db import make_engine
from app.results import ResultStore
from app.secrets import Cipher
from app.settings import Settings
from app.store import Database, KeyStore
from delivery.supervise import LoopMonitor


@dataclass
class Runtime:
    """The process's shared objects."""

    settings: Settings
    engine: Engine
    db: Database
    keys: KeyStore
    results: ResultStore
    cipher: Cipher
    # Called after a result is committed so idle workers start at once instead of at the next poll.
    wake_workers: Callable[[], None] = field(default=lambda: None)
    workers_running: Callable[[], bool] = field(default=lambda: True)
    # Every supervised loop of the process reports here; ``/healthz`` reads it.
    loops: LoopMonitor = field(default_factory=LoopMonitor)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Open the store described by ``settings`` (no schema work; see ``app.db.ensure_schema``)."""
        engine = make_engine(settings)
        db = Database(engine)
        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        return cls(
            settings=settings, engine=engine, db=db,
            keys=KeyStore(db, configured_keys=[k.get_secret_value() for k in settings.api_keys]),
            results=ResultStore(db), cipher=Cipher(secret), loops=LoopMonitor(settings.loop_stall_seconds),
        )

    def close(self) -> None:
        """Release database connections."""
        self.engine.dispose()
