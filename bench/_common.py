"""Shared plumbing of the delivery and chaos benchmarks: subprocesses, the emulator, the store.

Everything binds 127.0.0.1 only. Every process started here is started in its own session and
stopped by its own pid (SIGTERM, then SIGKILL) when the benchmark ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_SENTINEL = "<throw-away postgres database>"  # run() creates one on --postgres's server


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment minus ``RELAY_*``, with the repository importable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def relay_cmd() -> list[str]:
    """The ``relay`` console script next to this interpreter (the venv's), else the module."""
    script = Path(sys.executable).with_name("relay")
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (``nan`` when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (its threads included) has used so far (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Proc:
    """A server subprocess on a fixed port, output appended to a log file."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path, port: int, log: Path,
                 ready_path: str = "/healthz") -> None:
        self.cmd, self.env, self.cwd, self.port, self.log = cmd, env, cwd, port, log
        self.ready_path = ready_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        """The child's pid."""
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> Proc:
        """Start and wait until ``ready_path`` answers 200."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd} exited with {self.proc.returncode}:\n"
                                   f"{self.log.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.ready_path, timeout=1).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.cmd} not ready within {timeout:.0f} s")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL (a crash: nothing gets to clean up) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait (SIGKILL after ``timeout``); the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def stop(self) -> None:
        """Best effort, for teardown."""
        with contextlib.suppress(Exception):
            self.terminate(timeout=10)


@contextlib.contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    """Start ``proc`` and always stop it."""
    try:
        yield proc.start()
    finally:
        proc.stop()


# --- the emulator --------------------------------------------------------------------------------


class Emulator:
    """``python -m tests.fakes.discord`` in a subprocess, driven through ``/_emulator``."""

    def __init__(self, work: Path, *, bot_token: str = "bench-bot") -> None:
        self.port = free_port()
        self.bot_token = bot_token
        cmd = [sys.executable, "-m", "tests.fakes.discord", "--host", HOST, "--port", str(self.port),
               "--auto-create-webhooks", "--bot-token", bot_token]
        self.proc = Proc(cmd, child_env({}), REPO_ROOT, self.port, work / "emulator.log",
                         ready_path="/_emulator/counters")
        self.client = httpx.Client(base_url=f"http://{HOST}:{self.port}", timeout=60)

    @property
    def api_base(self) -> str:
        """The value for ``RELAY_DISCORD_API_BASE``."""
        return f"http://{HOST}:{self.port}/api/v10"

    def webhook_url(self, webhook_id: int, token: str) -> str:
        """An auto-created webhook's execute URL."""
        return f"{self.api_base}/webhooks/{webhook_id}/{token}"

    def rate_limits(self) -> dict[str, Any]:
        """The configured limits (``{"webhook": {"requests": 5, "per": 2.0}, ...}``)."""
        return dict(self.client.get("/_emulator/rate_limits").json())

    def counters(self) -> dict[str, Any]:
        """Requests, accepted, by status, 429s by scope, nonce replays, ..."""
        return dict(self.client.get("/_emulator/counters").json())

    def messages(self, **query: str) -> list[dict[str, Any]]:
        """Recorded messages (payloads, ``created_at`` epoch seconds), filtered by ``query``."""
        return list(self.client.get("/_emulator/messages", params=query).json()["messages"])

    def clear_records(self) -> None:
        """Forget messages and counters (registrations and buckets stay)."""
        self.client.post("/_emulator/clear_records").raise_for_status()

    def __enter__(self) -> Emulator:
        self.proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.proc.stop()


def count_429(counters: dict[str, Any]) -> int:
    """All 429 answers in a counters snapshot."""
    return int(sum(counters.get("rate_limited", {}).values()))


# --- the store -----------------------------------------------------------------------------------


@dataclass
class Store:
    """A migrated relay store and a producer key for it."""

    url: str
    key: str


def prepare_store(url: str, work: Path) -> Store:
    """``relay migrate`` and ``relay keys create`` on ``url``."""
    env = child_env({"RELAY_DATABASE_URL": url})
    subprocess.run([*relay_cmd(), "migrate"], env=env, cwd=work, check=True, capture_output=True, timeout=120)
    created = subprocess.run([*relay_cmd(), "keys", "create", "--name", "bench"], env=env, cwd=work, check=True,
                             capture_output=True, text=True, timeout=120)
    return Store(url=url, key=created.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A throw-away database on ``server_url``'s server: created here, dropped (forced) after."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    name = f"relay_bench_{secrets.token_hex(4)}"
    conninfo: dict[str, Any] = {"host": url.host or HOST, "port": url.port or 5432,
                                "user": url.username or "postgres", "password": url.password,
                                "dbname": "postgres", "autocommit": True}
    with psycopg.connect(**conninfo) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**conninfo) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def open_store(database_url: str | None, work: Path, stack: contextlib.ExitStack, pg_server: str | None) -> Store:
    """The store a benchmark run uses, migrated and with a key: a SQLite file in ``work`` (``None``),
    a throw-away PostgreSQL database on ``pg_server`` (``PG_SENTINEL``, dropped when ``stack``
    closes), or the given URL."""
    if database_url is None:
        database_url = f"sqlite:///{work}/relay.db"
    elif database_url == PG_SENTINEL:
        assert pg_server is not None
        database_url = stack.enter_context(postgres_database(pg_server))
    return prepare_store(database_url, work)


def relay_proc(store: Store, emulator: Emulator, work: Path, log_name: str, *, port: int | None = None,
               **settings: object) -> Proc:
    """``relay serve`` on ``store`` pointed at ``emulator`` (settings become ``RELAY_*``)."""
    port = port or free_port()
    env = child_env({"RELAY_DATABASE_URL": store.url, "RELAY_DISCORD_API_BASE": emulator.api_base,
                     "RELAY_DISCORD_BOT_TOKEN": emulator.bot_token, "RELAY_LOG_LEVEL": "WARNING",
                     "RELAY_PURGE_INTERVAL": "86400"})
    env.update({f"RELAY_{k.upper()}": str(v) for k, v in settings.items()})
    cmd = [*relay_cmd(), "serve", "--host", HOST, "--port", str(port), "--no-access-log"]
    return Proc(cmd, env, work, port, work / log_name, ready_path="/readyz")


def small_result(title: str, route: list[dict[str, Any]], summary: str = "Bench result.") -> dict[str, Any]:
    """A one-message result: title, summary, two fields, no body."""
    return {"workflow_id": title, "title": title, "summary": summary, "level": "success",
            "fields": [{"name": "Run", "value": title, "inline": True}, {"name": "Kind", "value": "bench"}],
            "route": route}


def message_tag(message: dict[str, Any]) -> str | None:
    """The tag (the result's title) a recorded message carries: the last word of its first embed's
    title (the relay prefixes the level's icon), ``None`` for a message without one."""
    embeds = (message.get("original_payload") or {}).get("embeds") or []
    title = embeds[0].get("title") if embeds else None
    return str(title).split()[-1] if title else None
