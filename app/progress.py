"""Recording progress states: one row per (workflow, destination), the newest state wins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.destinations import Target
from app.store import Database, utcnow
from delivery.progress import RELAY_STATE_MARKS
from schemas.tables import ProgressMessage
from store.errors import StoreUnavailable

# Whole-write attempts of one progress update against concurrent first updates of its workflow.
CONFLICT_ATTEMPTS = 5


class ProgressStore:
    """Writes progress states for the progress worker to send (``delivery.progress``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, workflow_id: str, targets: Sequence[Target], state: dict[str, Any]) -> tuple[int, list[str]]:
        """Store the newest state for each destination; ``(recorded, skipped reasons)``.

        DMs get no progress message: a bot's DM cannot be edited through a webhook token, and a
        DM per update would be noise. Every destination's row is written in one transaction, so an
        update is recorded for all of them or for none; a concurrent first update of the same
        workflow (a unique-key conflict) makes the whole write start over, up to
        ``CONFLICT_ATTEMPTS`` times, after which the caller gets ``StoreUnavailable`` (a 503 to
        retry) rather than a count of updates that were never stored.
        """
        skipped = []
        rows: list[tuple[Target, dict[str, Any]]] = []
        for position, target in enumerate(targets):
            if target.kind == "dm":
                skipped.append(f"route.{position}: progress is not shown in DMs")
                continue
            following = targets[position + 1].kind if position + 1 < len(targets) else None
            rows.append((target, {**state, "next_kind": following}))
        for _ in range(CONFLICT_ATTEMPTS):
            try:
                with self._db.session(write=True) as session:
                    for target, row_state in rows:
                        _upsert(session, workflow_id, target, row_state)
                return len(rows), skipped
            except IntegrityError:
                continue  # a concurrent first update inserted a row: read it and update it instead
        raise StoreUnavailable(f"progress of {workflow_id!r} kept conflicting with concurrent updates")


def _upsert(session: Session, workflow_id: str, target: Target, state: dict[str, Any]) -> None:
    now = utcnow()
    # Locked: what the relay marked meanwhile (``handoff_sent``, ``thread_id``) must be read, not overwritten.
    row = session.scalar(select(ProgressMessage).where(
        ProgressMessage.workflow_id == workflow_id, ProgressMessage.destination_key == target.key).with_for_update())
    if row is None:
        session.add(ProgressMessage(
            workflow_id=workflow_id, destination_key=target.key, kind=target.kind,
            target_json=target.stored, state_json=state, version=1, created_at=now, updated_at=now))
        session.flush()
        return
    # What the relay (not the producer) wrote into the state survives an update.
    keep = {k: row.state_json[k] for k in RELAY_STATE_MARKS if row.state_json.get(k)}
    row.state_json = {**state, **keep}
    row.target_json = target.stored
    row.version += 1
    row.next_attempt_at = None
    row.updated_at = now
