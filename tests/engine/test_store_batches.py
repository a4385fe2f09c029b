"""Group commit of the delivery engine's store calls: ``Database.run_together`` and the worker's writer.

What must hold however calls are batched: each call's writes are committed before its caller
hears the outcome (a second engine reads them), one failing call fails alone (its batch-mates
commit once, not twice, and nothing of it stays), an unreachable store fails every call of the
batch without running them again, and ORM sessions and Core connections inside a batch join its
one transaction. Real stores: SQLite and PostgreSQL through ``database_url``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event, func, select

from app.runtime import Runtime
from app.settings import Settings
from schemas.clock import as_utc
from schemas.tables import ApiKey, ChannelPacer
from store.channels import ChannelStore
from store.errors import StoreUnavailable
from store.group_commit import GroupCommitter
from store.keys import KeyStore
from tests.conftest import Relay, result_payload, wait_for
from tests.engine.helpers import titles
from tests.support.db import pg_url, truncate_all

UNTIL = datetime(2030, 1, 1, tzinfo=UTC)


def pacers(rt: Runtime) -> list[str]:
    with rt.db.session() as session:
        return sorted(session.scalars(select(ChannelPacer.channel_id)))


def key_count(rt: Runtime) -> int:
    with rt.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(ApiKey)) or 0)


def count_begins(rt: Runtime) -> list[int]:
    """A counter of the transactions the runtime's engine begins (``[n]``)."""
    seen = [0]

    def begun(_conn: Any) -> None:
        seen[0] += 1

    event.listen(rt.db.engine, "begin", begun)
    return seen


def block(channels: ChannelStore, channel: str) -> Callable[[], object]:
    return lambda: channels.block_channel(channel, UNTIL)


def test_a_batch_is_one_transaction_and_committed_when_its_calls_return(runtime: Runtime,
                                                                        fresh_reader: Runtime) -> None:
    channels, keys = ChannelStore(runtime.db), KeyStore(runtime.db)
    begins = count_begins(runtime)
    outcomes = runtime.db.run_together([block(channels, "1"), lambda: keys.create(name="orm"), block(channels, "2"),
                                        lambda: pacers(runtime)])
    assert begins == [1]  # Core connections and the ORM session joined one transaction
    assert outcomes[0] is None and outcomes[2] is None
    assert outcomes[3] == ["1", "2"]  # a later call sees what earlier calls of its batch wrote
    assert pacers(fresh_reader) == ["1", "2"] and key_count(fresh_reader) == 1  # committed by the time it returned


def test_one_failing_call_fails_alone_and_the_others_commit_once(runtime: Runtime,
                                                                 fresh_reader: Runtime) -> None:
    channels, keys = ChannelStore(runtime.db), KeyStore(runtime.db)

    def half_written() -> object:
        channels.block_channel("bad", UNTIL)  # written, then the call fails: none of it may stay
        raise ValueError("a bug in one call")

    outcomes = runtime.db.run_together([block(channels, "1"), lambda: keys.create(name="a"), half_written,
                                        block(channels, "2")])
    assert isinstance(outcomes[2], ValueError) and str(outcomes[2]) == "a bug in one call"
    assert outcomes[0] is None and outcomes[3] is None
    assert pacers(fresh_reader) == ["1", "2"]
    assert key_count(fresh_reader) == 1  # run again after the rollback: once, not twice


def test_an_unreachable_store_fails_every_call_and_runs_none_again(runtime: Runtime,
                                                                   fresh_reader: Runtime) -> None:
    channels = ChannelStore(runtime.db)
    runs: list[str] = []

    def counted(channel: str) -> Callable[[], object]:
        def call() -> object:
            runs.append(channel)
            channels.block_channel(channel, UNTIL)
            return channel
        return call

    def away() -> object:
        raise StoreUnavailable("connection refused")

    outcomes = runtime.db.run_together([counted("1"), away, counted("2")])
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert runs == ["1"]  # not retried one by one against a store that is away
    assert pacers(fresh_reader) == []


@pytest.mark.postgres
def test_two_batches_in_a_deadlock_both_commit_every_call_once(pg_database: str) -> None:
    """Two writers of one process (``Database.writers``), or two replicas, lock the same rows in
    opposite orders: PostgreSQL rolls one batch back, and its calls run again alone instead of
    failing as an outage (which would pause their destinations)."""
    url = pg_url(pg_database)
    truncate_all(url)
    rt = Runtime.build(Settings(_env_file=None, database_url=url, run_workers=False))
    try:
        assert rt.db.writers > 1
        channels = ChannelStore(rt.db)
        rt.db.run_together([block(channels, "a"), block(channels, "b")])  # both pacer rows exist
        both_hold_one = threading.Barrier(2, timeout=10)
        rolled_back = REGISTRY.get_sample_value("relay_store_batches_rolled_back_total") or 0.0
        runs: list[str] = []

        def lock(channel: str, day: int) -> Callable[[], object]:
            def call() -> object:
                runs.append(channel)
                channels.block_channel(channel, datetime(2031, 1, day, tzinfo=UTC))  # a later block: an UPDATE
                return channel
            return call

        met: set[str] = set()

        def meet(name: str) -> Callable[[], object]:
            def call() -> object:
                if name not in met:  # the first run waits until both batches hold their first row
                    met.add(name)
                    both_hold_one.wait()
                return "met"
            return call

        outcomes: dict[str, list[object]] = {}

        def batch(name: str, first: str, second: str, day: int) -> None:
            outcomes[name] = rt.db.run_together([lock(first, day), meet(name), lock(second, day)])

        threads = [threading.Thread(target=batch, args=("ab", "a", "b", 1)),
                   threading.Thread(target=batch, args=("ba", "b", "a", 2))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert outcomes["ab"] == ["a", "met", "b"] and outcomes["ba"] == ["b", "met", "a"]
        assert len(runs) > 4  # the deadlock's victim ran its calls again
        assert REGISTRY.get_sample_value("relay_store_batches_rolled_back_total") == rolled_back + 1
        with rt.db.session() as session:
            until = dict(session.execute(select(ChannelPacer.channel_id, ChannelPacer.blocked_until)).all())
        assert {as_utc(v).year for v in until.values()} == {2031}  # both batches' writes are there
    finally:
        rt.close()


def test_a_single_call_is_its_own_transaction_with_its_own_outcome(runtime: Runtime) -> None:
    channels = ChannelStore(runtime.db)
    assert runtime.db.run_together([block(channels, "1")]) == [None]
    failed = runtime.db.run_together([lambda: 1 / 0])
    assert isinstance(failed[0], ZeroDivisionError)


def test_a_cancelled_waiter_is_left_out_and_the_writer_lives_on() -> None:
    """A caller cancelled while its item queued (a request task cancelled mid-wait) is not written,
    and resolving its future must not end the writer thread (then every later caller would hang)."""
    entered, release = threading.Event(), threading.Event()
    written: list[list[str]] = []

    def write(items: list[str]) -> list[str]:
        if items == ["first"]:
            entered.set()
            release.wait(10)
        written.append(items)
        return [i.upper() for i in items]

    committer: GroupCommitter[str, str] = GroupCommitter(write, name="test-writer")
    first = committer.submit("first")
    assert entered.wait(10)
    cancelled, kept = committer.submit("cancelled"), committer.submit("kept")
    assert cancelled.cancel()
    release.set()
    assert first.result(10) == "FIRST" and kept.result(10) == "KEPT"
    assert committer.call("later") == "LATER"  # the thread survived the cancelled future
    assert ["cancelled"] not in written and all("cancelled" not in batch for batch in written)


def test_the_worker_writes_what_queued_together(delivering_relay: Any, discord: Any) -> None:
    """Twenty destinations served at once: their store calls go in shared transactions, and every
    result is delivered once."""
    relay: Relay = delivering_relay()
    before = _batch_metric(relay, "sum"), _batch_metric(relay, "count")
    hooks = [discord.add_webhook() for _ in range(20)]
    ids = [relay.post_result(result_payload(title=f"b{i}", body=None, route=[{"type": "webhook", "url": url}]))
           .json()["id"] for i, (_, _, url) in enumerate(hooks)]
    wait_for(lambda: all(relay.client.get(f"/v1/results/{rid}").json()["status"] == "delivered" for rid in ids),
             timeout=60, interval=0.2, message="all 20 delivered")
    seen = [t for wid, _, _ in hooks for t in titles(discord.messages(webhook_id=wid))]
    assert sorted(seen) == sorted(f"b{i}" for i in range(20))  # every one, none twice
    calls, batches = _batch_metric(relay, "sum") - before[0], _batch_metric(relay, "count") - before[1]
    assert batches > 0 and calls > batches  # some transactions held more than one call


def _batch_metric(relay: Relay, part: str) -> float:
    for line in relay.client.get("/metrics").text.splitlines():
        if line.startswith(f"relay_store_batch_calls_{part} "):
            return float(line.split()[1])
    return 0.0
