"""Everything one relay process holds: settings, every store, the cipher, and the hooks the workers listen on.

Built once by the lifespan (or by the CLI for one-off commands) and reached through ``app.deps``;
nothing is created at import time and no route builds a store of its own. ``app`` never sees the
engine: ``store.session.Database`` owns it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from app.secrets import Cipher
from app.settings import Settings
from delivery.supervise import LoopMonitor
from store.admin import AdminStore
from store.alerts import AlertStore
from store.channels import ChannelStore
from store.deliveries import DeliveryQueue
from store.engine import make_engine
from store.keys import KeyStore
from store.pickup import PickupStore
from store.progress import ProgressQueue, ProgressStore
from store.results import ResultStore
from store.session import Database
from store.transcriptions import TranscriptionStore


@dataclass
class Runtime:
    """The process's shared objects."""

    settings: Settings
    db: Database
    keys: KeyStore
    results: ResultStore
    admin: AdminStore
    pickup: PickupStore
    progress: ProgressStore
    transcriptions: TranscriptionStore
    deliveries: DeliveryQueue
    progress_queue: ProgressQueue
    channels: ChannelStore
    alerts: AlertStore
    cipher: Cipher
    # Called after a result is committed so idle workers start at once instead of at the next poll.
    wake_workers: Callable[[], None] = field(default=lambda: None)
    workers_running: Callable[[], bool] = field(default=lambda: True)
    # Every supervised loop of the process reports here; ``/healthz`` reads it.
    loops: LoopMonitor = field(default_factory=LoopMonitor)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Open the store described by ``settings`` (no schema work; see ``Database.ensure_schema``)."""
        db = Database(make_engine(settings.database_url))
        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        results = ResultStore(db)
        return cls(
            settings=settings, db=db,
            keys=KeyStore(db, configured_keys=[k.get_secret_value() for k in settings.api_keys]),
            results=results, admin=AdminStore(db, results), pickup=PickupStore(db), progress=ProgressStore(db),
            transcriptions=TranscriptionStore(db), deliveries=DeliveryQueue(db), progress_queue=ProgressQueue(db),
            channels=ChannelStore(db), alerts=AlertStore(db),
            cipher=Cipher(secret), loops=LoopMonitor(settings.loop_stall_seconds),
        )

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()
