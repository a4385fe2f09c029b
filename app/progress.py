"""Recording progress states: one row per (workflow, destination), the newest state wins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.destinations import Target
from app.store import Database, utcnow
from schemas.tables import ProgressMessage


class ProgressStore:
    """Writes progress states for the progress worker to send (``delivery.progress``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, workflow_id: str, targets: Sequence[Target], state: dict[str, Any]) -> tuple[int, list[str]]:
        """Store the newest state for each destination; ``(recorded, skipped reasons)``.

        DMs get no progress message: a bot's DM cannot be edited through a webhook token, and a
        DM per update would be noise.
        """
        skipped = []
        recorded = 0
        for position, target in enumerate(targets):
            if target.kind == "dm":
                skipped.append(f"route.{position}: progress is not shown in DMs")
                continue
            following = targets[position + 1].kind if position + 1 < len(targets) else None
            self._upsert(workflow_id, target, {**state, "next_kind": following})
            recorded += 1
        return recorded, skipped

    def _upsert(self, workflow_id: str, target: Target, state: dict[str, Any]) -> None:
        for _ in range(2):
            try:
                with self._db.session(write=True) as session:
                    now = utcnow()
                    row = session.scalar(select(ProgressMessage).where(
                        ProgressMessage.workflow_id == workflow_id, ProgressMessage.destination_key == target.key))
                    if row is None:
                        session.add(ProgressMessage(
                            workflow_id=workflow_id, destination_key=target.key, kind=target.kind,
                            target_json=target.stored, state_json=state, version=1, created_at=now, updated_at=now))
                    else:
                        # What the relay (not the producer) wrote into the state survives an update.
                        keep = {k: row.state_json[k] for k in ("handoff_sent", "thread_id") if row.state_json.get(k)}
                        row.state_json = {**state, **keep}
                        row.target_json = target.stored
                        row.version += 1
                        row.next_attempt_at = None
                        row.updated_at = now
                return
            except IntegrityError:
                continue  # a concurrent first update inserted the row: update it instead
