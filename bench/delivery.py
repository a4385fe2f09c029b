"""Delivery throughput against the emulator's rate limits, next to ``discord-webhook`` doing the same.

Run it as ``python -m bench.delivery`` (``--help`` for the knobs; defaults: 200 webhooks × 20
messages). Three processes share the machine's cores:

* the **emulator** (``python -m tests.fakes.discord --auto-create-webhooks``) in a subprocess;
* the **relay** (``relay serve`` on a fresh SQLite file in a temp dir, or ``--database-url`` /
  ``--postgres``) in a subprocess;
* this **driver**, which posts results, polls the emulator's counters, and runs the peer.

Phases, one run:

1. *Enqueue*: ``relay serve`` with ``RELAY_RUN_WORKERS=false`` accepts all results (one message
   each, round-robin over the webhooks), then stops; so delivery starts from a full queue and the
   producer does not compete with it for the CPU.
2. *Relay throughput*: ``relay serve`` with workers (``--concurrency``) on the same store; the
   delivery window runs from the first to the last message the emulator recorded.
3. *Latency*: on that now idle relay, ``--latency-samples`` results one at a time, each to a fresh
   webhook, timed from just before the POST to the emulator's ``created_at`` of the message.
4. *Peer*: the relay stopped, ``discord_webhook.AsyncDiscordWebhook(rate_limit_retry=True)`` sends
   the same workload from this process: one asyncio task per webhook, its messages in sequence.

The ceiling comes from the emulator's configured limits. It uses fixed windows, so ``M`` messages
to one webhook can go out in ``ceil(M / requests) - 1`` periods of each bucket that applies (the
webhook-execute bucket, and the per-channel cap: 20 messages fit one window of 30 per 60 s, so it
does not slow such a run); an omniscient sender takes the longest of these, ``ideal``, and the
ceiling is ``webhooks × M / (ideal + per)``: 150 msg/s at 60 × 20, 500 at 200 × 20. Counting the
last webhook window in full the same way, the rate compared with it is ``messages / (last - first +
per)``. The raw first-to-last rate is printed as well.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._common import (
    DEFAULT_PG_SERVER,
    PG_SENTINEL,
    Emulator,
    Store,
    count_429,
    cpu_seconds,
    message_tag,
    open_store,
    percentile,
    relay_proc,
    running,
    small_result,
)

# The throughput targets: 0.95x the ceiling while it is low enough for the relay (60 x 20,
# 150 msg/s), 0.6x at 200 x 20 (500 msg/s), where the emulator and the load share the two cores.
TARGET_CEILING_RATIO = 0.95
TARGET_CEILING_RATIO_BUSY = 0.6
BUSY_CEILING = 150.0  # msg/s: above it, the lower target
TARGET_PEER_RATIO = 3.0
RELAY_WEBHOOK_BASE = 100_000_000  # webhook ids: relay run, latency run and peer run never share a bucket
LATENCY_WEBHOOK_BASE = 200_000_000
PEER_WEBHOOK_BASE = 300_000_000


def target_ratio(ceiling: float) -> float:
    """The throughput target (a fraction of the ceiling) of a run with this ceiling."""
    return TARGET_CEILING_RATIO if ceiling <= BUSY_CEILING else TARGET_CEILING_RATIO_BUSY


@dataclass
class Throughput:
    """One sender's run of the workload, as the emulator saw it."""

    sender: str
    expected: int
    delivered: int
    distinct: int
    first_to_last_s: float
    rate_raw: float  # messages / (last - first)
    rate: float  # messages / (last - first + per): comparable with the ceiling
    ceiling: float
    ratio_to_ceiling: float
    ideal_first_to_last_s: float
    requests: int
    status_429: int
    status_429_after_first_window: int
    start_lag_s: float  # from "sender ready" to the first message
    cpu_s: dict[str, float] = field(default_factory=dict)
    pacing: dict[str, float] = field(default_factory=dict)  # where the span went: see _pacing


def _limits(emulator: Emulator, webhooks: int, messages: int) -> tuple[float, float, float]:
    """``(ideal first-to-last seconds, per, ceiling msgs/s)`` of ``messages`` to each of ``webhooks``.

    Each of the emulator's fixed-window buckets that applies lets ``M`` messages out in
    ``ceil(M / requests) - 1`` of its periods: the webhook-execute bucket, and the per-channel cap
    (auto-created webhooks get a channel each, so it applies per webhook too) when one is set. An
    omniscient sender needs the longest of these, so the ceiling is the workload over that plus one
    webhook period, the same convention as the measured rate (``messages / (last - first + per)``).
    """
    limits = emulator.rate_limits()
    hook = limits["webhook"]
    per = float(hook["per"])
    buckets = [(int(hook["requests"]), per)]
    if limits.get("webhook_channel"):
        chan = limits["webhook_channel"]
        buckets.append((int(chan["requests"]), float(chan["per"])))
    ideal = max((math.ceil(messages / requests) - 1) * period for requests, period in buckets)
    return ideal, per, webhooks * messages / (ideal + per)


def _pacing(msgs: list[dict[str, Any]], requests: int, per: float) -> dict[str, float]:
    """Where a run's first-to-last span went, from the emulator's ``created_at`` of each message.

    Each webhook's messages, in order, fall into fixed windows of ``requests``; the emulator opens a
    window at its first request and empties it ``per`` seconds later. So a webhook's span is its
    *start* (first message after the run's first), plus per window after the first the *reset lag*
    (that window's first message after the earliest moment it could open: the previous window's
    first plus ``per``), plus ``per`` each, plus the last window's *fill* (first to last message of
    one window: the chain of send and commit). Each is printed as p50 and max over webhooks or windows;
    the run's span is the slowest webhook's.
    """
    by_hook: dict[str, list[float]] = {}
    for m in msgs:
        tag = message_tag(m) or ""
        by_hook.setdefault(tag.rsplit("-", 1)[0], []).append(float(m["created_at"]))
    if not by_hook:
        return {}
    first = min(min(t) for t in by_hook.values())
    starts, lags, fills = [], [], []
    for times in by_hook.values():
        times.sort()
        windows = [times[i:i + requests] for i in range(0, len(times), requests)]
        starts.append(times[0] - first)
        lags += [b[0] - (a[0] + per) for a, b in zip(windows, windows[1:], strict=False)]
        fills += [w[-1] - w[0] for w in windows]
    out: dict[str, float] = {}
    for name, values in (("start", starts), ("reset_lag", lags), ("fill", fills)):
        if values:
            out[f"{name}_p50_ms"] = percentile([v * 1000 for v in values], 0.5)
            out[f"{name}_max_ms"] = max(values) * 1000
    return out


def _measure(sender: str, emulator: Emulator, tags: set[str], *, ideal: float, per: float, ceiling: float,
             ready_at: float, cpu: dict[str, float]) -> Throughput:
    """Read the emulator's records of one run and turn them into a :class:`Throughput`."""
    msgs = [m for m in emulator.messages(kind="webhook") if message_tag(m) in tags]
    counters = emulator.counters()
    times = sorted(float(m["created_at"]) for m in msgs)
    first, last = (times[0], times[-1]) if times else (float("nan"), float("nan"))
    rejected = emulator.client.get("/_emulator/rejected").json()["rejected"]
    requests = int(emulator.rate_limits()["webhook"]["requests"])
    late_429 = sum(1 for r in rejected if r["status"] == 429 and float(r["at"]) > first + per)
    span = last - first
    rate = len(msgs) / (span + per) if msgs else 0.0
    return Throughput(
        sender=sender, expected=len(tags), delivered=len(msgs), distinct=len({message_tag(m) for m in msgs}),
        first_to_last_s=span, rate_raw=len(msgs) / span if span > 0 else float("nan"), rate=rate,
        ceiling=ceiling, ratio_to_ceiling=rate / ceiling,
        ideal_first_to_last_s=ideal,
        requests=int(counters["requests"]), status_429=count_429(counters), status_429_after_first_window=late_429,
        start_lag_s=first - ready_at, cpu_s=cpu, pacing=_pacing(msgs, requests, per))


async def _post_all(base: str, key: str, payloads: list[dict[str, Any]], concurrency: int) -> list[str]:
    """POST every payload (``concurrency`` at a time, each with an Idempotency-Key); the result ids."""
    ids: list[str] = [""] * len(payloads)
    queue = iter(range(len(payloads)))
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        async def producer() -> None:
            for i in queue:
                resp = await client.post("/v1/results", json=payloads[i],
                                         headers={"Idempotency-Key": payloads[i]["title"]})
                if resp.status_code != 202:
                    raise RuntimeError(f"POST /v1/results answered {resp.status_code}: {resp.text[:300]}")
                ids[i] = resp.json()["id"]
        await asyncio.gather(*(producer() for _ in range(concurrency)))
    return ids


def _wait_delivered(emulator: Emulator, expected: int, timeout: float) -> None:
    """Poll the emulator's accepted counter until ``expected`` messages arrived (or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(emulator.counters()["accepted"]) >= expected:
            return
        time.sleep(0.25)
    print(f"  ! timed out after {timeout:.0f} s waiting for {expected} messages", flush=True)


def _workload(tag: str, emulator: Emulator, base_id: int, webhooks: int, messages: int,
              ) -> list[tuple[str, str]]:
    """``(webhook url, message tag)`` for every message, round-robin over the webhooks."""
    return [(emulator.webhook_url(base_id + h, f"tok{tag}{h}"), f"{tag}-{h}-{n}")
            for n in range(messages) for h in range(webhooks)]


@contextlib.contextmanager
def _profiled(out: Path | None, pids: dict[str, int], idle: bool = False) -> Iterator[None]:
    """With ``--profile DIR``: ``py-spy record`` each pid (collapsed stacks, one line per thread and
    stack; with ``idle`` waiting threads too) into ``DIR/<name>.txt`` while the block runs."""
    spy = Path(sys.executable).with_name("py-spy")
    if out is None or not spy.exists():
        if out is not None:
            print("  ! --profile needs py-spy next to this interpreter (pip install py-spy)", flush=True)
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen([str(spy), "record", "-p", str(pid), "-r", "200", "-f", "raw", "-o",
                               str(out / f"{name}.txt"), "--nonblocking", "--threads",
                               *(["--idle"] if idle else [])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name, pid in pids.items()]
    try:
        yield
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def bench_relay(args: argparse.Namespace, emulator: Emulator, store: Store, work: Path, tag: str,
                ) -> tuple[Throughput, dict[str, Any]]:
    """Phases 1-3: enqueue with workers off, deliver with workers on, then idle latency."""
    ideal, per, ceiling = _limits(emulator, args.webhooks, args.messages)
    plan = _workload(f"r{tag}", emulator, RELAY_WEBHOOK_BASE, args.webhooks, args.messages)
    payloads = [small_result(t, [{"type": "webhook", "url": url}]) for url, t in plan]
    started = time.monotonic()
    with running(relay_proc(store, emulator, work, "relay-enqueue.log", run_workers="false")) as relay:
        asyncio.run(_post_all(relay.url, store.key, payloads, args.producers))
    print(f"  enqueued {len(payloads)} results in {time.monotonic() - started:.1f} s (workers off)", flush=True)

    emulator.clear_records()
    settings = {"worker_concurrency": args.concurrency, "poll_interval": 0.5}
    with running(relay_proc(store, emulator, work, "relay.log", **settings)) as relay:
        ready_at = time.time()
        cpu0 = {"relay": cpu_seconds(relay.pid), "emulator": cpu_seconds(emulator.proc.pid)}
        with _profiled(args.profile, {"relay": relay.pid, "emulator": emulator.proc.pid}, args.profile_idle):
            _wait_delivered(emulator, len(payloads), args.timeout)
        cpu = {k: cpu_seconds(p) - cpu0[k] for k, p in (("relay", relay.pid), ("emulator", emulator.proc.pid))}
        result = _measure("relay", emulator, {t for _, t in plan}, ideal=ideal, per=per,
                          ceiling=ceiling, ready_at=ready_at, cpu=cpu)
        settled = wait_until_idle(store.url)
        print(f"  the relay was idle {settled:.2f} s after the load's messages were counted (every lease given back)",
              flush=True)
        latency = bench_latency(args, emulator, relay.url, store.key, tag)
    return result, latency


def wait_until_idle(url: str, timeout: float = 60.0) -> float:
    """Seconds until no destination is leased any more: the load's tail (its last records, one lease
    release per destination) is behind the relay, so the latency phase measures an idle relay."""
    from sqlalchemy import func, select

    from schemas.tables import Destination
    from store.engine import make_engine
    from store.session import table_of

    engine = make_engine(url)
    start = time.monotonic()
    try:
        while time.monotonic() - start < timeout:
            with engine.connect() as conn:
                leased = conn.execute(select(func.count()).select_from(Destination)
                                      .where(table_of(Destination).c.lease_owner.is_not(None))).scalar_one()
            if leased == 0:
                break
            time.sleep(0.02)
    finally:
        engine.dispose()
    return time.monotonic() - start


def bench_latency(args: argparse.Namespace, emulator: Emulator, base: str, key: str, tag: str) -> dict[str, Any]:
    """POST-to-message latency on an idle relay: one result at a time, each to a fresh webhook."""
    emulator.clear_records()
    sent: dict[str, float] = {}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        for i in range(args.latency_samples):
            name = f"l{tag}-{i}"
            url = emulator.webhook_url(LATENCY_WEBHOOK_BASE + i, f"lat{tag}{i}")
            sent[name] = time.time()
            resp = client.post("/v1/results", json=small_result(name, [{"type": "webhook", "url": url}]))
            resp.raise_for_status()
            deadline = time.monotonic() + 30
            while int(emulator.counters()["accepted"]) < i + 1 and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.05)  # idle between samples
    arrived = {message_tag(m): float(m["created_at"]) for m in emulator.messages(kind="webhook")}
    lat = [(arrived[n] - t0) * 1000 for n, t0 in sent.items() if n in arrived]
    order = [i for i, n in enumerate(sent) if n in arrived]
    slowest = sorted(zip(lat, order, strict=True), reverse=True)[:3]  # where an outlier sits tells what it was
    return {"samples": len(lat), "missing": len(sent) - len(lat), "p50_ms": percentile(lat, 0.5),
            "p99_ms": percentile(lat, 0.99), "max_ms": max(lat) if lat else float("nan"),
            "slowest": [{"sample": i, "ms": round(ms, 1)} for ms, i in slowest]}


def bench_peer(args: argparse.Namespace, emulator: Emulator, tag: str) -> Throughput:
    """Phase 4: ``discord_webhook``'s async client, one task per webhook, messages in sequence."""
    import logging

    from discord_webhook import AsyncDiscordWebhook, DiscordEmbed

    logging.getLogger("discord_webhook").setLevel(logging.CRITICAL)  # it logs every 429 it sleeps on
    ideal, per, ceiling = _limits(emulator, args.webhooks, args.messages)
    plan = _workload(f"p{tag}", emulator, PEER_WEBHOOK_BASE, args.webhooks, args.messages)
    by_hook: dict[str, list[str]] = {}
    for url, t in plan:
        by_hook.setdefault(url, []).append(t)
    failures: Counter[int] = Counter()

    async def one_webhook(url: str, tags: list[str]) -> None:
        for t in tags:
            hook = AsyncDiscordWebhook(url=url, rate_limit_retry=True, timeout=60)
            embed = DiscordEmbed(title=f"✅ {t}", description="Bench result.", color=5763719)
            embed.add_embed_field(name="Run", value=t, inline=True)
            embed.add_embed_field(name="Kind", value="bench", inline=False)
            hook.add_embed(embed)
            resp = await hook.execute()
            if resp.status_code >= 300:
                failures[resp.status_code] += 1

    async def all_webhooks() -> None:
        await asyncio.gather(*(one_webhook(url, tags) for url, tags in by_hook.items()))

    emulator.clear_records()
    ready_at = time.time()
    cpu0 = {"peer (driver process)": time.process_time(), "emulator": cpu_seconds(emulator.proc.pid)}
    asyncio.run(asyncio.wait_for(all_webhooks(), timeout=args.timeout))
    cpu = {"peer (driver process)": time.process_time() - cpu0["peer (driver process)"],
           "emulator": cpu_seconds(emulator.proc.pid) - cpu0["emulator"]}
    if failures:
        print(f"  ! peer got non-2xx answers in the end: {dict(failures)}", flush=True)
    return _measure("discord-webhook (peer)", emulator, {t for _, t in plan}, ideal=ideal, per=per,
                    ceiling=ceiling, ready_at=ready_at, cpu=cpu)


def _print_throughput(r: Throughput) -> None:
    cpu = ", ".join(f"{k} {v:.1f} s ({v / r.delivered * 1000:.2f} ms/msg)" for k, v in r.cpu_s.items()) \
        if r.delivered else "-"
    print(f"  {r.sender}: {r.delivered}/{r.expected} messages ({r.distinct} distinct), first->last "
          f"{r.first_to_last_s:.2f} s (ideal {r.ideal_first_to_last_s:.2f} s), start lag {r.start_lag_s:.2f} s")
    print(f"    rate {r.rate:.1f} msg/s (raw first->last {r.rate_raw:.1f}) vs ceiling {r.ceiling:.1f} "
          f"-> {r.ratio_to_ceiling:.3f}x;  requests {r.requests}, 429s {r.status_429} "
          f"({r.status_429_after_first_window} after the first window)")
    print(f"    CPU during the run: {cpu}", flush=True)
    if r.delivered and len(r.cpu_s) == 2:
        per_msg = sum(r.cpu_s.values()) / r.delivered
        cores = os.cpu_count() or 1
        print(f"    CPU-bound ceiling: {cores} cores / {per_msg * 1000:.2f} ms of CPU per message (both processes) "
              f"= {cores / per_msg:.0f} msg/s; the rate is {r.rate * per_msg / cores:.2f}x of it", flush=True)
    if r.pacing:
        p = r.pacing
        print(f"    where the span went (p50 / max): start {p['start_p50_ms']:.0f} / {p['start_max_ms']:.0f} ms, "
              f"reset lag per window {p.get('reset_lag_p50_ms', 0):.0f} / {p.get('reset_lag_max_ms', 0):.0f} ms, "
              f"window fill {p['fill_p50_ms']:.0f} / {p['fill_max_ms']:.0f} ms", flush=True)


def run(args: argparse.Namespace, database_url: str | None, label: str) -> dict[str, Any]:
    """One full run (relay, latency, peer) on one store; prints and returns the numbers."""
    work = Path(tempfile.mkdtemp(prefix="relay-bench-delivery-"))
    tag = secrets.token_hex(3)
    try:
        with Emulator(work) as emulator, contextlib.ExitStack() as stack:
            store = open_store(database_url, work, stack, args.postgres)
            print(f"\n== {label}: {args.webhooks} webhooks x {args.messages} messages, "
                  f"worker concurrency {args.concurrency} ==", flush=True)
            relay, latency = bench_relay(args, emulator, store, work, tag)
            _print_throughput(relay)
            print(f"  idle latency POST->message ({latency['samples']} samples): p50 {latency['p50_ms']:.1f} ms, "
                  f"p99 {latency['p99_ms']:.1f} ms, max {latency['max_ms']:.1f} ms; slowest "
                  + ", ".join(f"#{s['sample']} {s['ms']:.0f} ms" for s in latency["slowest"]), flush=True)
            peer = None
            if not args.skip_peer:
                peer = bench_peer(args, emulator, tag)
                _print_throughput(peer)
            peer_ratio = relay.rate / peer.rate if peer and peer.rate else float("nan")
            target = target_ratio(relay.ceiling)
            ok = (relay.ratio_to_ceiling >= target and relay.status_429_after_first_window == 0
                  and (peer is None or peer_ratio >= TARGET_PEER_RATIO))
            print(f"RATIO ({label}): relay/ceiling {relay.ratio_to_ceiling:.3f}x (target >= {target}), "
                  f"relay/peer {peer_ratio:.2f}x (target >= {TARGET_PEER_RATIO}), relay 429s {relay.status_429} "
                  f"(steady state {relay.status_429_after_first_window}, target 0) "
                  f"-> {'MEETS' if ok else 'MISSES'} target", flush=True)
            return {"label": label, "relay": asdict(relay), "peer": asdict(peer) if peer else None,
                    "latency": latency, "relay_peer_ratio": peer_ratio, "meets_target": ok}
    finally:
        if args.keep:
            print(f"  logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    """CLI of the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.delivery", description=__doc__.split("\n\n")[0])
    parser.add_argument("--webhooks", type=int, default=200)
    parser.add_argument("--messages", type=int, default=20, help="messages (results) per webhook")
    parser.add_argument("--concurrency", type=int, default=256, help="RELAY_WORKER_CONCURRENCY")
    parser.add_argument("--producers", type=int, default=16, help="concurrent POSTs while enqueueing")
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=240.0, help="give up on a delivery run after this")
    parser.add_argument("--skip-peer", action="store_true", help="do not run discord-webhook")
    parser.add_argument("--database-url", help="run the relay on this (migrated here) store instead of SQLite")
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_PG_SERVER, metavar="SERVER_URL",
                        help="also run on PostgreSQL, in a database created and dropped on this server")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy the relay and the emulator during the delivery run (collapsed stacks in DIR)")
    parser.add_argument("--profile-idle", action="store_true", help="with --profile: sample waiting threads too")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs) for inspection")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run on SQLite (or ``--database-url``), and on PostgreSQL with ``--postgres``."""
    args = build_parser().parse_args(argv)
    runs = [run(args, args.database_url, "custom store" if args.database_url else "SQLite")]
    if args.postgres:
        runs.append(run(args, PG_SENTINEL, "PostgreSQL"))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0 if all(r["meets_target"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
