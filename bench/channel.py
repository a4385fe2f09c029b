"""Discord's hidden per-channel limit: 90 results into one channel through three webhooks, and a burst
into 20 channels next to one busy channel.

Run it as ``python -m bench.channel`` (``--help`` for the knobs). The emulator and the relay run as
subprocesses on 127.0.0.1; both are told the same channel limit. Discord's is about 30 posts per
60 s; the bench scales the window down (default 30 per 20 s) so one run takes about a minute,
and says so in its output. The webhooks keep Discord's own bucket (5 per 2 s).

1. *One channel.* Three webhooks of one channel, 90 results posted at once (30 per webhook). The
   emulator's windows are fixed: the first post of a window starts it, so ``M`` posts can go out in
   ``ceil(M / count) - 1`` windows plus the last one; a sender that fills every window reaches the
   ceiling ``count / per``, and the rate compared with it is ``messages / (last - first + per)``
   (the same convention as ``bench/delivery.py``). Because the three webhooks' own buckets also
   bound each burst, the bench also prints the rate an omniscient sender could reach under both
   limits (the same formula on its computed schedule) and the ratio to that.
   Target: all delivered, 0 429s after the first, ≥ 0.9× the channel's ceiling.
2. *Burst past a busy channel.* 20 results to 20 webhooks of 20 channels, posted while the busy
   channel of phase 1 still has a queue (a second batch of 60 results), against the same burst with
   nothing else queued, side by side in one run: the time from the first POST to the last message of
   the burst, and the ratio busy/alone. Target: the burst is not slowed (ratio ≈ 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import secrets
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench._common import Emulator, count_429, message_tag, open_store, relay_proc, small_result

CHANNEL = "760000000000000001"
WEBHOOK_LIMIT = {"requests": 5, "per": 2.0}  # Discord's per-webhook bucket


def _ideal_last(messages: int, webhooks: int, count: int, per: float) -> float:
    """When an omniscient sender's last post goes out (seconds after the first), given fixed windows
    of the channel (``count``/``per``) and of each webhook (5/2 s), round-robin over the webhooks."""
    channel_start, channel_used = 0.0, 0
    hook_start = [0.0] * webhooks
    hook_used = [0] * webhooks
    t = last = 0.0
    for i in range(messages):
        hook = i % webhooks
        while True:
            if t >= channel_start + per:
                channel_start, channel_used = t, 0
            if t >= hook_start[hook] + WEBHOOK_LIMIT["per"]:
                hook_start[hook], hook_used[hook] = t, 0
            if channel_used < count and hook_used[hook] < WEBHOOK_LIMIT["requests"]:
                break
            t = min(x for x in (channel_start + per if channel_used >= count else math.inf,
                                hook_start[hook] + WEBHOOK_LIMIT["per"]
                                if hook_used[hook] >= WEBHOOK_LIMIT["requests"] else math.inf))
        channel_used += 1
        hook_used[hook] += 1
        last = t
    return last


def _post_all(relay_url: str, key: str, results: list[dict[str, Any]]) -> float:
    """POST every result (16 at a time); returns when the first POST started (monotonic → epoch)."""
    started = time.time()
    with httpx.Client(base_url=relay_url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client, \
            ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda body: client.post("/v1/results", json=body), results))
    bad = [a.text for a in answers if a.status_code != 202]
    if bad:
        raise RuntimeError(f"{len(bad)} results refused: {bad[0]}")
    return started


def _times(emulator: Emulator, tags: set[str], timeout: float) -> list[float]:
    """``created_at`` of the messages carrying ``tags``, waiting until every tag has arrived."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in emulator.messages() if message_tag(m) in tags]
        if {message_tag(m) for m in found} >= tags or time.monotonic() > deadline:
            return sorted(float(m["created_at"]) for m in found)
        time.sleep(0.25)


def _webhooks(emulator: Emulator, n: int, channel: str | None) -> list[str]:
    urls = []
    for _ in range(n):
        body = {"channel_id": channel} if channel else {}
        urls.append(emulator.client.post("/_emulator/webhooks", json=body).json()["url"])
    return urls


def _burst(emulator: Emulator, relay_url: str, key: str, tag: str, timeout: float) -> float:
    hooks = _webhooks(emulator, 20, None)  # twenty channels of their own
    tags = {f"{tag}-{i}" for i in range(20)}
    started = _post_all(relay_url, key, [small_result(f"{tag}-{i}", [{"type": "webhook", "url": url}])
                                         for i, url in enumerate(hooks)])
    times = _times(emulator, tags, timeout)
    return (times[-1] - started) if len(times) >= 20 else math.inf


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both phases; prints the figures and returns them."""
    count, _, per_text = args.channel_limit.partition("/")
    count_n, per = int(count), float(per_text)
    work = Path(tempfile.mkdtemp(prefix="relay-bench-channel-"))
    try:
        with contextlib.ExitStack() as stack:
            emulator = stack.enter_context(Emulator(work))
            limit = {"requests": count_n, "per": per}
            emulator.client.put("/_emulator/rate_limits", json={
                "webhook": WEBHOOK_LIMIT, "webhook_message": WEBHOOK_LIMIT, "webhook_channel": limit,
            }).raise_for_status()
            store = open_store(args.database_url, work, stack, None)
            relay = relay_proc(store, emulator, work, "relay.log", channel_limit=args.channel_limit,
                               poll_interval=0.5, worker_concurrency=16).start()
            stack.callback(relay.stop)
            print(f"channel limit {count_n} posts per {per:g} s in emulator and relay (Discord's is about 30 per "
                  f"60 s: the window is scaled down so the bench runs in about a minute); webhooks 5 per 2 s",
                  flush=True)

            # 1. One channel, three webhooks.
            hooks = _webhooks(emulator, 3, CHANNEL)
            tag = secrets.token_hex(3)
            tags = {f"c{tag}-{i}" for i in range(args.results)}
            _post_all(relay.url, store.key, [small_result(f"c{tag}-{i}", [{"type": "webhook", "url": hooks[i % 3]}])
                                             for i in range(args.results)])
            times = _times(emulator, tags, timeout=args.results / count_n * per * 3 + 60)
            after_first = count_429(emulator.counters())
            delivered = len(times)
            span = times[-1] - times[0] if delivered > 1 else math.inf
            ceiling = count_n / per
            rate = delivered / (span + per)
            ideal = delivered / (_ideal_last(delivered, 3, count_n, per) + per)
            one = {"results": args.results, "delivered": delivered, "429s": after_first,
                   "first_to_last_s": round(span, 2), "rate_per_s": round(rate, 3),
                   "ceiling_per_s": round(ceiling, 3), "ratio_to_ceiling": round(rate / ceiling, 3),
                   "ideal_rate_per_s": round(ideal, 3), "ratio_to_ideal": round(rate / ideal, 3)}
            print(f"one channel, 3 webhooks: {delivered}/{args.results} delivered, {after_first} 429s "
                  f"(scopes {emulator.counters().get('rate_limited', {})}), first→last {span:.1f} s; "
                  f"{rate:.3f} msg/s = {rate / ceiling:.3f}× the channel's ceiling of {ceiling:.3f} msg/s "
                  f"({rate / ideal:.3f}× an omniscient sender under both limits, {ideal:.3f} msg/s) -> "
                  f"{'MEETS' if delivered == args.results and rate / ceiling >= 0.9 else 'MISSES'} "
                  f"the ≥ 0.9× target", flush=True)

            # 2. A burst into 20 channels, alone and next to a busy channel.
            alone = _burst(emulator, relay.url, store.key, f"a{tag}", timeout=120)
            busy_tags = {f"b{tag}-{i}" for i in range(60)}
            _post_all(relay.url, store.key, [small_result(f"b{tag}-{i}", [{"type": "webhook", "url": hooks[i % 3]}])
                                             for i in range(60)])
            time.sleep(1.0)  # the busy channel's queue is claimed and waiting for its window
            busy = _burst(emulator, relay.url, store.key, f"s{tag}", timeout=120)
            still_queued = 60 - len(_times(emulator, busy_tags, timeout=0))
            two = {"burst_alone_s": round(alone, 2), "burst_next_to_busy_s": round(busy, 2),
                   "ratio": round(busy / alone, 2) if alone else None, "busy_queue_left": still_queued}
            print(f"20-channel burst: {alone:.2f} s alone, {busy:.2f} s while one channel had "
                  f"{still_queued} of 60 results still waiting for its window -> {busy / alone:.2f}× "
                  f"({'not slowed' if busy <= alone * 1.5 + 0.5 else 'SLOWED'})", flush=True)
            return {"channel_limit": args.channel_limit, "one_channel": one, "burst": two}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.channel``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channel-limit", default="30/20", help="COUNT/SECONDS for emulator and relay")
    parser.add_argument("--results", type=int, default=90)
    parser.add_argument("--database-url", help="run the relay on this store instead of a SQLite file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    out = run(args)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
