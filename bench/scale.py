"""Cost as the store grows: ingest rate, claim latency and the undelivered listing at 10 k and at 1 M results.

Run it as ``python -m bench.scale`` (``--help`` for the knobs). For each store (a SQLite file; a
throw-away PostgreSQL database with ``--postgres``) it

1. fills the store with ``--small`` results (10 k) shaped like a relay's history (one result every
   0.5 s, so 1 M fits the default 7-day retention and no purge runs while measuring): a ~2 KB markdown
   body, three fields and metadata each; most delivered (a delivery, its planned message with the
   Discord id, its "sent" event), some undelivered (a failed delivery and its error), a few picked
   up; and a queue of 512 pending deliveries over 256 webhook destinations, the same at both sizes
   (what the ingest figure adds is marked delivered after it, so it joins the history);
2. measures, with ``relay serve`` running on it (``RELAY_RUN_WORKERS=false``):
   * **ingest**: accepted ``POST /v1/results`` per second from ``bench.ingest``'s load generator
     (its own process, keep-alive, ``--concurrency`` connections, an Idempotency-Key each);
   * **list undelivered**: ``GET /v1/results?status=undelivered`` (the first page, 50), median of
     ``--samples`` requests on one keep-alive connection;
   * **claim**: the delivery engine's lease claim (``DeliveryQueue.claim_destinations``, 64
     destinations, then given back), median of ``--samples`` claims, timed in this process;
3. fills it on to ``--rows`` (1 M) and measures the same again;
4. prints both columns and the ratio large/small for each figure. Target: every figure within 20 %
   of its 10 k value (exit status 0 when met).

Rows are written with multi-row INSERTs straight into the relay's tables (``schemas.tables``): going
through the API would take hours at 1 M, and the figures are about what the store holds, not how it
got there. After each fill the store settles as an old store has: PostgreSQL gets the ``VACUUM
ANALYZE`` autovacuum would run and a ``CHECKPOINT``, SQLite a WAL checkpoint; the query planners
get nothing else (no ``ANALYZE`` on SQLite, as in production). Nothing binds anything but 127.0.0.1; the temp
dir and the PostgreSQL database are removed at the end, even on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, insert, select, text
from tqdm import tqdm

from bench._common import DEFAULT_PG_SERVER, HOST, PG_SENTINEL, Proc, Store, child_env, free_port, open_store
from bench._common import relay_cmd as _relay_cmd
from bench.ingest import LoadResult, _run_load, make_payload
from schemas.clock import utcnow
from schemas.tables import Delivery, DeliveryEvent, Destination, PlannedMessage, Result
from store.deliveries import DeliveryQueue
from store.engine import make_engine
from store.ids import new_id
from store.session import Database, table_of

TARGET_DRIFT = 0.20  # each 1 M figure within 20 % of its 10 k figure
DESTINATIONS = 256
CHUNK = 2_000
CLAIM_LIMIT = 64
# Of every 1,000 results of the history: 960 delivered, 30 undelivered, 10 picked up.
SHAPE = [("delivered", 960), ("undelivered", 30), ("picked_up", 10)]
QUEUE = 512  # pending deliveries, two per destination: the same queue at every size of the history
# One result every 0.5 s: 1 M results is 5.8 days, inside the default 7-day retention of delivered
# results, so the relay's retention purge (its first pass runs at start-up) deletes nothing while it is
# measured. An older history is purged down to this on the relay's first pass.
SPACING = timedelta(seconds=0.5)


def _status_of(i: int) -> str:
    slot = i % 1000
    for status, count in SHAPE:
        if slot < count:
            return status
        slot -= count
    raise AssertionError("SHAPE covers 1,000 slots")


class Filler:
    """Writes history rows into a relay store, oldest last (row ``i`` is ``i`` × ``SPACING`` in the past)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.now = utcnow()
        payload = make_payload(0)
        self.body, self.fields, self.metadata = payload["body"], payload["fields"], payload["metadata"]
        self.keys = [f"webhook:9{n:017d}" for n in range(DESTINATIONS)]
        self.next_deliveries = self.next_planned_messages = self.next_delivery_events = 1  # see _read_ids
        with engine.begin() as conn:
            now = self.now
            present = set(conn.execute(select(table_of(Destination).c.key)).scalars())
            rows = [{"key": k, "tenant": "default", "kind": "webhook", "label": f"bench #{n}", "updated_at": now}
                    for n, k in enumerate(self.keys) if k not in present]
            if rows:
                conn.execute(insert(table_of(Destination)), rows)

    def fill(self, start: int, stop: int, label: str) -> float:
        """Rows ``start`` .. ``stop - 1``; the seconds it took."""
        t0 = time.perf_counter()
        self._read_ids()
        with tqdm(total=stop - start, desc=label, unit="result", unit_scale=True, file=sys.stderr,
                  mininterval=2.0) as bar:
            for lo in range(start, stop, CHUNK):
                hi = min(stop, lo + CHUNK)
                self._chunk(lo, hi)
                bar.update(hi - lo)
        self._resync_sequences()
        return time.perf_counter() - t0

    def _read_ids(self) -> None:
        """The next free ids: the relay wrote rows of its own since the last fill."""
        with self.engine.begin() as conn:
            def next_id(model: type[Any]) -> int:
                return int(conn.execute(select(func.coalesce(func.max(table_of(model).c.id), 0))).scalar_one()) + 1

            self.next_deliveries = next_id(Delivery)
            self.next_planned_messages = next_id(PlannedMessage)
            self.next_delivery_events = next_id(DeliveryEvent)

    def queue(self, count: int) -> None:
        """``count`` pending results, due now, spread over the destinations: the work a claim finds."""
        self._read_ids()
        self._chunk(-count, 0, pending=True)
        self._resync_sequences()

    def settle(self) -> None:
        """Mark what the ingest figure added as delivered: it becomes history, and the queue stays the same."""
        fill_key = "key_scale_fill"
        with self.engine.begin() as conn:
            ingested = select(table_of(Result).c.id).where(table_of(Result).c.key_id != fill_key)
            conn.execute(table_of(Delivery).update().where(table_of(Delivery).c.result_id.in_(ingested))
                         .values(status="delivered", next_attempt_at=None, delivered_at=self.now))
            conn.execute(table_of(Result).update().where(table_of(Result).c.key_id != fill_key)
                         .values(status="delivered", finished_at=self.now))

    def _chunk(self, lo: int, hi: int, *, pending: bool = False) -> None:
        """Results ``lo`` .. ``hi - 1`` of the history (``pending``: of the queue, in the last minutes)."""
        results: list[dict[str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        plans: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for i in range(lo, hi):
            status = "pending" if pending else _status_of(i)
            created = self.now - SPACING * (i + 1) if not pending else self.now + timedelta(milliseconds=i)
            finished = None if status == "pending" else created + timedelta(seconds=40)
            rid = f"res_{i:010d}{new_id('x')[2:18]}" if not pending else f"res_q{-i:09d}{new_id('x')[2:18]}"
            results.append({
                "id": rid, "tenant": "default", "key_id": "key_scale_fill", "idempotency_key": f"fill-{i}",
                "request_hash": f"{abs(i):064x}", "workflow_id": f"wf_scale_{i}",
                "title": f"Analysis: run {i}", "summary": "Mostly positive; two objections about cost.",
                "body": self.body, "fields_json": self.fields, "content": None, "embeds_json": [], "url": None,
                "color": None, "level": "success", "metadata_json": self.metadata, "mode": "first_success",
                "silent": False, "status": status, "generation": 1, "created_at": created,
                "updated_at": finished or created, "finished_at": finished})
            did = self.next_deliveries
            self.next_deliveries += 1
            delivery_status = {"delivered": "delivered", "undelivered": "failed", "picked_up": "cancelled",
                               "pending": "pending"}[status]
            key = self.keys[i % DESTINATIONS]
            failed = status == "undelivered"
            deliveries.append({
                "id": did, "result_id": rid, "generation": 1, "position": 0, "destination_key": key,
                "kind": "webhook", "target_json": {"webhook_id": key.partition(":")[2], "token": "enc:" + "x" * 120,
                                                     "thread_id": None}, "status": delivery_status,
                "attempts": 0 if status == "pending" else (4 if failed else 1),
                "next_attempt_at": self.now - timedelta(seconds=1) if status == "pending" else None,
                "first_attempt_at": None if status == "pending" else created,
                "last_error_status": 404 if failed else None, "last_error_code": 10015 if failed else None,
                "last_error_message": "Unknown Webhook" if failed else None, "render_scale": 0,
                "created_at": created, "updated_at": finished or created,
                "delivered_at": finished if status == "delivered" else None})
            if status == "pending":
                continue
            sent = status == "delivered"
            plans.append({
                "id": self.next_planned_messages, "delivery_id": did, "seq": 0,
                "payload_json": {"embeds": [{"title": f"Analysis: run {i}", "description": self.body[:1024]}]},
                "files_json": [], "nonce": f"{i:025d}", "message_id": f"{13 * 10 ** 17 + i}" if sent else None,
                "sent_at": finished if sent else None})
            self.next_planned_messages += 1
            events.append({"id": self.next_delivery_events, "delivery_id": did, "at": finished,
                           "outcome": "sent" if sent else ("failed" if failed else "cancelled"),
                           "http_status": 200 if sent else (404 if failed else None),
                           "discord_code": 10015 if failed else None, "message": None, "retry_at": None})
            self.next_delivery_events += 1
        with self.engine.begin() as conn:
            conn.execute(insert(table_of(Result)), results)
            conn.execute(insert(table_of(Delivery)), deliveries)
            if plans:
                conn.execute(insert(table_of(PlannedMessage)), plans)
            if events:
                conn.execute(insert(table_of(DeliveryEvent)), events)

    def _resync_sequences(self) -> None:
        """Ids were chosen here: PostgreSQL's sequences must continue after them (SQLite's rowid does)."""
        if self.engine.dialect.name != "postgresql":
            return
        with self.engine.begin() as conn:
            for table in ("deliveries", "planned_messages", "delivery_events"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"))

    def steady(self) -> None:
        """Let the store settle after a bulk fill, as a month-old store has: the figures are about what it
        holds, not about the maintenance a fill leaves behind (a multi-GB WAL, autovacuum, a checkpoint)."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.execute(text("VACUUM ANALYZE"))
                conn.execute(text("CHECKPOINT"))
        else:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000 if samples else float("nan")


def measure_claims(url: str, samples: int) -> float:
    """Median milliseconds of one lease claim of ``CLAIM_LIMIT`` destinations (given back after each)."""
    db = Database(make_engine(url))
    queue = DeliveryQueue(db)
    owner = f"scale-bench-{new_id('w')}"
    times: list[float] = []
    try:
        for n in range(samples + 3):
            t0 = time.perf_counter()
            claimed = queue.claim_destinations(owner, limit=CLAIM_LIMIT, lease_s=30)
            elapsed = time.perf_counter() - t0
            queue.release_all(owner)
            if not claimed:
                raise RuntimeError("nothing to claim: the fill leaves pending deliveries on every destination")
            if n >= 3:  # the first claims warm the connection and the page cache
                times.append(elapsed)
    finally:
        db.dispose()
    return _median_ms(times)


def measure_listing(base_url: str, key: str, samples: int) -> float:
    """Median milliseconds of ``GET /v1/results?status=undelivered`` on one keep-alive connection."""
    times: list[float] = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        for n in range(samples + 3):
            t0 = time.perf_counter()
            response = client.get("/v1/results", params={"status": "undelivered"})
            elapsed = time.perf_counter() - t0
            response.raise_for_status()
            if len(response.json()["items"]) == 0:
                raise RuntimeError("the undelivered listing is empty: the fill did not take")
            if n >= 3:
                times.append(elapsed)
    return _median_ms(times)


def measure(store: Store, work: Path, args: argparse.Namespace, label: str) -> dict[str, Any]:
    """Start ``relay serve`` on the store, take the three figures, stop it."""
    port = free_port()
    env = child_env({"RELAY_DATABASE_URL": store.url, "RELAY_RUN_WORKERS": "false", "RELAY_LOG_LEVEL": "WARNING",
                     "RELAY_PURGE_INTERVAL": "86400"})
    relay = Proc([*_relay_cmd(), "serve", "--host", HOST, "--port", str(port), "--no-access-log"], env, work, port,
                 work / f"relay-{label}.log")
    claim = measure_claims(store.url, args.samples)  # first: before the ingest figure adds to the queue
    with contextlib.ExitStack() as stack:
        stack.callback(relay.stop)
        relay.start()
        listing = measure_listing(relay.url, store.key, args.samples)
        load_args = argparse.Namespace(concurrency=args.concurrency, warmup=1.0, duration=args.ingest_seconds,
                                       idempotency=True)
        ingest: LoadResult = _run_load(port, store.key, load_args, work, relay.pid)
    figures = {"ingest_rate": ingest.rate, "ingest_p99_ms": ingest.p99_ms, "list_undelivered_ms": listing,
               "claim_ms": claim}
    print(f"  at {label}: ingest {ingest.rate:.0f} req/s (p99 {ingest.p99_ms:.1f} ms), "
          f"list undelivered {listing:.2f} ms, claim {claim:.2f} ms", flush=True)
    return figures


def _verdict(small: dict[str, Any], large: dict[str, Any]) -> tuple[list[tuple[str, float, float, float, bool]], bool]:
    rows = []
    for name, higher_is_better in (("ingest_rate", True), ("list_undelivered_ms", False), ("claim_ms", False)):
        a, b = small[name], large[name]
        ratio = b / a if a else float("nan")
        ok = ratio >= 1 - TARGET_DRIFT if higher_is_better else ratio <= 1 + TARGET_DRIFT
        rows.append((name, a, b, ratio, ok))
    return rows, all(r[4] for r in rows)


def run(args: argparse.Namespace, database_url: str | None, label: str) -> dict[str, Any]:
    """Fill, measure at ``--small``, fill on, measure at ``--rows``; print and return the comparison."""
    print(f"\n== {label}: {args.small:,} then {args.rows:,} results ==", flush=True)
    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="relay-scale-"))
        if args.keep:
            print(f"  keeping {work}", flush=True)
        else:
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        store = open_store(database_url, work, stack, args.postgres)
        engine = make_engine(store.url)
        stack.callback(engine.dispose)
        filler = Filler(engine)
        took = filler.fill(0, args.small, f"{label} fill to {args.small:,}")
        print(f"  filled {args.small:,} results in {took:.1f} s", flush=True)
        filler.queue(QUEUE)
        filler.steady()
        small = measure(store, work, args, f"{args.small:,}")
        filler.settle()
        took = filler.fill(args.small, args.rows, f"{label} fill to {args.rows:,}")
        print(f"  filled {args.rows - args.small:,} more results in {took:.1f} s", flush=True)
        filler.steady()
        large = measure(store, work, args, f"{args.rows:,}")
    rows, ok = _verdict(small, large)
    print(f"{'figure':<22} {args.small:>12,} {args.rows:>12,}   ratio")
    for name, a, b, ratio, good in rows:
        print(f"{name:<22} {a:>12.2f} {b:>12.2f}   {ratio:5.2f}x  {'ok' if good else 'DRIFTS'}")
    print(f"RATIO {label}: every figure within {TARGET_DRIFT:.0%} of its {args.small:,} value -> "
          f"{'MEETS' if ok else 'MISSES'} target", flush=True)
    return {"label": label, "small": small, "large": large, "rows": args.rows, "small_rows": args.small,
            "meets_target": ok}


def build_parser() -> argparse.ArgumentParser:
    """CLI of the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="results in the store for the large figures")
    parser.add_argument("--small", type=int, default=10_000, help="results in the store for the small figures")
    parser.add_argument("--samples", type=int, default=30, help="timed listings and claims per figure")
    parser.add_argument("--ingest-seconds", type=float, default=6.0, help="measured seconds of ingest load")
    parser.add_argument("--concurrency", type=int, default=32, help="ingest load connections")
    parser.add_argument("--skip-sqlite", action="store_true", help="only the PostgreSQL run (with --postgres)")
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_PG_SERVER, metavar="SERVER_URL",
                        help="also measure on PostgreSQL, in a database created and dropped on this server")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (store, logs) for inspection")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run on SQLite, and on PostgreSQL with ``--postgres``."""
    args = build_parser().parse_args(argv)
    if args.small <= 0 or args.rows <= args.small:
        raise SystemExit("--rows must be larger than --small, and both positive")
    runs = []
    if not args.skip_sqlite:
        runs.append(run(args, None, "SQLite"))
    if args.postgres:
        runs.append(run(args, PG_SENTINEL, "PostgreSQL"))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0 if runs and all(r["meets_target"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
