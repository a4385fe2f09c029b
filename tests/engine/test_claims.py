"""Claims and presence on the real store: who may take a destination, and when an owner is gone."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from store.deliveries import DeliveryQueue
from store.notify import PgListener
from store.presence import FilePresence, PgPresence, new_owner_id, pg_application_name, publishes_presence
from tests.conftest import Relay, result_payload, wait_for


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
