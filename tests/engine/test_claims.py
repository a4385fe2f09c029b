"""Claims and presence on the real store: who may take a destination, and when an owner is gone."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from schemas.messages import MessagePlan
from schemas.work import Work
from store.deliveries import DeliveryQueue
from store.notify import PgListener
from store.presence import FilePresence, PgPresence, new_owner_id, pg_application_name, publishes_presence
from tests.conftest import WEBHOOK_URL, Relay, result_payload, wait_for


def _queued(make_relay: Callable[..., Relay]) -> tuple[Relay, DeliveryQueue]:
    relay = make_relay()
    assert relay.post_result(result_payload()).status_code == 202
    return relay, DeliveryQueue(relay.runtime.db)


def test_a_destination_served_here_is_never_claimed_twice_even_after_its_lease_ran_out(
        make_relay: Callable[..., Relay]) -> None:
    relay, queue = _queued(make_relay)
    [dest] = queue.claim_destinations("w1", limit=5, lease_s=30)
    with relay.runtime.db.engine.begin() as conn:  # the heartbeat could not renew it during an outage
        conn.execute(text("UPDATE destinations SET lease_expires_at = :t"), {"t": "2000-01-01 00:00:00"})
    assert queue.claim_destinations("w1", limit=5, lease_s=30, exclude=[dest.key]) == []
    # Not served any more (its task ended without releasing): this worker takes its own lease back.
    [again] = queue.claim_destinations("w1", limit=5, lease_s=30)
    assert again.key == dest.key and again.previous_owner is None


def _lease_of(relay: Relay, key: str) -> tuple[str | None, str | None]:
    with relay.runtime.db.engine.connect() as conn:
        row = conn.execute(text("SELECT lease_owner, bucket FROM destinations WHERE key = :k"), {"k": key}).one()
    return row[0], row[1]


def test_the_last_delivery_of_a_destination_gives_its_lease_back_in_the_same_commit(
        make_relay: Callable[..., Relay]) -> None:
    from schemas.messages import BucketState
    from schemas.work import Release

    relay, queue = _queued(make_relay)
    assert relay.post_result(result_payload(title="second")).status_code == 202
    [dest] = queue.claim_destinations("w1", limit=5, lease_s=30)
    release = Release("w1", BucketState(bucket="hook-bucket", remaining=3, reset_at=0.0))
    first = queue.start_next(dest.key)
    assert first is not None
    finished, second = queue.finish_and_start_next(first.delivery_id, sent=None, key=dest.key, release=release)
    assert second is not None and not finished.released  # more is due: the lease stays
    assert _lease_of(relay, dest.key)[0] == "w1"
    finished, nothing = queue.finish_and_start_next(second.delivery_id, sent=None, key=dest.key, release=release)
    assert nothing is None and finished.released
    assert _lease_of(relay, dest.key) == (None, "hook-bucket")  # given back, with what the bucket taught
    assert [r["status"] for r in relay.client.get("/v1/results").json()["items"]] == ["delivered", "delivered"]


def test_finishing_never_starts_work_on_a_lease_that_is_not_ours_any_more(make_relay: Callable[..., Relay]) -> None:
    from schemas.work import Release

    relay, queue = _queued(make_relay)
    assert relay.post_result(result_payload(title="second")).status_code == 202
    [dest] = queue.claim_destinations("w1", limit=5, lease_s=30)
    first = queue.start_next(dest.key)
    assert first is not None
    with relay.runtime.db.engine.begin() as conn:  # the lease ran out and another worker took it
        conn.execute(text("UPDATE destinations SET lease_owner = 'w2'"))
    finished, following = queue.finish_and_start_next(first.delivery_id, sent=None, key=dest.key,
                                                       release=Release("w1", None))
    assert following is None and finished.released  # the delivery is recorded; the rest is w2's
    assert _lease_of(relay, dest.key)[0] == "w2"
    statuses = sorted(r["status"] for r in relay.client.get("/v1/results").json()["items"])
    assert statuses == ["delivered", "pending"]


OTHER_WEBHOOK_URL = "https://discord.com/api/webhooks/223456789012345678/other-webhook-token_XYZ"


def _statements_of(relay: Relay, call: Callable[[], object]) -> tuple[object, list[str]]:
    """``call()``'s outcome and the statements it sent."""
    from tests.api.test_query_plans import captured

    with captured(relay.runtime.db.engine) as seen:
        outcome = call()
    return outcome, [statement.lstrip() for statement, _ in seen]


def _selects_of(relay: Relay, call: Callable[[], object]) -> tuple[object, list[str]]:
    """``call()``'s outcome and the SELECT statements it sent."""
    outcome, statements = _statements_of(relay, call)
    return outcome, [s for s in statements if s.upper().startswith("SELECT")]


def _one_plan(result: object, scale: int, kind: str) -> list[MessagePlan]:
    return [MessagePlan(payload={"content": "planned"})]


def test_starting_a_lone_delivery_with_nothing_stored_is_one_read(make_relay: Callable[..., Relay]) -> None:
    """Once per message sent: route, attachments and plan come with the next delivery's row."""
    relay, queue = _queued(make_relay)
    [dest] = queue.claim_destinations("w1", limit=5, lease_s=30)
    work, selects = _selects_of(relay, lambda: queue.start_next(dest.key, _one_plan))
    assert isinstance(work, Work) and len(selects) == 1, selects
    assert work.next_kind is None and work.result.attachments == () and work.attempts == 1
    assert [p.plan.payload for p in work.plans] == [{"content": "planned"}]  # rendered and stored in that start


def test_finishing_a_lone_delivery_reads_its_route_with_its_row_on_sqlite(make_relay: Callable[..., Relay]) -> None:
    """PostgreSQL reads the route after the result's lock (see ``_FINISHING``): one read more there."""
    from schemas.work import Release

    relay, queue = _queued(make_relay)
    [dest] = queue.claim_destinations("w1", limit=5, lease_s=30)
    work = queue.start_next(dest.key, _one_plan)
    assert work is not None
    outcome, statements = _statements_of(relay, lambda: queue.finish_and_start_next(
        work.delivery_id, sent=(work.plans[0].id, "222"), key=dest.key, release=Release("w1", None)))
    finished, following = outcome  # type: ignore[misc]
    assert following is None and finished.released and finished.result_status == "delivered"
    postgres = relay.runtime.db.engine.dialect.name == "postgresql"
    selects = [s for s in statements if s.upper().startswith("SELECT")]
    assert len(selects) == (3 if postgres else 2), selects  # the finishing row (+ route), the next due one
    # The workflow has no progress message: on SQLite the finishing row said so, and none is closed.
    closing = [s for s in statements if s.upper().startswith("UPDATE PROGRESS_MESSAGES")]
    assert len(closing) == (1 if postgres else 0), closing
    assert relay.client.get("/v1/results").json()["items"][0]["status"] == "delivered"


def test_a_start_still_reads_a_stored_plan_its_attachments_and_its_route_mates(
        make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()
    payload = result_payload(mode="all", route=[{"type": "webhook", "url": WEBHOOK_URL},
                                                {"type": "webhook", "url": OTHER_WEBHOOK_URL}],
                             attachments=[{"filename": "a.txt", "content_type": "text/plain",
                                           "content_base64": base64.b64encode(b"hello").decode()}])
    assert relay.post_result(payload).status_code == 202
    queue = DeliveryQueue(relay.runtime.db)
    claimed = {d.key: d for d in queue.claim_destinations("w1", limit=5, lease_s=30)}
    assert set(claimed) == {"webhook:123456789012345678", "webhook:223456789012345678"}
    first = queue.start_next("webhook:123456789012345678", _one_plan)
    assert first is not None
    assert first.next_kind == "webhook"  # the route was read: a second destination follows
    assert [(a.filename, a.size) for a in first.result.attachments] == [("a.txt", 5)]
    queue.mark_sent(first.plans[0].id, "111", first.delivery_id)
    # The attempt ends without an outcome (a crash): the next start resumes from the stored plan.
    again = queue.start_next("webhook:123456789012345678", _one_plan)
    assert again is not None and again.delivery_id == first.delivery_id and again.attempts == 2
    assert [(p.id, p.message_id) for p in again.plans] == [(first.plans[0].id, "111")]  # never rendered twice
    assert [(a.filename, a.size) for a in again.result.attachments] == [("a.txt", 5)]


def test_a_live_owners_lease_is_left_alone_and_a_dead_owners_is_taken_over(make_relay: Callable[..., Relay]) -> None:
    _, queue = _queued(make_relay)
    [dest] = queue.claim_destinations("old:1:aaaaaa:p", limit=5, lease_s=300)
    assert queue.leased_owners(exclude="new:2:bbbbbb:p") == ["old:1:aaaaaa:p"]
    assert queue.claim_destinations("new:2:bbbbbb:p", limit=5, lease_s=300) == []
    [taken] = queue.claim_destinations("new:2:bbbbbb:p", limit=5, lease_s=300, dead_owners=["old:1:aaaaaa:p"])
    assert taken.key == dest.key and taken.previous_owner == "old:1:aaaaaa:p"


def test_file_presence_sees_a_killed_process_as_gone_and_a_live_one_as_alive(tmp_path: Path) -> None:
    here = FilePresence(tmp_path / "workers", new_owner_id(presence=True))
    other = FilePresence(tmp_path / "workers", new_owner_id(presence=True))
    child_owner = "child:1:cccccc:p"
    script = ("import sys, time; from pathlib import Path; from store.presence import FilePresence; "
              f"FilePresence(Path({str(tmp_path / 'workers')!r}), {child_owner!r}); print('up', flush=True); "
              "time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        assert here.dead_owners([other.owner, child_owner, "legacy:1:dddddd"]) == set()  # no mark: not judged
        child.kill()
        child.wait(timeout=30)
        assert here.dead_owners([other.owner, child_owner]) == {child_owner}
        other.close()  # a clean exit withdraws the file: gone too
        assert here.dead_owners([other.owner]) == {other.owner}
    finally:
        if child.poll() is None:
            child.kill()
        here.close()
    assert publishes_presence(here.owner) and not publishes_presence("legacy:1:dddddd")


def test_postgres_presence_is_the_listen_session(database_url: str, make_relay: Callable[..., Relay]) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the SQLite presence is the file lock above")
    relay = make_relay()
    owner, gone = new_owner_id(presence=True), new_owner_id(presence=True)
    listener = PgListener(database_url, lambda: None, application_name=pg_application_name(owner))
    try:
        assert listener.wait_connected(30)
        presence = PgPresence(relay.runtime.db, new_owner_id(presence=True), lambda: listener.connected)
        assert presence.dead_owners([owner, gone, "legacy:1:eeeeee"]) == {gone}
    finally:
        listener.close()
    checker = PgPresence(relay.runtime.db, new_owner_id(presence=True), lambda: True)
    deadline = time.monotonic() + 30
    wait_for(lambda: owner in checker.dead_owners([owner]) or time.monotonic() > deadline, timeout=35,
             message="the closed session is gone")
    assert checker.dead_owners([owner]) == {owner}
