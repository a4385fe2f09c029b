"""Group commit of ``ResultStore.create``: batched, yet every caller's result is committed on return.

What must hold however requests are batched: "202 means committed" (a fresh connection reads the
row as soon as ``create`` returns), idempotency (same key + body → same id, other body → 409,
concurrent duplicates → one row), and isolation (a bad item fails alone, its batch-mates commit).
Store-touching tests run on SQLite and PostgreSQL through ``database_url``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.runtime import Runtime
from schemas.tables import Attachment, Delivery, Destination, Result
from schemas.targets import Target
from store.errors import IdempotencyConflict
from store.group_commit import GroupCommitter
from store.results import ResultStore, _Pending
from store.views import NewAttachment, NewResult
from tests.conftest import Relay, result_payload

WEBHOOK = Target(key="webhook:1", kind="webhook", label="webhook 1/••••",
                 stored={"type": "webhook", "webhook_id": "1", "token": "abc"})
DM = Target(key="dm:7", kind="dm", label="DM 7", stored={"type": "dm", "user_id": "7"})


def new_result(n: int = 0, *, idem: str | None = None, request_hash: str | None = None, **over: Any) -> NewResult:
    """A valid result as ``read_result`` would build it."""
    values: dict[str, Any] = dict(
        key_id="key_test", tenant="default", idempotency_key=idem, request_hash=request_hash or f"hash-{n}",
        workflow_id=f"wf_{n}", title=f"title {n}", summary="summary", body="body " * 50,
        fields=[{"name": "a", "value": "b", "inline": True}], url=None, color=None, level="info",
        metadata={"n": n}, mode="first_success", targets=[WEBHOOK, DM], attachments=(),
    )
    values.update(over)
    return NewResult(**values)


def count(rt: Runtime, table: Any, *where: Any) -> int:
    """Rows of ``table`` (optionally filtered), read through ``rt``'s engine."""
    with rt.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


class HeldWriter:
    """Holds the writer inside its first batch, so everything submitted meanwhile forms one batch."""

    def __init__(self, store: ResultStore) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        committer = store._committer
        inner = committer._write_batch

        def held(batch: list[_Pending]) -> Any:
            if not self.release.is_set():
                self.entered.set()
                assert self.release.wait(10)
            return inner(batch)

        committer._write_batch = held  # type: ignore[method-assign]

    def batch(self, store: ResultStore, items: list[NewResult]) -> list[Future]:
        """Submit a warm-up item (which the writer takes and holds), then ``items``; release."""
        warm = store._committer.submit(_Pending("res_warmup" + str(time.monotonic_ns())[-20:], new_result(999)))
        assert self.entered.wait(10)
        futures = [store._committer.submit(_Pending(f"res_item_{i:030d}", item)) for i, item in enumerate(items)]
        self.release.set()
        warm.result(10)
        for f in futures:
            f.exception(10)
        return futures


# --- the committer on its own (no store) -------------------------------------------------------


def test_committer_batches_what_queues_while_it_writes_and_fails_items_separately() -> None:
    seen: list[list[int]] = []
    gate = threading.Event()

    def write(items: list[int]) -> list[Any]:
        seen.append(list(items))
        if items == [0]:
            assert gate.wait(5)
        return [ValueError(i) if i == 3 else i * 10 for i in items]

    committer: GroupCommitter[int, int] = GroupCommitter(write, max_items=4, idle_exit_s=0.2)
    first = committer.submit(0)
    while not seen:
        time.sleep(0.001)
    rest = [committer.submit(i) for i in range(1, 7)]
    gate.set()
    assert first.result(5) == 0
    assert [f.exception(5) is None for f in rest] == [True, True, False, True, True, True]
    assert rest[0].result() == 10 and rest[5].result() == 60
    assert seen == [[0], [1, 2, 3, 4], [5, 6]]  # capped at max_items, in submission order
    assert committer.stats.batches == 3 and committer.stats.items == 7 and committer.stats.largest == 4


def test_committer_thread_exits_when_idle_and_restarts_on_demand() -> None:
    committer: GroupCommitter[int, int] = GroupCommitter(lambda items: items, idle_exit_s=0.05, name="gc-idle")
    assert committer.call(1) == 1
    deadline = time.monotonic() + 5
    while any(t.name == "gc-idle" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the writer thread should exit when idle"
        time.sleep(0.01)
    assert committer.call(2) == 2


def _in_flight_writer(entered: threading.Semaphore, release: threading.Event,
                      overlap: list[int]) -> Callable[[list[int]], list[int]]:
    """A ``write_batch`` that records how many batches are being written at once, holding each
    until ``release``."""
    lock, busy = threading.Lock(), [0]

    def write(items: list[int]) -> list[int]:
        with lock:
            busy[0] += 1
            overlap.append(busy[0])
        entered.release()
        assert release.wait(5)
        with lock:
            busy[0] -= 1
        return [i * 10 for i in items]

    return write


def test_committer_with_two_writers_writes_two_batches_at_once_and_no_more() -> None:
    entered, release, overlap = threading.Semaphore(0), threading.Event(), []
    committer: GroupCommitter[int, int] = GroupCommitter(_in_flight_writer(entered, release, overlap),
                                                         writers=2, idle_exit_s=0.05, name="gc-two")
    first = committer.submit(1)
    assert entered.acquire(timeout=5)
    second = committer.submit(2)  # the first writer is busy: a second thread takes it
    assert entered.acquire(timeout=5), "a second batch should be written beside the first"
    queued = [committer.submit(i) for i in range(3, 6)]  # both busy: these wait, as one batch
    assert not entered.acquire(timeout=0.2), "no third writer"
    release.set()
    assert [f.result(5) for f in (first, second, *queued)] == [10, 20, 30, 40, 50]
    assert max(overlap) == 2
    assert committer.stats.items == 5 and committer.stats.batches == 3  # 3, 4 and 5 went together
    deadline = time.monotonic() + 5
    while any(t.name.startswith("gc-two") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "every writer thread should exit when idle"
        time.sleep(0.01)
    assert committer.call(6) == 60  # and one starts again on demand


def test_committer_with_one_writer_never_overlaps_batches() -> None:
    entered, release, overlap = threading.Semaphore(0), threading.Event(), []
    committer: GroupCommitter[int, int] = GroupCommitter(_in_flight_writer(entered, release, overlap))
    first = committer.submit(1)
    assert entered.acquire(timeout=5)
    rest = [committer.submit(i) for i in range(2, 5)]
    assert not entered.acquire(timeout=0.2)
    release.set()
    assert [f.result(5) for f in (first, *rest)] == [10, 20, 30, 40]
    assert max(overlap) == 1


def test_committer_refuses_zero_writers() -> None:
    with pytest.raises(ValueError, match="at least one writer"):
        GroupCommitter(lambda items: items, writers=0)


def test_committer_survives_a_failing_write_batch() -> None:
    calls = []

    def write(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("disk on fire")
        return items

    committer: GroupCommitter[int, int] = GroupCommitter(write)
    with pytest.raises(RuntimeError, match="disk on fire"):
        committer.call(1)
    assert committer.call(2) == 2


async def test_call_async_awaits_the_commit() -> None:
    committer: GroupCommitter[int, int] = GroupCommitter(lambda items: [i + 1 for i in items])
    assert await committer.call_async(41) == 42


# --- the result store ------------------------------------------------------------------------


def test_concurrent_creates_are_all_committed_and_readable(runtime: Runtime, fresh_reader: Runtime) -> None:
    store = runtime.results
    n = 120
    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(lambda i: store.create(new_result(i)), range(n)))
    ids = [rid for rid, created in outcomes]
    assert all(created for _, created in outcomes)
    assert len(set(ids)) == n
    # Read through another engine: every id the callers got back is committed.
    assert count(fresh_reader, Result, Result.id.in_(ids)) == n
    assert count(fresh_reader, Delivery, Delivery.result_id.in_(ids)) == 2 * n
    view = fresh_reader.results.get(ids[7])
    assert view.status == "pending" and [d.status for d in view.deliveries] == ["pending", "waiting"]
    assert store.commit_stats.items == n and store.commit_stats.batches <= n


def test_items_queued_behind_a_commit_share_one_transaction(runtime: Runtime, fresh_reader: Runtime) -> None:
    store = runtime.results
    held = HeldWriter(store)
    futures = held.batch(store, [new_result(i) for i in range(10)])
    assert store.commit_stats.largest == 10
    ids = [f.result()[0] for f in futures]
    assert count(fresh_reader, Result, Result.id.in_(ids)) == 10


def test_batch_rows_match_single_row_rows(runtime: Runtime) -> None:
    """The multi-row INSERT path stores exactly what the per-item (ORM) path stores."""
    store = runtime.results
    att = NewAttachment("report.json", "application/json", b'{"ok": true}')
    item = new_result(1, mode="all", attachments=(att,), color=5793266, url="https://example.com/x")
    batched, _ = HeldWriter(store).batch(store, [item, new_result(2)])[0].result()
    single, created = store._create_one(_Pending("res_single_000000000000000000000", item))
    assert created
    a, b = store.get(batched), store.get(single)
    strip = {"id", "created_at", "updated_at"}
    assert {k: v for k, v in dataclasses.asdict(a).items() if k not in strip | {"deliveries"}} == \
        {k: v for k, v in dataclasses.asdict(b).items() if k not in strip | {"deliveries"}}
    ignore = {"id", "next_attempt_at"}
    assert [{k: v for k, v in dataclasses.asdict(d).items() if k not in ignore} for d in a.deliveries] == \
        [{k: v for k, v in dataclasses.asdict(d).items() if k not in ignore} for d in b.deliveries]
    ca, cb = store.content(batched), store.content(single)
    assert dataclasses.replace(ca, id="x") == dataclasses.replace(cb, id="x")
    assert b"".join(store.stream_attachment(batched, 0, len(att.data))) == att.data
    with runtime.db.session() as session:
        rows = session.scalars(select(Result).where(Result.id.in_([batched, single]))).all()
        cols = [c.name for c in Result.__table__.c if c.name not in ("id", "created_at", "updated_at")]
        assert len({tuple(str(getattr(r, c)) for c in cols) for r in rows}) == 1


def test_idempotent_duplicates_inside_one_batch(runtime: Runtime, fresh_reader: Runtime) -> None:
    store = runtime.results
    same = new_result(1, idem="job-1", request_hash="h1")
    other_body = new_result(2, idem="job-1", request_hash="h2")
    other_key = new_result(3, idem="job-2", request_hash="h1")
    futures = HeldWriter(store).batch(store, [same, same, other_body, other_key])
    first_id, created = futures[0].result()
    assert created
    assert futures[1].result() == (first_id, False)
    conflict = futures[2].exception()
    assert isinstance(conflict, IdempotencyConflict) and conflict.result_id == first_id
    assert futures[3].result()[1] is True
    assert count(fresh_reader, Result, Result.idempotency_key == "job-1") == 1
    # And against what an earlier batch committed:
    assert store.create(same) == (first_id, False)
    with pytest.raises(IdempotencyConflict):
        store.create(other_body)


def test_concurrent_duplicates_store_one_row(runtime: Runtime, fresh_reader: Runtime) -> None:
    store = runtime.results
    item = new_result(1, idem="dup", request_hash="h")
    with ThreadPoolExecutor(max_workers=24) as pool:
        outcomes = list(pool.map(lambda _: store.create(item), range(48)))
    assert len({rid for rid, _ in outcomes}) == 1
    assert sum(created for _, created in outcomes) == 1
    assert count(fresh_reader, Result, Result.idempotency_key == "dup") == 1
    assert count(fresh_reader, Delivery, Delivery.result_id == outcomes[0][0]) == 2


def test_unserialisable_item_fails_alone(runtime: Runtime, fresh_reader: Runtime) -> None:
    store = runtime.results
    bad = new_result(2, metadata={"not_json": object()})
    futures = HeldWriter(store).batch(store, [new_result(1), bad, new_result(3)])
    assert futures[1].exception() is not None
    ids = [futures[0].result()[0], futures[2].result()[0]]
    assert count(fresh_reader, Result, Result.id.in_(ids)) == 2
    assert count(fresh_reader, Result, Result.workflow_id == "wf_2") == 0


def test_integrity_error_falls_back_to_per_item_commits(runtime: Runtime, fresh_reader: Runtime) -> None:
    store = runtime.results
    taken, _ = store.create(new_result(0))
    batch = [_Pending("res_a_00000000000000000000000000", new_result(1)),
             _Pending(taken, new_result(2)),  # primary key collision: IntegrityError for the whole INSERT
             _Pending("res_c_00000000000000000000000000", new_result(3, idem="k3"))]
    outcomes = store._write_batch(batch)
    assert outcomes[0] == ("res_a_00000000000000000000000000", True)
    assert isinstance(outcomes[1], Exception) and "IntegrityError" in type(outcomes[1]).__name__
    assert outcomes[2] == ("res_c_00000000000000000000000000", True)
    assert count(fresh_reader, Result) == 3
    assert count(fresh_reader, Delivery) == 6  # nothing of the failed item, nothing twice
    assert count(fresh_reader, Destination) == 2


def test_attachments_are_committed_with_their_result(runtime: Runtime, fresh_reader: Runtime) -> None:
    store = runtime.results
    items = [new_result(i, attachments=(NewAttachment(f"f{i}.bin", "application/octet-stream", bytes([i]) * 100),))
             for i in range(5)]
    ids = [f.result()[0] for f in HeldWriter(store).batch(store, items)]
    assert count(fresh_reader, Attachment, Attachment.result_id.in_(ids)) == 5
    assert fresh_reader.results.read_attachment(ids[3], 0, 0, 100) == bytes([3]) * 100


async def test_create_async(runtime: Runtime, fresh_reader: Runtime) -> None:
    rid, created = await runtime.results.create_async(new_result(1))
    assert created and fresh_reader.results.get(rid).status == "pending"


# --- over HTTP -------------------------------------------------------------------------------


def test_concurrent_posts_over_http_all_committed(make_relay: Callable[..., Relay], fresh_reader: Runtime) -> None:
    relay = make_relay()
    headers = {"Authorization": f"Bearer {relay.key}"}

    def post(i: int) -> httpx.Response:
        with httpx.Client(base_url=relay.url, headers=headers, timeout=30) as c:
            key = {"Idempotency-Key": f"k{i % 20}"}  # every key sent twice, possibly at once
            return c.post("/v1/results", json=result_payload(workflow_id=f"wf_{i % 20}"), headers=key)

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(post, range(40)))
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses if r.status_code != 202]
    by_key: dict[int, set[str]] = {}
    for i, r in enumerate(responses):
        by_key.setdefault(i % 20, set()).add(r.json()["id"])
    assert all(len(ids) == 1 for ids in by_key.values())
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 20
    assert count(fresh_reader, Result) == 20
