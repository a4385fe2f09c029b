"""Relay processes for multi-process tests: ``relay serve`` / ``relay worker`` as real subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def relay_env(**settings: object) -> dict[str, str]:
    """The environment of a relay subprocess: this one minus RELAY_*, plus ``settings`` as RELAY_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update({f"RELAY_{k.upper()}": str(v) for k, v in settings.items()})
    return env


class RelayProcess:
    """``relay serve`` (with a port) or ``relay worker`` in a subprocess, output to a log file."""

    def __init__(self, command: str, log_path: Path, **settings: object) -> None:
        self.command = command
        self.port = free_port() if command == "serve" else None
        self.log_path = log_path
        self.env = relay_env(**settings)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of a ``serve`` process."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60) -> RelayProcess:
        """Start and wait until it serves (``serve``) or its worker loop runs (``worker``)."""
        args = [sys.executable, "-m", "app.cli", self.command]
        if self.port is not None:
            args += ["--port", str(self.port), "--no-access-log"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it until it exits
        self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay {self.command} exited early:\n{self.log_path.read_text()[-3000:]}")
            if self._ready():
                return self
            time.sleep(0.1)
        raise TimeoutError(f"relay {self.command} did not start:\n{self.log_path.read_text()[-3000:]}")

    def _ready(self) -> bool:
        if self.port is None:
            return "relay worker" in self.log_path.read_text(errors="replace")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def terminate(self, *, timeout: float = 60) -> tuple[int, float]:
        """SIGTERM; ``(exit status, seconds it took)``."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL: a crash, nothing gets to clean up."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Best-effort stop for teardown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
