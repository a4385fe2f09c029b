"""Crashes, drains and several workers: real ``relay`` subprocesses against the emulator.

Slow group (``-m slow``): each test starts processes and moves hundreds of messages.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine

from app.settings import Settings
from store.engine import migrate
from store.keys import KeyStore
from tests.conftest import result_payload, wait_for
from tests.engine.helpers import body_seen, titles
from tests.fakes.discord import DiscordEmulator, Limit, RateLimits
from tests.support.db import fresh_pg_database, pg_url
from tests.support.procs import RelayProcess

pytestmark = pytest.mark.slow

FAST = {"poll_interval": 0.3, "retry_schedule": "0.3,0.6,1", "retry_jitter": 0.1, "log_format": "console"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated store for the processes of one test."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/relay.db"
        engine = create_engine(url)
        migrate(engine)
        engine.dispose()
        yield url
        return
    with fresh_pg_database("relay_proc") as name:
        engine = create_engine(pg_url(name))
        migrate(engine)
        engine.dispose()
        yield pg_url(name)


@pytest.fixture
def emulator() -> Iterator[DiscordEmulator]:
    """A Discord emulator for the subprocesses."""
    with DiscordEmulator(bot_token="bot") as discord:
        yield discord


@pytest.fixture
def procs() -> Iterator[list[RelayProcess]]:
    """Processes started by the test; killed at teardown whatever happened."""
    started: list[RelayProcess] = []
    yield started
    for p in started:
        p.stop()


def _key(url: str) -> str:
    from app.runtime import Runtime

    runtime = Runtime.build(Settings(_env_file=None, database_url=url))
    _, key = KeyStore(runtime.db).create(name="proc-test")
    runtime.close()
    return key


def _post(base: str, key: str, payload: dict) -> str:
    resp = httpx.post(f"{base}/v1/results", json=payload, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def _statuses(base: str, key: str, ids: list[str]) -> Counter[str]:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        return Counter(c.get(f"/v1/results/{rid}").json()["status"] for rid in ids)


def test_worker_killed_mid_result_another_resumes_at_first_unsent(store_url, emulator, procs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    emulator.set_rate_limits(RateLimits(webhook=Limit(1, 1.0), webhook_message=Limit(1, 1.0)))
    wid, _, url = emulator.add_webhook()
    settings = dict(FAST, database_url=store_url, discord_api_base=emulator.api_base, max_body_messages=10,
                    lease_seconds=2)
    first = RelayProcess("serve", tmp_path / "a.log", **settings).start()
    procs.append(first)
    key = _key(store_url)
    body = "\n\n".join("y" * 3000 + f" part {i}" for i in range(9))  # five messages
    rid = _post(first.url, key, result_payload(body=body, route=[{"type": "webhook", "url": url}]))
    wait_for(lambda: len(emulator.messages(webhook_id=wid)) >= 2, timeout=60, message="two messages out")
    first.kill()
    second = RelayProcess("serve", tmp_path / "b.log", **settings).start()
    procs.append(second)
    wait_for(lambda: _statuses(second.url, key, [rid])["delivered"] == 1, timeout=60, message="resumed")
    messages = emulator.messages(webhook_id=wid)
    payloads = Counter(str(m.original_payload) for m in messages)
    first_payload = str(messages[0].original_payload)
    assert payloads[first_payload] == 1  # message 1 never sent again
    # At most the one message in flight at the kill can repeat (its response was lost with the process).
    assert len(payloads) == 5 and len(messages) <= 6
    assert body_seen([m for i, m in enumerate(messages) if str(m.original_payload) not in
                      {str(x.original_payload) for x in messages[:i]}]) == body


@pytest.mark.postgres
def test_two_workers_five_hundred_results_no_message_twice(emulator, procs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with fresh_pg_database("relay_two") as name:
        url = pg_url(name)
        engine = create_engine(url)
        migrate(engine)
        engine.dispose()
        hooks = [emulator.add_webhook() for _ in range(25)]
        common = dict(FAST, database_url=url, discord_api_base=emulator.api_base)
        api = RelayProcess("serve", tmp_path / "api.log", run_workers="false", **common).start()
        procs.append(api)
        for n in range(2):
            procs.append(RelayProcess("worker", tmp_path / f"w{n}.log", **common).start())
        key = _key(url)
        ids = []
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            for i in range(500):
                hook = hooks[i % 25]
                resp = c.post("/v1/results", json=result_payload(title=f"n{i}", body=None,
                                                                 route=[{"type": "webhook", "url": hook[2]}]))
                ids.append(resp.json()["id"])
        wait_for(lambda: _statuses(api.url, key, ids)["delivered"] == 500, timeout=240, interval=1,
                 message="500 delivered")
        seen = Counter(t for wid, _, _ in hooks for t in titles(emulator.messages(webhook_id=wid)))
        assert len(seen) == 500 and max(seen.values()) == 1
        assert emulator.count_429() == 0
        for w in procs[1:]:
            code, _ = w.terminate()
            assert code == 0
        api.terminate()


def test_sigterm_drains_within_grace_and_restart_delivers_the_rest(store_url, emulator, procs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    emulator.set_rate_limits(RateLimits(webhook=Limit(2, 1.0), webhook_message=Limit(2, 1.0)))
    hooks = [emulator.add_webhook() for _ in range(3)]
    settings = dict(FAST, database_url=store_url, discord_api_base=emulator.api_base, shutdown_grace=3,
                    lease_seconds=5)
    relay = RelayProcess("serve", tmp_path / "a.log", **settings).start()
    procs.append(relay)
    key = _key(store_url)
    tag = secrets.token_hex(3)
    ids = [_post(relay.url, key, result_payload(title=f"{tag}-{i}", body=None,
                                                route=[{"type": "webhook", "url": hooks[i % 3][2]}]))
           for i in range(30)]
    wait_for(lambda: sum(len(emulator.messages(webhook_id=h[0])) for h in hooks) >= 4, message="in flight")
    code, took = relay.terminate(timeout=30)
    assert code == 0
    assert took < 3 + 10  # the grace period plus process start-up slack, not a timing assertion on speed
    again = RelayProcess("serve", tmp_path / "b.log", **settings).start()
    procs.append(again)
    wait_for(lambda: _statuses(again.url, key, ids)["delivered"] == 30, timeout=120, interval=0.5,
             message="all delivered after restart")
    seen = Counter(t for h in hooks for t in titles(emulator.messages(webhook_id=h[0])))
    assert set(seen) == {f"{tag}-{i}" for i in range(30)}
    assert sum(seen.values()) - 30 <= 1  # at most a message whose response the drain cut off
    assert emulator.count_429() == 0


def test_forum_post_survives_sigkill_between_message_one_and_two(store_url, emulator, procs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import base64

    from sqlalchemy import text

    # Message 2 waits 6 s for the webhook's bucket: the kill lands between 1 and 2 even on a loaded machine.
    emulator.set_rate_limits(RateLimits(webhook=Limit(1, 6.0)))
    forum = "750000000000000001"
    wid, _, url = emulator.add_webhook(channel_id=forum, forum=True)
    settings = dict(FAST, database_url=store_url, discord_api_base=emulator.api_base, lease_seconds=2)
    first = RelayProcess("serve", tmp_path / "a.log", **settings).start()
    procs.append(first)
    key = _key(store_url)
    body = "\n\n".join("w" * 2900 + f" part {i}" for i in range(5))  # three messages
    blob = b"forum attachment " * 64
    rid = _post(first.url, key, result_payload(body=body, route=[{"type": "webhook", "url": url,
                                                                  "thread_name": "Run 42"}],
                                               attachments=[{"filename": "run.log", "content_base64":
                                                             base64.b64encode(blob).decode()}]))
    engine = create_engine(store_url)
    try:
        def thread_stored() -> bool:
            with engine.connect() as conn:
                return bool(conn.execute(text("SELECT thread_id FROM deliveries WHERE result_id = :r"),
                                         {"r": rid}).scalar())

        wait_for(lambda: len(emulator.messages(webhook_id=wid)) == 1 and thread_stored(), timeout=60,
                 message="message 1 out and its thread stored")
        first.kill()
    finally:
        engine.dispose()
    assert len(emulator.messages(webhook_id=wid)) == 1  # killed before message 2
    second = RelayProcess("serve", tmp_path / "b.log", **settings).start()
    procs.append(second)
    wait_for(lambda: _statuses(second.url, key, [rid])["delivered"] == 1, timeout=90, message="resumed")
    messages = emulator.messages(webhook_id=wid)
    [thread] = emulator.threads(forum)
    assert thread.name == "Run 42" and thread.id == messages[0].id
    assert len(messages) == 3 and {m.channel_id for m in messages} == {thread.id}
    assert body_seen(messages) == body
    assert [f.data for m in messages for f in m.files] == [blob]
