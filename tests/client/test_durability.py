"""Crashes on either side: the relay SIGKILLed under load, a producer SIGKILLed mid-flush, two
producers on one spool, and a 200 MiB file streamed with bounded memory. Real processes, slow group.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from relay_client import Backoff, RelayClient, webhook

from tests.client.conftest import LiveRelay, start_relay
from tests.conftest import wait_for
from tests.fakes.discord import DiscordEmulator, Limit, RateLimits
from tests.support.procs import ROOT, free_port, relay_env

pytestmark = pytest.mark.slow

QUICK = Backoff(base=0.05, cap=0.3)


@pytest.fixture
def relay(tmp_path: Path) -> LiveRelay:
    """A relay of this test alone (the tests kill it)."""
    # Discord's per-channel cap (30 posts a minute) scaled to 30 per 6 s on both sides: forty results
    # into one channel stay paced under it without a minute's wait.
    discord = DiscordEmulator(bot_token="bot", rate_limits=RateLimits(webhook_channel=Limit(30, 6.0))).start()
    live = start_relay(tmp_path, discord, channel_limit="30/6")
    yield live  # type: ignore[misc]
    live.proc.stop()
    discord.stop()


def _titles(live: LiveRelay) -> Counter[str]:
    return Counter(m.payload["embeds"][0]["title"] for m in live.discord.messages(live.hook_id))


def _producer(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.client.producer", *args], cwd=ROOT, env=relay_env(),
                            stdout=subprocess.PIPE, text=True)


def test_relay_killed_while_fifty_are_sent_each_delivered_once(relay: LiveRelay, tmp_path: Path) -> None:
    titles = [f"chaos {i}" for i in range(50)]
    with RelayClient(relay.url, relay.key, spool=tmp_path / "spool.db", max_retries=2, backoff=QUICK,
                     timeout=5, flush_interval=0.2) as producer:
        receipts = []
        for i, title in enumerate(titles):
            if i == 20:
                relay.proc.kill()  # mid-stream, with requests possibly in flight
            if i == 35:
                relay.proc.start()  # same port, same store
            receipts.append(producer.send({"title": title, "route": [webhook(relay.hook_url)]}))
        assert any(r.spooled for r in receipts) and any(not r.spooled for r in receipts)
        wait_for(lambda: (s := producer.stats()) is not None and s.pending == 0, timeout=60, message="spool empty")
    wait_for(lambda: len(_titles(relay)) == 50, timeout=90, message="all fifty delivered")
    time.sleep(1.0)  # a duplicate would arrive now, after the last first delivery
    assert _titles(relay) == Counter(titles)


def _fill_spool(spool: Path, live: LiveRelay, count: int) -> list[str]:
    titles = [f"spooled {i}" for i in range(count)]
    with RelayClient(f"http://127.0.0.1:{free_port()}", live.key, spool=spool, max_retries=0) as down:
        for title in titles:
            assert down.send({"title": title, "route": [webhook(live.hook_url)]},
                             files=[("f.txt", title.encode() * 2000, "text/plain")]).spooled
    return titles


def test_producer_killed_mid_flush_loses_nothing_duplicates_nothing(relay: LiveRelay, tmp_path: Path) -> None:
    spool = tmp_path / "spool.db"
    titles = _fill_spool(spool, relay, 40)
    proc = _producer("flush", relay.url, relay.key, str(spool))
    try:
        wait_for(lambda: len(_titles(relay)) >= 5 or proc.poll() is not None, timeout=60, interval=0.01,
                 message="the flush under way")
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with RelayClient(relay.url, relay.key, spool=spool, flush_interval=3600, backoff=QUICK) as again:
        again.flush(120)
        stats = again.stats()
    assert stats is not None and stats.pending == 0 and stats.rejected == 0
    wait_for(lambda: len(_titles(relay)) == 40, timeout=60, message="all forty delivered")
    time.sleep(1.0)
    assert _titles(relay) == Counter(titles)


def test_two_processes_share_one_spool(relay: LiveRelay, tmp_path: Path) -> None:
    spool = tmp_path / "spool.db"
    titles = _fill_spool(spool, relay, 40)
    procs = [_producer("flush", relay.url, relay.key, str(spool)) for _ in range(2)]
    counts = [int((p.communicate(timeout=120)[0] or "0").strip()) for p in procs]
    assert sum(counts) == 40  # each entry handed over by exactly one of them
    wait_for(lambda: len(_titles(relay)) == 40, timeout=60, message="all forty delivered")
    time.sleep(1.0)
    assert _titles(relay) == Counter(titles)


class _Sink(BaseHTTPRequestHandler):
    """Reads a request body in pieces and throws it away, answering like the relay's 202."""

    received = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        left = int(self.headers["Content-Length"])
        while left:
            piece = self.rfile.read(min(left, 1 << 20))
            left -= len(piece)
            type(self).received += len(piece)
        body = b'{"id": "res_sink", "status": "pending", "links": {}}'
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


def _peak_rss_kib(url: str, path: Path) -> int:
    out, _ = _producer("stream", url, str(path)).communicate(timeout=240)
    rid, peak_kib = out.split()
    assert rid == "res_sink"
    return int(peak_kib)


def test_a_200_mib_file_is_streamed_not_read_whole(tmp_path: Path) -> None:
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    for path, size in ((small, 1024 * 1024), (big, 200 * 1024 * 1024)):
        with path.open("wb") as fh:
            fh.truncate(size)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        baseline = _peak_rss_kib(url, small)  # the interpreter, httpx, TLS context: what any send costs
        peak = _peak_rss_kib(url, big)
    finally:
        server.shutdown()
    assert _Sink.received > 201 * 1024 * 1024
    assert peak - baseline < 32 * 1024, f"a 200 MiB upload took {(peak - baseline) // 1024} MiB more than 1 MiB"
