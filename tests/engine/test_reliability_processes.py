"""Reliability with real processes: the database restarted, SIGKILL and takeover, SIGTERM against a slow Discord.

Slow group. PostgreSQL is the real server on 127.0.0.1:5432: one test stops and starts it (and
always starts it again); results flow through ``relay serve`` subprocesses to the emulator.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import result_payload, wait_for
from tests.engine.helpers import titles
from tests.engine.test_processes import FAST, _key, _post, _statuses, emulator, procs, store_url  # noqa: F401
from tests.fakes.discord import DiscordEmulator, Limit, RateLimits
from tests.support.procs import ROOT, RelayProcess, free_port, relay_env

pytestmark = pytest.mark.slow


def _cluster() -> str:
    return sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]


def _pg(action: str) -> None:
    extra = ["-m", "fast"] if action == "stop" else []
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", _cluster(), "main", action, *extra],
                   check=True, capture_output=True, timeout=60)


def _pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], timeout=10).returncode == 0


def _code(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return None


def _seen(discord: DiscordEmulator, hooks: list) -> Counter[str]:
    return Counter(t for wid, _, _ in hooks for t in titles(discord.messages(webhook_id=wid)))


@pytest.fixture
def pg_restart() -> Iterator[None]:
    """Whatever the test does to the server, it is running again afterwards."""
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        pytest.skip("needs the local PostgreSQL cluster (pg_ctlcluster)")
    try:
        yield
    finally:
        if not _pg_ready():
            _pg("start")
        wait_for(_pg_ready, timeout=60, interval=0.5, message="PostgreSQL back")


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_postgres_stopped_and_started_while_results_flow(store_url, emulator, procs, tmp_path,  # noqa: F811
                                                         pg_restart) -> None:  # type: ignore[no-untyped-def]
    emulator.set_rate_limits(RateLimits(webhook=Limit(1, 1.0), webhook_message=Limit(1, 1.0)))
    hooks = [emulator.add_webhook() for _ in range(4)]
    relay = RelayProcess("serve", tmp_path / "relay.log", **FAST, database_url=store_url,
                         discord_api_base=emulator.api_base).start()
    procs.append(relay)
    key = _key(store_url)
    tag = secrets.token_hex(3)
    ids = [_post(relay.url, key, result_payload(title=f"{tag}-{i}", body=None,
                                                route=[{"type": "webhook", "url": hooks[i % 4][2]}]))
           for i in range(40)]
    wait_for(lambda: sum(_seen(emulator, hooks).values()) >= 4, timeout=60, message="delivery under way")
    _pg("stop")
    try:
        wait_for(lambda: _code(f"{relay.url}/readyz") == 503, timeout=30, message="not ready while the store is down")
        assert _code(f"{relay.url}/healthz") == 200  # alive: no liveness restart for an outage
        down = httpx.post(f"{relay.url}/v1/results", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                          json=result_payload(route=[{"type": "webhook", "url": hooks[0][2]}]))
        assert down.status_code == 503, down.text
        time.sleep(8)
    finally:
        _pg("start")
    wait_for(_pg_ready, timeout=60, interval=0.5, message="PostgreSQL back")
    wait_for(lambda: _statuses(relay.url, key, ids)["delivered"] == 40, timeout=180, interval=1,
             message="every accepted result delivered by the same process")
    assert relay.proc is not None and relay.proc.poll() is None  # no restart was needed
    wait_for(lambda: _code(f"{relay.url}/readyz") == 200, timeout=30, message="ready again")
    seen = _seen(emulator, hooks)
    assert set(seen) == {f"{tag}-{i}" for i in range(40)} and max(seen.values()) == 1
    for n, (wid, _, _) in enumerate(hooks):  # order per destination held across the outage
        assert titles(emulator.messages(webhook_id=wid)) == [f"{tag}-{i}" for i in range(n, 40, 4)]
    metrics = httpx.get(f"{relay.url}/metrics", timeout=10).text
    assert any(line.startswith("relay_loop_errors_total{") and not line.endswith(" 0.0")
               for line in metrics.splitlines())


def test_sigkill_and_immediate_restart_takes_the_dead_relays_destinations_over(
        store_url, emulator, procs, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Leases of 300 s: the restarted relay can only finish in time by seeing its predecessor is gone."""
    emulator.set_rate_limits(RateLimits(webhook=Limit(1, 3.0), webhook_message=Limit(1, 3.0)))
    hooks = [emulator.add_webhook() for _ in range(10)]
    settings = dict(FAST, database_url=store_url, discord_api_base=emulator.api_base, lease_seconds=300,
                    worker_concurrency=16)
    first = RelayProcess("serve", tmp_path / "a.log", **settings).start()
    procs.append(first)
    key = _key(store_url)
    tag = secrets.token_hex(3)
    with ThreadPoolExecutor(16) as pool:  # at once: most are still queued behind the rate limits at the kill
        ids = list(pool.map(lambda i: _post(first.url, key, result_payload(
            title=f"{tag}-{i}", body=None, route=[{"type": "webhook", "url": hooks[i % 10][2]}])), range(100)))
    assert _statuses(first.url, key, ids)["delivered"] < 70
    first.kill()
    killed_at = time.monotonic()
    second = RelayProcess("serve", tmp_path / "b.log", **settings).start()
    procs.append(second)
    wait_for(lambda: _statuses(second.url, key, ids)["delivered"] == 100, timeout=120, interval=0.5,
             message="all 100 delivered long before the dead relay's 300 s leases expire")
    took = time.monotonic() - killed_at
    seen = _seen(emulator, hooks)
    assert set(seen) == {f"{tag}-{i}" for i in range(100)}
    assert sum(seen.values()) - 100 <= 10  # at most the message each destination had on the wire at the kill
    assert "took over" in (tmp_path / "b.log").read_text()
    print(f"takeover: 100 results to 10 webhooks finished {took:.1f} s after the SIGKILL")  # noqa: T201


def test_sigterm_with_a_short_grace_against_a_slow_discord_sends_nothing_twice(
        store_url, emulator, procs, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Every send is on the wire for 2 s and the grace is 0.5 s: in-flight sends are awaited, not cut."""
    hooks = [emulator.add_webhook() for _ in range(4)]
    emulator.inject("delay", probability=1.0, seconds=2.0, path="/webhooks/", method="POST")
    settings = dict(FAST, database_url=store_url, discord_api_base=emulator.api_base, shutdown_grace=0.5,
                    discord_timeout=10, lease_seconds=5)
    relay = RelayProcess("serve", tmp_path / "a.log", **settings).start()
    procs.append(relay)
    key = _key(store_url)
    tag = secrets.token_hex(3)
    ids = [_post(relay.url, key, result_payload(title=f"{tag}-{i}", body=None,
                                                route=[{"type": "webhook", "url": hooks[i % 4][2]}]))
           for i in range(16)]
    wait_for(lambda: sum(_seen(emulator, hooks).values()) >= 4, timeout=60, message="first messages out")
    time.sleep(0.5)  # the next sends are on the wire now
    code, _ = relay.terminate(timeout=60)
    assert code == 0
    assert "cancelled mid-send" not in (tmp_path / "a.log").read_text()
    again = RelayProcess("serve", tmp_path / "b.log", **settings).start()
    procs.append(again)
    wait_for(lambda: _statuses(again.url, key, ids)["delivered"] == 16, timeout=120, interval=0.5,
             message="all delivered after the restart")
    seen = _seen(emulator, hooks)
    assert set(seen) == {f"{tag}-{i}" for i in range(16)}
    assert max(seen.values()) == 1, [t for t, n in seen.items() if n > 1]


def test_relay_worker_waits_for_an_unreachable_store_and_stops_cleanly(tmp_path: Path) -> None:
    env = relay_env(database_url="postgresql+psycopg://postgres@127.0.0.1:9/nowhere", log_format="console")
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: log_path.read_text().count("store unreachable at start") >= 2, timeout=60,
                 message="retrying, not exiting")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_relay_worker_answers_its_probes(store_url, emulator, procs, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    port = free_port()
    worker = RelayProcess("worker", tmp_path / "w.log", **FAST, database_url=store_url,
                          discord_api_base=emulator.api_base, worker_health_port=port,
                          worker_health_host="127.0.0.1").start()
    procs.append(worker)
    wait_for(lambda: _code(f"http://127.0.0.1:{port}/readyz") == 200, timeout=30, message="worker ready")
    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
    assert ready["checks"] == {"store": "ok", "migrations": "ok", "workers": "ok"}
    assert _code(f"http://127.0.0.1:{port}/elsewhere") == 404
    code, _ = worker.terminate()
    assert code == 0
