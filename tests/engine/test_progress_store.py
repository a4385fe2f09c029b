"""The progress store against real concurrent writes, on SQLite and PostgreSQL.

A concurrent first update of the same workflow shows up as a unique-key conflict when the row is
inserted. These tests make the database raise exactly that: just before the relay's insert is
flushed, the same (workflow, destination) row is inserted in its transaction, so the flush fails
with the driver's real ``IntegrityError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from schemas.clock import utcnow
from schemas.tables import ProgressMessage
from store.progress import CONFLICT_ATTEMPTS, ProgressQueue
from tests.conftest import Relay

HOOK_A = "https://discord.com/api/webhooks/111111111111111111/token-a"
HOOK_B = "https://discord.com/api/webhooks/222222222222222222/token-b"


@pytest.fixture
def conflicts() -> Iterator[list[int]]:
    """``conflicts[0]``: how many of the next inserts of a progress row meet a conflicting row."""
    left = [0]

    def collide(session: Session, _context: Any, _instances: Any) -> None:
        new = [obj for obj in session.new if isinstance(obj, ProgressMessage)]
        if new and left[0] > 0:
            left[0] -= 1
            row = new[0]
            now = utcnow()
            session.connection().execute(insert(ProgressMessage).values(
                workflow_id=row.workflow_id, destination_key=row.destination_key, kind=row.kind,
                target_json=row.target_json, state_json={"stage": "concurrent"}, version=1,
                created_at=now, updated_at=now))

    event.listen(Session, "before_flush", collide)
    try:
        yield left
    finally:
        event.remove(Session, "before_flush", collide)


def _rows(relay: Relay, workflow_id: str) -> list[ProgressMessage]:
    with relay.runtime.db.session() as session:
        return list(session.scalars(select(ProgressMessage).where(ProgressMessage.workflow_id == workflow_id)
                                    .order_by(ProgressMessage.destination_key)))


def _post(relay: Relay, workflow_id: str, stage: str, hooks: tuple[str, ...] = (HOOK_A,)) -> Any:
    return relay.client.post("/v1/progress", json={
        "workflow_id": workflow_id, "stage": stage, "route": [{"type": "webhook", "url": u} for u in hooks]})


@pytest.mark.parametrize("count", [1, 2, CONFLICT_ATTEMPTS - 1])
def test_an_update_that_meets_conflicts_is_recorded_once(relay: Relay, conflicts: list[int], count: int) -> None:
    """Two conflicts used to drop the update while the answer counted it as recorded."""
    conflicts[0] = count
    resp = _post(relay, "wf_c", "Uploading")
    assert resp.status_code == 202, resp.text
    assert resp.json()["destinations"] == 1 and conflicts[0] == 0
    [row] = _rows(relay, "wf_c")
    assert row.state_json["stage"] == "Uploading"


def test_an_update_that_keeps_conflicting_is_a_503_and_writes_nothing(relay: Relay, conflicts: list[int]) -> None:
    conflicts[0] = CONFLICT_ATTEMPTS
    resp = _post(relay, "wf_x", "Uploading", hooks=(HOOK_A, HOOK_B))
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "store_unavailable" and "Retry-After" in resp.headers
    assert _rows(relay, "wf_x") == []  # all destinations or none: no half-written update
    assert _post(relay, "wf_x", "Uploading", hooks=(HOOK_A, HOOK_B)).json()["destinations"] == 2
    assert [r.state_json["stage"] for r in _rows(relay, "wf_x")] == ["Uploading", "Uploading"]


def test_marking_the_handoff_keeps_a_newer_state(relay: Relay) -> None:
    """The notice is marked on the row as it is now, not on the state read when it was due."""
    created = datetime.now(UTC) - timedelta(minutes=14, seconds=10)
    route = [{"type": "interaction", "application_id": "31", "token": "tok-31", "created_at": created.isoformat()}]
    assert relay.client.post("/v1/progress", json={"workflow_id": "wf_h", "stage": "one",
                                                   "route": route}).status_code == 202
    queue = ProgressQueue(relay.runtime.db)
    [due] = queue.due_handoffs(margin_s=60)
    assert due.state["stage"] == "one"
    relay.client.post("/v1/progress", json={"workflow_id": "wf_h", "stage": "two", "route": route})
    queue.handoff_sent(due.id)
    [row] = _rows(relay, "wf_h")
    assert row.state_json["stage"] == "two" and row.state_json["handoff_sent"] is True and row.version == 2
    assert queue.due_handoffs(margin_s=60) == []
    # A later update keeps the mark: the notice is never sent twice.
    relay.client.post("/v1/progress", json={"workflow_id": "wf_h", "stage": "three", "route": route})
    [row] = _rows(relay, "wf_h")
    assert row.state_json["stage"] == "three" and row.state_json["handoff_sent"] is True
