"""Takeover: how long after a SIGKILL does an immediately restarted relay finish its predecessor's work?

Run it as ``python -m bench.takeover`` (``--postgres`` adds a PostgreSQL run). ``relay serve``
accepts 100 results for 10 webhooks (the emulator limits each webhook to ``--per-webhook`` messages
per 2 s, 2 by default, so most of the work is still queued when it dies), is SIGKILLed while it
holds the destinations' leases, and a new ``relay serve`` starts
at once on the same store. The figure is the time from the restart to the last result delivered,
printed beside ``RELAY_LEASE_SECONDS`` (the relay used to wait that long for a dead owner's
leases) and beside the ideal time the rate limits alone impose on the work that was left.
Target: within 10 s of the restart.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench._common import (
    DEFAULT_PG_SERVER,
    PG_SENTINEL,
    Emulator,
    Proc,
    message_tag,
    open_store,
    relay_proc,
    small_result,
)

WEBHOOK_BASE = 600_000_000
TARGET_S = 10.0


def _delivered_in_emulator(emulator: Emulator, tag: str) -> int:
    return len({t for t in (message_tag(m) for m in emulator.messages()) if t and t.startswith(f"t{tag}-")})


def _delivered(base: str, key: str, ids: list[str]) -> int:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        return sum(1 for rid in ids if client.get(f"/v1/results/{rid}").json().get("status") == "delivered")


def run(args: argparse.Namespace, database_url: str | None, label: str) -> dict[str, Any]:
    """One SIGKILL-and-restart on one store; prints and returns the figures."""
    work = Path(tempfile.mkdtemp(prefix="relay-bench-takeover-"))
    procs: list[Proc] = []
    try:
        with Emulator(work) as emulator, contextlib.ExitStack() as stack:
            store = open_store(database_url, work, stack, args.postgres)
            limit = {"requests": args.per_webhook, "per": 2.0}
            emulator.client.put("/_emulator/rate_limits",
                                json={"webhook": limit, "webhook_message": limit}).raise_for_status()
            settings = {"lease_seconds": args.lease, "poll_interval": 2.0}
            first = relay_proc(store, emulator, work, "a.log", **settings).start()
            procs.append(first)
            tag = secrets.token_hex(3)

            def post(i: int) -> str:
                hook = i % args.webhooks
                url = emulator.webhook_url(WEBHOOK_BASE + hook, f"takeover{tag}{hook}")
                resp = httpx.post(f"{first.url}/v1/results", headers={"Authorization": f"Bearer {store.key}"},
                                  json=small_result(f"t{tag}-{i}", [{"type": "webhook", "url": url}]), timeout=30)
                return str(resp.json()["id"])

            # Posted at once, so most of the work is still queued behind the rate limits at the kill.
            with ThreadPoolExecutor(16) as pool:
                ids = list(pool.map(post, range(args.results)))
            first.kill()
            left_before = args.results - _delivered_in_emulator(emulator, tag)
            killed = time.monotonic()
            second = relay_proc(store, emulator, work, "b.log", port=first.port, **settings).start()
            procs.append(second)
            restarted = time.monotonic()
            while _delivered(second.url, store.key, ids) < args.results:
                if time.monotonic() - restarted > args.lease * 3:
                    break
                time.sleep(0.2)
            done = time.monotonic()
            seen = Counter(message_tag(m) for m in emulator.messages())
            tags = {f"t{tag}-{i}" for i in range(args.results)}
            duplicates = sum(n - 1 for t, n in seen.items() if t in tags)
            lost = len(tags - set(seen))
            limits = emulator.rate_limits()["webhook"]
            per_webhook_left = -(-left_before // args.webhooks)
            ideal = max(0.0, (per_webhook_left / limits["requests"] - 1) * limits["per"])
            out = {"store": label, "results": args.results, "webhooks": args.webhooks,
                   "left_at_kill": left_before, "restart_s": round(restarted - killed, 2),
                   "finished_after_restart_s": round(done - restarted, 2), "lease_s": args.lease,
                   "rate_limit_floor_s": round(ideal, 2), "duplicates": duplicates, "lost": lost,
                   "meets_target": lost == 0 and done - restarted <= TARGET_S}
            print(f"{label}: {left_before} of {args.results} results left at the SIGKILL; restarted in "
                  f"{out['restart_s']:.1f} s; all delivered {out['finished_after_restart_s']:.1f} s after the "
                  f"restart (the rate limits alone need ≥ {ideal:.1f} s; the lease is {args.lease:g} s); "
                  f"lost {lost}, duplicates {duplicates} -> {'MEETS' if out['meets_target'] else 'MISSES'} "
                  f"the {TARGET_S:g} s target", flush=True)
            return out
    finally:
        for proc in procs:
            proc.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run on SQLite, and on PostgreSQL with ``--postgres``."""
    parser = argparse.ArgumentParser(prog="python -m bench.takeover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=100)
    parser.add_argument("--webhooks", type=int, default=10)
    parser.add_argument("--per-webhook", type=int, default=2, help="emulator limit: messages per 2 s per webhook")
    parser.add_argument("--lease", type=float, default=30.0, help="RELAY_LEASE_SECONDS (the default)")
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_PG_SERVER, metavar="SERVER_URL")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    outcomes = [run(args, None, "SQLite")]
    if args.postgres:
        outcomes.append(run(args, PG_SENTINEL, "PostgreSQL"))
    if args.json:
        args.json.write_text(json.dumps(outcomes, indent=2))
    return 0 if all(o["meets_target"] for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
