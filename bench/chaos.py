"""Chaos: results keep flowing while ``relay serve`` is SIGKILLed and restarted; count what was lost or doubled.

Run it as ``python -m bench.chaos`` (``--help`` for the knobs; defaults: 2,000 results, 5 kills).
Processes: the emulator (``python -m tests.fakes.discord``) and ``relay serve`` (fresh SQLite file
in a temp dir, or ``--database-url`` / ``--postgres``) in subprocesses; this driver posts results at
``--rate`` per second from ``--producers`` concurrent producers, and a killer thread SIGKILLs the
relay at spread-out moments of the flow (10 %, 30 %, 50 %, 70 %, 90 % for five kills) and starts it
again at once on the same port and store. Once, at 60 % of the flow, the **database** goes away for
``--db-outage`` seconds: on PostgreSQL the local cluster is stopped and started again
(``pg_ctlcluster``; always restarted), on SQLite another connection holds the write lock
(``BEGIN EXCLUSIVE``) past the relay's busy timeout. The relay must ride it out without a restart.

Producers behave as the API asks: a connection error, timeout, 502 or 503 is retried with the
**same** ``Idempotency-Key`` until the relay answers; a result counts as *accepted* only once it got
a 202. Some results go to webhooks, some as DMs (``{"type": "dm", "user_id": ...}``; the relay gets
the emulator's bot token).

After the flow the driver waits until every accepted result reached the emulator (or
``--drain-timeout`` passes), lets leases expire once more, and counts from the emulator's records:

* **lost**: accepted, never delivered (target 0);
* **duplicates**: messages beyond the first with the same content in the same channel (target
  ≤ 0.5 % for webhooks; 0 for DMs, which carry ``nonce`` + ``enforce_nonce`` and which the emulator
  deduplicates — its ``nonce_replays`` counter shows how often that saved a duplicate).

It also asks the relay for each accepted result's status (``delivered`` expected).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._common import (
    DEFAULT_PG_SERVER,
    PG_SENTINEL,
    Emulator,
    Proc,
    Store,
    count_429,
    free_port,
    message_tag,
    open_store,
    relay_proc,
    small_result,
)

TARGET_DUPLICATE_RATE = 0.005
RETRY_STATUS = {502, 503, 504}
WEBHOOK_BASE = 400_000_000
DM_USER_BASE = 500_000_000


@dataclass
class Flow:
    """What the producers saw."""

    accepted: dict[str, str] = field(default_factory=dict)  # tag -> result id
    kinds: dict[str, str] = field(default_factory=dict)  # tag -> "webhook" | "dm"
    retries: int = 0
    refused: Counter[int] = field(default_factory=Counter)  # final non-202 answers
    gave_up: int = 0


@dataclass
class Kill:
    """One SIGKILL and restart."""

    at_s: float
    restart_s: float


@dataclass
class Outage:
    """The one database outage of a run."""

    kind: str
    at_s: float = 0.0
    seconds: float = 0.0


def _pg_cluster(action: str) -> None:
    cluster = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    extra = ["-m", "fast"] if action == "stop" else []
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", action, *extra],
                   check=True, capture_output=True, timeout=60)


def _pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], timeout=10).returncode == 0


def database_outage(database_url: str, at: float, seconds: float, started: float, outage: Outage,
                    stop: threading.Event) -> None:
    """At ``at`` s into the flow take the store away for ``seconds`` (see the module docstring)."""
    if stop.wait(max(0.0, started + at - time.monotonic())) or seconds <= 0:
        return
    outage.at_s = round(time.monotonic() - started, 2)
    t0 = time.monotonic()
    if database_url.startswith("sqlite"):
        outage.kind = "SQLite write lock held"
        conn = sqlite3.connect(database_url.split(":///", 1)[1], timeout=60, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            time.sleep(seconds)
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    else:
        outage.kind = "PostgreSQL stopped and started"
        _pg_cluster("stop")
        try:
            time.sleep(seconds)
        finally:
            _pg_cluster("start")
            while not _pg_ready():
                time.sleep(0.2)
    outage.seconds = round(time.monotonic() - t0, 1)
    print(f"  database outage ({outage.kind}) at {outage.at_s:5.1f} s for {outage.seconds:.1f} s", flush=True)


@dataclass
class Outcome:
    """The verdict of one run."""

    results: int
    accepted: int
    accepted_dm: int
    refused: dict[str, int]
    gave_up: int
    producer_retries: int
    kills: list[dict[str, float]]
    db_outage: dict[str, Any]
    flow_s: float
    drain_s: float
    messages: int
    lost: int
    lost_dm: int
    duplicates_webhook: int
    duplicates_dm: int
    duplicate_rate: float
    nonce_replays: int
    status_429: int
    relay_status: dict[str, int]
    meets_target: bool


def _route(tag_n: int, args: argparse.Namespace, emulator: Emulator, run: str) -> tuple[str, list[dict[str, Any]]]:
    """Every ``1 / dm_fraction``-th result is a DM, the others go round-robin over the webhooks."""
    every = max(1, round(1 / args.dm_fraction)) if args.dm_fraction > 0 else 0
    if every and tag_n % every == every - 1:
        user = DM_USER_BASE + (tag_n // every) % args.dm_users
        return "dm", [{"type": "dm", "user_id": str(user)}]
    hook = tag_n % args.webhooks
    return "webhook", [{"type": "webhook", "url": emulator.webhook_url(WEBHOOK_BASE + hook, f"chaos{run}{hook}")}]


async def produce(args: argparse.Namespace, base: str, key: str, emulator: Emulator, run: str, flow: Flow,
                  started: float) -> None:
    """Post ``--results`` results at ``--rate`` per second; retry each with its key until it is answered."""
    deadline = started + args.results / args.rate + args.post_timeout
    next_n = iter(range(args.results))
    limits = httpx.Limits(max_connections=args.producers, max_keepalive_connections=args.producers)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"},
                                 timeout=httpx.Timeout(10.0), limits=limits) as client:
        async def producer() -> None:
            for n in next_n:
                tag = f"c{run}-{n}"
                kind, route = _route(n, args, emulator, run)
                flow.kinds[tag] = kind
                await asyncio.sleep(max(0.0, started + n / args.rate - time.monotonic()))
                while True:
                    try:
                        resp = await client.post("/v1/results", json=small_result(tag, route),
                                                 headers={"Idempotency-Key": tag})
                    except httpx.TransportError:
                        resp = None
                    if resp is not None and resp.status_code == 202:
                        flow.accepted[tag] = resp.json()["id"]
                        break
                    if resp is not None and resp.status_code not in RETRY_STATUS:
                        flow.refused[resp.status_code] += 1
                        break
                    if time.monotonic() > deadline:
                        flow.gave_up += 1
                        break
                    flow.retries += 1
                    await asyncio.sleep(0.1 + random.random() * 0.1)

        await asyncio.gather(*(producer() for _ in range(args.producers)))


def killer(relay_holder: list[Proc], moments: list[float], started: float, kills: list[Kill],
           stop: threading.Event) -> None:
    """SIGKILL the relay at each moment (seconds after ``started``) and start a new one at once."""
    for at in moments:
        if stop.wait(max(0.0, started + at - time.monotonic())):
            return
        old = relay_holder[0]
        old.kill()
        t0 = time.monotonic()
        new = Proc(old.cmd, old.env, old.cwd, old.port, old.log, ready_path=old.ready_path)
        new.start()
        relay_holder[0] = new
        kills.append(Kill(at_s=round(t0 - started, 2), restart_s=round(time.monotonic() - t0, 2)))
        print(f"  SIGKILL at {t0 - started:5.1f} s, serving again after {time.monotonic() - t0:.1f} s", flush=True)


def _records(emulator: Emulator, tags: set[str]) -> tuple[Counter[tuple[str, str]], dict[str, Any]]:
    """``(channel, tag) -> messages`` for this run's tags, and the emulator's counters."""
    seen: Counter[tuple[str, str]] = Counter()
    for m in emulator.messages():
        tag = message_tag(m)
        if tag in tags:
            seen[(str(m["channel_id"]), tag)] += 1
    return seen, emulator.counters()


def _relay_statuses(base: str, key: str, ids: list[str]) -> Counter[str]:
    """The relay's own view: status of every accepted result."""
    out: Counter[str] = Counter()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        for rid in ids:
            resp = client.get(f"/v1/results/{rid}")
            out[resp.json()["status"] if resp.status_code == 200 else f"http {resp.status_code}"] += 1
    return out


def run(args: argparse.Namespace, database_url: str | None, label: str) -> Outcome:
    """One chaos run on one store; prints and returns the verdict."""
    work = Path(tempfile.mkdtemp(prefix="relay-bench-chaos-"))
    run_tag = secrets.token_hex(3)
    relay_holder: list[Proc] = []
    stop = threading.Event()
    try:
        with Emulator(work) as emulator, contextlib.ExitStack() as stack:
            store: Store = open_store(database_url, work, stack, args.postgres)
            settings = {"worker_concurrency": args.concurrency, "poll_interval": 0.5, "lease_seconds": args.lease,
                        "retry_schedule": "1,2,4,8", "retry_jitter": 0.1, "shutdown_grace": 2}
            relay = relay_proc(store, emulator, work, "relay.log", port=free_port(), **settings).start()
            relay_holder.append(relay)
            flow_s = args.results / args.rate
            moments = [flow_s * (2 * k + 1) / (2 * args.restarts) for k in range(args.restarts)]
            print(f"\n== {label}: {args.results} results at {args.rate:g}/s ({flow_s:.0f} s), "
                  f"{args.dm_fraction:.0%} as DMs, {args.restarts} SIGKILLs ==", flush=True)
            flow, kills = Flow(), []
            started = time.monotonic()
            outage = Outage(kind="none")
            thread = threading.Thread(target=killer, args=(relay_holder, moments, started, kills, stop), daemon=True)
            thread.start()
            outage_thread = threading.Thread(
                target=database_outage, args=(store.url, flow_s * 0.6, args.db_outage, started, outage, stop),
                daemon=True)
            outage_thread.start()
            asyncio.run(produce(args, relay.url, store.key, emulator, run_tag, flow, started))
            flow_done = time.monotonic()
            thread.join(timeout=120)
            outage_thread.join(timeout=120)
            tags = set(flow.accepted)
            print(f"  flow done in {flow_done - started:.1f} s: {len(tags)} accepted, {flow.retries} producer "
                  f"retries, refused {dict(flow.refused)}, gave up {flow.gave_up}; draining...", flush=True)
            drain_deadline = time.monotonic() + args.drain_timeout
            while time.monotonic() < drain_deadline:
                seen, _ = _records(emulator, tags)
                if {t for _, t in seen} >= tags:
                    break
                time.sleep(2.0)
            drain_s = time.monotonic() - flow_done
            time.sleep(args.lease + 2)  # a lease still held by a killed process expires: late repeats show up
            seen, counters = _records(emulator, tags)
            delivered = {t for _, t in seen}
            lost = tags - delivered
            dup_hook = sum(n - 1 for (_, t), n in seen.items() if flow.kinds[t] == "webhook")
            dup_dm = sum(n - 1 for (_, t), n in seen.items() if flow.kinds[t] == "dm")
            statuses = _relay_statuses(relay_holder[0].url, store.key, list(flow.accepted.values()))
            dup_rate = (dup_hook + dup_dm) / len(tags) if tags else 0.0
            accepted_dm = sum(1 for t in tags if flow.kinds[t] == "dm")
            ok = not lost and dup_rate <= TARGET_DUPLICATE_RATE and dup_dm == 0 and len(kills) == args.restarts
            out = Outcome(
                results=args.results, accepted=len(tags), accepted_dm=accepted_dm,
                refused={str(k): v for k, v in flow.refused.items()}, gave_up=flow.gave_up,
                producer_retries=flow.retries, kills=[asdict(k) for k in kills], db_outage=asdict(outage),
                flow_s=round(flow_done - started, 1),
                drain_s=round(drain_s, 1), messages=sum(seen.values()), lost=len(lost),
                lost_dm=sum(1 for t in lost if flow.kinds[t] == "dm"), duplicates_webhook=dup_hook,
                duplicates_dm=dup_dm, duplicate_rate=dup_rate, nonce_replays=int(counters["nonce_replays"]),
                status_429=count_429(counters), relay_status=dict(statuses), meets_target=ok)
            print(f"  messages {out.messages} for {out.accepted} accepted results ({accepted_dm} DMs), "
                  f"drained {drain_s:.1f} s after the flow")
            print(f"  lost {out.lost} (DMs {out.lost_dm}); duplicates: webhook {dup_hook}, DM {dup_dm} "
                  f"-> {dup_rate:.2%}; emulator nonce replays {out.nonce_replays}; 429s {out.status_429}")
            print(f"  relay says: {dict(statuses)}")
            if lost:
                print(f"  lost tags (first 10): {sorted(lost)[:10]}")
            print(f"VERDICT ({label}): lost {out.lost} (target 0), duplicates {dup_rate:.2%} (target <= "
                  f"{TARGET_DUPLICATE_RATE:.1%}), DM duplicates {dup_dm} (target 0), kills {len(kills)}/"
                  f"{args.restarts}, database outage {outage.seconds:.0f} s ({outage.kind}) "
                  f"-> {'MEETS' if ok else 'MISSES'} target", flush=True)
            return out
    finally:
        stop.set()
        for proc in relay_holder:
            proc.stop()
        if args.keep:
            print(f"  logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    """CLI of the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20.0, help="results posted per second (all producers)")
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--restarts", type=int, default=5, help="SIGKILL + restart this many times")
    parser.add_argument("--webhooks", type=int, default=40)
    parser.add_argument("--dm-users", type=int, default=20)
    parser.add_argument("--dm-fraction", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=64, help="RELAY_WORKER_CONCURRENCY")
    parser.add_argument("--lease", type=float, default=3.0, help="RELAY_LEASE_SECONDS (a killed worker's leases)")
    parser.add_argument("--db-outage", type=float, default=6.0,
                        help="seconds the database is away once, at 60 %% of the flow (0: no outage)")
    parser.add_argument("--post-timeout", type=float, default=60.0,
                        help="a producer gives up retrying this long after the flow's planned end")
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--database-url", help="run the relay on this (migrated here) store instead of SQLite")
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_PG_SERVER, metavar="SERVER_URL",
                        help="also run on PostgreSQL, in a database created and dropped on this server")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs) for inspection")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run on SQLite (or ``--database-url``), and on PostgreSQL with ``--postgres``."""
    args = build_parser().parse_args(argv)
    outcomes = [run(args, args.database_url, "custom store" if args.database_url else "SQLite")]
    if args.postgres:
        outcomes.append(run(args, PG_SENTINEL, "PostgreSQL"))
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2))
    return 0 if all(o.meets_target for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
