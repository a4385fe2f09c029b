"""Durable ingest vs. a no-op endpoint: what "202 means committed" costs, as a ratio.

Run it as ``python -m bench.ingest`` (``--help`` for the knobs). It

1. starts a **no-op** FastAPI app under uvicorn in a subprocess (same loop/http settings and worker
   count as ``relay serve``; ``POST /v1/results`` reads the body and answers 202 with a JSON body),
   drives it for ``--warmup`` + ``--duration`` seconds at ``--concurrency`` from a separate
   load-generator process, and stops it;
2. does the same with the real relay (``relay serve`` on a fresh SQLite file in a temp dir, or on
   ``--database-url`` / a throw-away ``--postgres`` database), ``RELAY_RUN_WORKERS=false`` so no
   delivery work competes with ingest, and a producer key from ``relay keys create``;
3. prints accepted requests/s, p50 and p99 for both and the ratios relay/no-op.

Why the pieces look the way they do:

* Both servers and the load generator share the machine's cores, so the load generator is the
  *same* process and code for both runs, and is a minimal keep-alive HTTP/1.1 client on raw asyncio
  (a general client such as httpx costs several times the CPU per request and would steal it from
  the server under test, compressing the ratio toward 1).
* Requests are pre-rendered except for the per-request workflow id / idempotency key, so both servers
  receive byte-identical request shapes.
* Only requests that start after the warm-up and finish before the deadline are counted; nothing
  binds anything but 127.0.0.1; every subprocess is terminated, and the temp dir and PostgreSQL
  database are removed, even on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_URL = "https://discord.com/api/webhooks/1/abc"
TARGET_RATE_RATIO = 0.5
TARGET_P99_RATIO = 3.0

# --- the no-op server ----------------------------------------------------------------------------


def serve_noop(port: int) -> None:
    """The baseline: same framework, server, route shape and response shape as the relay, no store."""
    import uvicorn

    app = FastAPI()
    counter = iter(range(1, 1 << 62))

    @app.post("/v1/results", status_code=202)
    async def create_result(request: Request) -> dict[str, Any]:
        """Read the body (as the relay must) and answer what the relay answers."""
        await request.body()
        result_id = f"res_{next(counter):026d}"
        return {"id": result_id, "status": "pending", "links": {"self": f"/v1/results/{result_id}"}}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Readiness probe for the harness."""
        return {"status": "ok"}

    # Same settings as ``relay serve`` (app/cli.py): loop/http "auto", one worker, no log config.
    config = uvicorn.Config(app, host=HOST, port=port, log_config=None, access_log=False,
                            timeout_graceful_shutdown=5)
    uvicorn.Server(config).run()


# --- the load generator --------------------------------------------------------------------------


def make_payload(n: int) -> dict[str, Any]:
    """A realistic small result: title, summary, ~2 KB markdown body, fields, one webhook."""
    paragraph = ("The speaker argues that the migration was worth it: latency fell, the on-call load "
                 "dropped and the team shipped twice as often. Objections are noted below. ")
    body = "\n\n".join(f"## Part {i + 1}\n\n{paragraph * 2}" for i in range(6))[:2048]
    return {
        "workflow_id": f"wf_bench_{n}",
        "title": "Analysis: https://youtube.com/watch?v=dQw4w9WgXcQ",
        "summary": "Mostly positive; two objections about cost. **Confidence: high.**",
        "body": body,
        "fields": [
            {"name": "Sentiment", "value": "mixed", "inline": True},
            {"name": "Duration", "value": "21:04", "inline": True},
            {"name": "Model", "value": "large-v3", "inline": False},
        ],
        "url": "https://youtube.com/watch?v=dQw4w9WgXcQ",
        "level": "success",
        "route": [{"type": "webhook", "url": WEBHOOK_URL}],
        "metadata": {"depth": "standard"},
    }


class _Requests:
    """Pre-rendered request bytes; only the sequence number changes between requests."""

    def __init__(self, port: int, key: str, idempotency: bool) -> None:
        template = json.dumps(make_payload(0), separators=(",", ":"))
        self._head, self._tail = template.split("wf_bench_0", 1)
        self._prefix = (f"POST /v1/results HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                        "Accept: application/json\r\n")
        self._idempotency = idempotency
        self._run = secrets.token_hex(4)
        self._n = 0

    def next(self) -> bytes:
        self._n += 1
        body = f"{self._head}wf_bench_{self._run}_{self._n}{self._tail}".encode()
        extra = f"Idempotency-Key: bench-{self._run}-{self._n}\r\n" if self._idempotency else ""
        return f"{self._prefix}{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """``(status, keep_alive)`` of one HTTP/1.1 response with a Content-Length (uvicorn always sends one)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, keep_alive = None, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            keep_alive = False
    if length is None:
        raise RuntimeError(f"response without Content-Length: {lines[0]}")
    await reader.readexactly(length)
    return status, keep_alive


@dataclass
class LoadResult:
    """What one load run measured (only requests inside the measuring window count)."""

    concurrency: int
    duration_s: float
    accepted: int
    other_status: dict[str, int]
    errors: int
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    completed_total: int = 0  # every 202 of the run, warm-up included (for CPU per request)
    server_cpu_ms_per_req: float = float("nan")  # server process CPU (all threads) / completed_total


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, int(round(q * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


async def generate_load(port: int, key: str, *, concurrency: int, warmup: float, duration: float,
                        idempotency: bool) -> LoadResult:
    """``concurrency`` closed-loop keep-alive connections, each sending one request after another."""
    requests = _Requests(port, key, idempotency)
    start = time.perf_counter()
    window_start, window_end = start + warmup, start + warmup + duration
    latencies: list[float] = []
    other: dict[str, int] = {}
    errors = 0
    completed = 0

    async def connection() -> None:
        nonlocal errors, completed
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            while time.perf_counter() < window_end:
                data = requests.next()
                t0 = time.perf_counter()
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(HOST, port)
                    assert reader is not None
                    writer.write(data)
                    status, keep_alive = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, RuntimeError):
                    errors += 1
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    await asyncio.sleep(0.05)  # a refused connection must not become a busy loop
                    continue
                t1 = time.perf_counter()
                completed += status == 202
                if t0 >= window_start and t1 <= window_end:
                    if status == 202:
                        latencies.append(t1 - t0)
                    else:
                        other[str(status)] = other.get(str(status), 0) + 1
                if not keep_alive:
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    # A request in flight at the deadline may take a while; the whole run is still bounded.
    await asyncio.wait_for(asyncio.gather(*(connection() for _ in range(concurrency))),
                           timeout=warmup + duration + 30)
    latencies.sort()
    return LoadResult(
        concurrency=concurrency, duration_s=duration, accepted=len(latencies), other_status=other,
        errors=errors, rate=len(latencies) / duration, p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000, max_ms=(latencies[-1] * 1000) if latencies else float("nan"),
        completed_total=completed,
    )


# --- orchestration -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def _relay_cmd() -> list[str]:
    # The console script next to this interpreter (the venv's), else the module.
    script = Path(sys.executable).with_name("relay")
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


@contextlib.contextmanager
def _server(cmd: list[str], env: dict[str, str], cwd: Path, port: int, log: Path) -> Iterator[int]:
    """Start a server subprocess, wait for ``/healthz``, and always stop it (SIGTERM, then SIGKILL)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{cmd} did not answer /healthz within 60 s")
            time.sleep(0.1)
        yield proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _run_load(port: int, key: str, args: argparse.Namespace, cwd: Path, server_pid: int) -> LoadResult:
    """The load generator in its own process, so it never shares an interpreter (GIL) with a server."""
    cmd = [sys.executable, "-m", "bench.ingest", "_load", "--port", str(port), "--key", key,
           "--concurrency", str(args.concurrency), "--warmup", str(args.warmup), "--duration", str(args.duration)]
    if not args.idempotency:
        cmd.append("--no-idempotency")
    cpu_before = _cpu_seconds(server_pid)
    done = subprocess.run(cmd, env=_child_env({}), cwd=cwd, capture_output=True, text=True,
                          timeout=args.warmup + args.duration + 60, check=False)
    cpu_used = _cpu_seconds(server_pid) - cpu_before
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result = LoadResult(**json.loads(done.stdout.strip().splitlines()[-1]))
    # CPU per request is the number background load on a shared machine disturbs least.
    if result.completed_total:
        result.server_cpu_ms_per_req = cpu_used * 1000 / result.completed_total
    return result


def bench_noop(args: argparse.Namespace, work: Path) -> LoadResult:
    """Start the no-op server, load it, stop it."""
    port = _free_port()
    cmd = [sys.executable, "-m", "bench.ingest", "_noop", "--port", str(port)]
    with _server(cmd, _child_env({}), work, port, work / "noop.log") as pid:
        return _run_load(port, "noop", args, work, pid)


def bench_relay(args: argparse.Namespace, work: Path, database_url: str) -> LoadResult:
    """Migrate the store, create a producer key, start ``relay serve``, load it, stop it."""
    env = _child_env({"RELAY_DATABASE_URL": database_url, "RELAY_RUN_WORKERS": "false",
                      "RELAY_LOG_LEVEL": "WARNING", "RELAY_PURGE_INTERVAL": "86400"})
    relay = _relay_cmd()
    subprocess.run([*relay, "migrate"], env=env, cwd=work, check=True, capture_output=True, timeout=120)
    created = subprocess.run([*relay, "keys", "create", "--name", "bench"], env=env, cwd=work, check=True,
                             capture_output=True, text=True, timeout=120)
    key = created.stdout.strip().splitlines()[-1]  # `relay keys create | tail -1`
    port = _free_port()
    with _server([*relay, "serve", "--host", HOST, "--port", str(port), "--no-access-log"], env, work, port,
                 work / "relay.log") as pid:
        return _run_load(port, key, args, work, pid)


@contextlib.contextmanager
def _postgres_database(server_url: str) -> Iterator[str]:
    """A throw-away database on ``server_url``'s server: created here, dropped (forced) after."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    name = f"relay_bench_{secrets.token_hex(4)}"
    conninfo = {"host": url.host or HOST, "port": url.port or 5432, "user": url.username or "postgres",
                "password": url.password, "dbname": "postgres", "autocommit": True}
    with psycopg.connect(**conninfo) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**conninfo) as conn:  # type: ignore[arg-type]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _line(name: str, r: LoadResult) -> str:
    extra = ""
    if r.other_status or r.errors:
        extra = f"  (other statuses {r.other_status}, transport errors {r.errors})"
    return (f"{name:<22} {r.rate:9.1f} req/s   p50 {r.p50_ms:7.2f} ms   p99 {r.p99_ms:7.2f} ms   "
            f"max {r.max_ms:7.2f} ms   n={r.accepted}   server CPU {r.server_cpu_ms_per_req:.3f} ms/req{extra}")


def _ratios(noop: LoadResult, relay: LoadResult) -> tuple[float, float]:
    rate_ratio = relay.rate / noop.rate if noop.rate else float("nan")
    p99_ratio = relay.p99_ms / noop.p99_ms if noop.p99_ms else float("nan")
    return rate_ratio, p99_ratio


def report(label: str, pairs: list[tuple[LoadResult, LoadResult]]) -> dict[str, Any]:
    """Print every round and the median ratios (the verdict), and return them as data (for ``--json``).

    Rounds alternate no-op and relay, so background load on a shared machine hits both alike, and
    the median of the per-round ratios discounts a round that was disturbed.
    """
    noop0 = pairs[0][0]
    print(f"\n== {label}: concurrency {noop0.concurrency}, {noop0.duration_s:g} s measured per run, "
          f"{len(pairs)} round(s) ==")
    rounds = []
    for i, (noop, relay) in enumerate(pairs, 1):
        rate_ratio, p99_ratio = _ratios(noop, relay)
        print(_line(f"[{i}] no-op endpoint", noop))
        print(_line(f"[{i}] relay (durable)", relay))
        print(f"    round {i} ratio relay/no-op: rate {rate_ratio:.2f}x, p99 {p99_ratio:.2f}x, server CPU per "
              f"request {relay.server_cpu_ms_per_req / noop.server_cpu_ms_per_req:.1f}x")
        rounds.append({"noop": asdict(noop), "relay": asdict(relay), "rate_ratio": rate_ratio,
                       "p99_ratio": p99_ratio})
    rate_ratio = statistics.median(r["rate_ratio"] for r in rounds)
    p99_ratio = statistics.median(r["p99_ratio"] for r in rounds)
    ok = rate_ratio >= TARGET_RATE_RATIO and p99_ratio <= TARGET_P99_RATIO
    med = {k: statistics.median(getattr(p[j], k) for p in pairs) for j, k in ((0, "rate"), (0, "p50_ms"),
                                                                                  (0, "p99_ms"))}
    rel = {k: statistics.median(getattr(p[1], k) for p in pairs) for k in ("rate", "p50_ms", "p99_ms")}
    print(f"median no-op: {med['rate']:.1f} req/s, p50 {med['p50_ms']:.2f} ms, p99 {med['p99_ms']:.2f} ms; "
          f"relay: {rel['rate']:.1f} req/s, p50 {rel['p50_ms']:.2f} ms, p99 {rel['p99_ms']:.2f} ms")
    print(f"RATIO relay/no-op ({label}): rate {rate_ratio:.2f}x (target >= {TARGET_RATE_RATIO}), "
          f"p99 {p99_ratio:.2f}x (target <= {TARGET_P99_RATIO})  -> {'MEETS' if ok else 'MISSES'} target",
          flush=True)
    return {"label": label, "rounds": rounds, "rate_ratio": rate_ratio, "p99_ratio": p99_ratio,
            "meets_target": ok}


def build_parser() -> argparse.ArgumentParser:
    """CLI of the benchmark (the ``_noop``/``_load`` sub-commands are its own child processes)."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before that")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate no-op and relay this many times; the verdict uses median ratios")
    parser.add_argument("--no-idempotency", dest="idempotency", action="store_false",
                        help="send no Idempotency-Key (default: a unique key per request, as producers should)")
    parser.add_argument("--database-url", help="run the relay on this store instead of a temp SQLite file")
    parser.add_argument("--postgres", nargs="?", const="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        metavar="SERVER_URL",
                        help="also measure on PostgreSQL, in a database created and dropped on this server")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    sub = parser.add_subparsers(dest="child")
    noop = sub.add_parser("_noop", help=argparse.SUPPRESS)
    noop.add_argument("--port", type=int, required=True)
    load = sub.add_parser("_load", help=argparse.SUPPRESS)
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--key", required=True)
    load.add_argument("--concurrency", type=int, required=True)
    load.add_argument("--warmup", type=float, required=True)
    load.add_argument("--duration", type=float, required=True)
    load.add_argument("--no-idempotency", dest="idempotency", action="store_false")
    return parser


def _loop_policy() -> None:
    # The load generator uses uvloop when present: less CPU per request, more left for the server.
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list[str] | None = None) -> int:
    """Run the comparison (or one of the child roles)."""
    args = build_parser().parse_args(argv)
    if args.child == "_noop":
        serve_noop(args.port)
        return 0
    if args.child == "_load":
        _loop_policy()
        result = asyncio.run(generate_load(args.port, args.key, concurrency=args.concurrency, warmup=args.warmup,
                                           duration=args.duration, idempotency=args.idempotency))
        print(json.dumps(asdict(result)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    reports = []
    try:
        print(f"cores: {os.cpu_count()} (servers and load generator share them); "
              f"concurrency {args.concurrency}, warm-up {args.warmup:g} s, measured {args.duration:g} s, "
              f"idempotency keys {'on' if args.idempotency else 'off'}", flush=True)
        url = args.database_url or ""
        label = "SQLite (WAL)" if not url or url.startswith("sqlite") else "store " + url.split("://", 1)[0]
        pairs = []
        for i in range(args.rounds):
            # A fresh SQLite file per round, so every round starts from the same (empty) store.
            relay_url = url or f"sqlite:///{work}/relay-{i}.db"
            pairs.append((bench_noop(args, work), bench_relay(args, work, relay_url)))
        reports.append(report(label, pairs))
        if args.postgres:
            with _postgres_database(args.postgres) as pg_url:
                pairs = [(bench_noop(args, work), bench_relay(args, work, pg_url)) for _ in range(args.rounds)]
                reports.append(report("PostgreSQL", pairs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0 if all(r["meets_target"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
