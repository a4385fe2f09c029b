"""Reliability of the engine in one process: poison contained, order held, the store going away and back.

Each test runs on SQLite and PostgreSQL through ``database_url`` (real store, real emulator over
HTTP). The multi-process cases (PostgreSQL restarted, SIGKILL takeover, SIGTERM against a slow
Discord) are in ``test_reliability_processes.py``.
"""

from __future__ import annotations

import base64
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from tests.conftest import Relay, result_payload, wait_for
from tests.engine.helpers import titles
from tests.fakes.discord import Limit, RateLimits
from tests.support.db import PG_HOST, PG_PORT, PG_USER


def _metric_sum(relay: Relay, name: str, label: str | None = None) -> float:
    """Sum of a metric's samples (optionally those whose labels contain ``label``)."""
    total = 0.0
    for line in relay.client.get("/metrics").text.splitlines():
        if line.startswith(name) and not line.startswith("#") and (label is None or label in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _status(relay: Relay, rid: str) -> dict:
    """The result as the API shows it; while the store is away, the documented 503 (any other answer fails).

    A pooled connection the server dropped moments after its last use fails its next transaction
    once (see ``store.engine._ping_when_idle``): the tests that take the store away poll through it.
    """
    resp = relay.client.get(f"/v1/results/{rid}")
    if resp.status_code == 503:
        assert resp.json()["error"]["code"] == "store_unavailable", resp.text
        return {"status": "(store unavailable)", "deliveries": [{"last_error": None}]}
    assert resp.status_code == 200, resp.text
    return resp.json()


def _accepted(relay: Relay, payload: dict) -> str:
    resp = relay.post_result(payload)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def _file(name: str, data: bytes) -> dict:
    return {"filename": name, "content_base64": base64.b64encode(data).decode()}


def _given_up_with(relay: Relay, rid: str, words: str) -> dict:
    got = wait_for(lambda: (s := _status(relay, rid))["status"] == "undelivered" and s, timeout=60,
                   message="the poisoned result given up")
    delivery = got["deliveries"][0]
    assert delivery["status"] == "failed"
    reason = delivery["last_error"]["message"]
    assert reason.startswith("internal error: ") and words in reason, reason
    return delivery


def test_a_result_whose_stored_data_cannot_be_read_fails_and_the_next_goes(
        make_relay: Callable[..., Relay], delivering_relay: Callable[..., Relay], discord: Any) -> None:
    wid, _, url = discord.add_webhook()
    intake = make_relay(discord_api_base=discord.api_base)  # accepts, delivers nothing: poisoned before any worker
    bad = _accepted(intake, result_payload(title="bad", body=None, route=[{"type": "webhook", "url": url}]))
    good = _accepted(intake, result_payload(title="good", body=None, route=[{"type": "webhook", "url": url}]))
    with intake.runtime.db.engine.begin() as conn:
        conn.execute(text("UPDATE results SET fields_json = :f WHERE id = :id"), {"f": '[{"no_name": 1}]', "id": bad})
    crashes_before = _metric_sum(intake, "relay_delivery_crashes_total")  # one registry per process
    relay = delivering_relay(retry_schedule="0.2,0.2,0.2", retry_jitter=0.1, max_delivery_crashes=3)
    wait_for(lambda: _status(relay, good)["status"] == "delivered", timeout=30, message="the good result")
    delivery = _given_up_with(relay, bad, "stored result is unreadable")
    assert delivery["attempts"] == 3
    assert _metric_sum(relay, "relay_delivery_crashes_total") - crashes_before == 3
    assert titles(discord.messages(webhook_id=wid)) == ["good"]


def test_a_planned_file_without_stored_bytes_fails_after_a_few_crashes_not_forever(
        delivering_relay: Callable[..., Relay], discord: Any) -> None:
    """The plan is stored on the first (transiently failed) try; then its attachment disappears."""
    wid, _, url = discord.add_webhook()
    discord.inject("http_error", times=1, status=503, path=f"/webhooks/{wid}/")
    relay = delivering_relay(http_retry_attempts=1, retry_schedule="2,0.2,0.2", retry_jitter=0.1,
                             max_delivery_crashes=3)
    crashes_before = _metric_sum(relay, "relay_delivery_crashes_total")
    bad = _accepted(relay, result_payload(title="bad", body=None, route=[{"type": "webhook", "url": url}],
                                          attachments=[_file("report.txt", b"numbers")]))
    good = _accepted(relay, result_payload(title="good", body=None, route=[{"type": "webhook", "url": url}]))
    wait_for(lambda: _status(relay, bad)["deliveries"][0]["last_error"] is not None, message="first try failed")
    with relay.runtime.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM attachments WHERE result_id = :id"), {"id": bad})
    delivery = _given_up_with(relay, bad, "attachment 0 is missing")
    assert delivery["attempts"] == 1 + 3  # the transient failure, then three crashes
    wait_for(lambda: _status(relay, good)["status"] == "delivered", timeout=30, message="the good result")
    assert _metric_sum(relay, "relay_delivery_crashes_total") - crashes_before == 3
    assert titles(discord.messages(webhook_id=wid)) == ["good"]  # nothing half-sent of the bad one
    after = _accepted(relay, result_payload(title="after", body=None, route=[{"type": "webhook", "url": url}]))
    wait_for(lambda: _status(relay, after)["status"] == "delivered", timeout=30, message="a later result")


@pytest.mark.parametrize("where", ["json", "multipart"])
def test_zero_byte_files_are_refused_at_the_door_naming_the_file(relay: Relay, where: str) -> None:
    if where == "json":
        resp = relay.post_result(result_payload(attachments=[_file("ok.txt", b"x"), _file("empty.txt", b"")]))
        field = "attachments.1.content_base64"
    else:
        import json

        resp = relay.client.post("/v1/results", data={"payload_json": json.dumps(result_payload())},
                                 files=[("files[0]", ("ok.txt", b"x", "text/plain")),
                                        ("files[1]", ("empty.txt", b"", "text/plain"))])
        field = "files[1]"
    assert resp.status_code == 422, resp.text
    message = resp.json()["error"]["message"]
    assert message.startswith(field) and "empty file (0 bytes)" in message
    assert relay.client.get("/v1/results").json()["items"] == []  # nothing half-written


def test_order_per_destination_holds_under_half_the_requests_failing(delivering_relay: Callable[..., Relay],
                                                                     discord: Any) -> None:
    """A 5xx is about the destination: its later results wait behind the one being retried."""
    relay = delivering_relay(retry_schedule="0.2,0.3,0.4", retry_jitter=0.2, http_retry_attempts=1)
    hooks = [discord.add_webhook() for _ in range(6)]
    rule = discord.inject("http_error", probability=0.5, status=503, path="/webhooks/", method="POST")
    ids = [_accepted(relay, result_payload(title=f"w{i % 6}-{i // 6}", body=None,
                                           route=[{"type": "webhook", "url": hooks[i % 6][2]}]))
           for i in range(36)]
    wait_for(lambda: all(_status(relay, rid)["status"] == "delivered" for rid in ids), timeout=120,
             interval=0.3, message="all 36 delivered")
    assert rule.fired > 5  # the faults really happened
    for n, (wid, _, _) in enumerate(hooks):
        assert titles(discord.messages(webhook_id=wid)) == [f"w{n}-{k}" for k in range(6)]


def test_an_sqlite_write_lock_past_the_busy_timeout_only_delays_delivery(
        delivering_relay: Callable[..., Relay], discord: Any, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's single writer lock")
    discord.set_rate_limits(RateLimits(webhook=Limit(2, 1.0), webhook_message=Limit(2, 1.0)))
    relay = delivering_relay()
    wid, _, url = discord.add_webhook()
    errors_before = _metric_sum(relay, "relay_loop_errors_total")
    ids = [_accepted(relay, result_payload(title=f"r{i}", body=None, route=[{"type": "webhook", "url": url}]))
           for i in range(12)]
    wait_for(lambda: len(discord.messages(webhook_id=wid)) >= 1, message="delivery under way")
    holder = sqlite3.connect(database_url.split(":///", 1)[1], timeout=30, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process's write lock, held past the 5 s busy timeout
    try:
        time.sleep(8)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_for(lambda: all(_status(relay, rid)["status"] == "delivered" for rid in ids), timeout=60, interval=0.3,
             message="all delivered by the same relay after the lock")
    assert titles(discord.messages(webhook_id=wid)) == [f"r{i}" for i in range(12)]
    assert _metric_sum(relay, "relay_loop_errors_total") > errors_before
    wait_for(lambda: relay.client.get("/readyz").status_code == 200, message="ready again")
    assert relay.client.get("/healthz").status_code == 200


def _terminate_backends(dbname: str) -> int:
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True) as conn:
        return len(conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)).fetchall())


def test_connections_terminated_by_the_server_only_delay_delivery(
        delivering_relay: Callable[..., Relay], discord: Any, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("pg_terminate_backend")
    discord.set_rate_limits(RateLimits(webhook=Limit(1, 1.0), webhook_message=Limit(1, 1.0)))
    relay = delivering_relay()
    hooks = [discord.add_webhook() for _ in range(3)]
    ids = [_accepted(relay, result_payload(title=f"r{i}", body=None,
                                           route=[{"type": "webhook", "url": hooks[i % 3][2]}]))
           for i in range(24)]
    dbname = database_url.rsplit("/", 1)[1]
    stop = threading.Event()
    killed: list[int] = []

    def terminator() -> None:  # every relay connection dropped, several times, while messages flow
        while True:
            killed.append(_terminate_backends(dbname))
            if stop.wait(1.5):
                return

    thread = threading.Thread(target=terminator, daemon=True)
    thread.start()
    try:
        wait_for(lambda: sum(len(discord.messages(webhook_id=h[0])) for h in hooks) >= 12, timeout=60,
                 message="half delivered under terminations")
    finally:
        stop.set()
        thread.join()
    assert sum(killed) > 0
    wait_for(lambda: all(_status(relay, rid)["status"] == "delivered" for rid in ids), timeout=90, interval=0.3,
             message="all delivered after the terminations")
    for n, (wid, _, _) in enumerate(hooks):
        seen = titles(discord.messages(webhook_id=wid))
        assert [t for i, t in enumerate(seen) if t not in seen[:i]] == [f"r{i}" for i in range(n, 24, 3)]
    wait_for(lambda: relay.client.get("/readyz").status_code == 200, message="ready again")


def test_healthz_reports_a_wedged_loop_and_readyz_a_failing_one(relay: Relay) -> None:
    loops = relay.runtime.loops
    wedged = loops.register("test-wedged")
    assert relay.client.get("/healthz").status_code == 200
    wedged.busy_since = time.monotonic() - loops.stall_after_s - 1
    resp = relay.client.get("/healthz")
    assert resp.status_code == 503 and "test-wedged" in resp.json()["loops"]
    loops.unregister("test-wedged")
    failing = loops.register("test-failing")
    for _ in range(3):
        failing.failed()
    ready = relay.client.get("/readyz")
    assert ready.status_code == 503 and "loop:test-failing" in ready.json()["checks"]
    assert relay.client.get("/healthz").status_code == 200  # failing is not wedged: no restart
    loops.unregister("test-failing")
    assert relay.client.get("/readyz").status_code == 200


@pytest.mark.postgres
def test_a_pooled_connection_that_sat_idle_is_pinged_and_one_just_used_is_not(
        pg_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection idle past ``PG_PING_AFTER_IDLE_S`` and killed by the server is replaced unseen;
    one used moments ago goes out unpinged (no round trip per transaction), and if the server
    dropped it meanwhile, that one transaction fails as ``StoreUnavailable`` and the next one works."""
    from store import engine as engine_module
    from store.errors import StoreUnavailable
    from store.session import Database
    from tests.support.db import pg_url

    pings: list[int] = []
    db = Database(engine_module.make_engine(pg_url(pg_database)))
    real_ping = db.engine.dialect.do_ping
    monkeypatch.setattr(db.engine.dialect, "do_ping", lambda conn: pings.append(1) or real_ping(conn))
    try:
        for _ in range(5):
            with db.connection() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
        assert pings == []  # each checkout followed a use moments before

        _terminate_backends(pg_database)
        monkeypatch.setattr(engine_module, "PG_PING_AFTER_IDLE_S", 0.0)  # as if it had sat idle
        with db.connection() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
        assert len(pings) == 1  # the ping found it dead; a new connection served, nobody saw an error

        monkeypatch.setattr(engine_module, "PG_PING_AFTER_IDLE_S", 3600.0)
        _terminate_backends(pg_database)
        with pytest.raises(StoreUnavailable), db.connection() as conn:
            conn.execute(text("SELECT 1"))
        with db.connection() as conn:  # the failure invalidated the pool: the next one reconnects
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        db.dispose()
