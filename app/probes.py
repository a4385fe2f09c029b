"""The health answers: ``/healthz`` and ``/readyz`` of the API, and of ``relay worker`` on its own port.

Alive unless a supervised loop is stuck inside one step; ready when the store answers, the schema
is current, the loops run and none keeps failing. ``app.api.health`` serves them in the API. A
worker is the process a liveness probe most needs to see (it holds leases and sends messages; a
wedged one would sit on its destinations), so ``relay worker`` serves them too on
``RELAY_WORKER_HEALTH_PORT``, with a minimal asyncio HTTP responder (two GET paths, nothing else)
rather than a web framework in its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from app.runtime import Runtime
from store.errors import StoreUnavailable

log = logging.getLogger("relay.probes")
READ_TIMEOUT_S = 5.0


def liveness(runtime: Runtime) -> tuple[int, dict[str, object]]:
    """``/healthz``: 503 naming the loops that are stuck (or gone)."""
    problems = runtime.loops.problems()
    return (503, {"status": "unhealthy", "loops": problems}) if problems else (200, {"status": "ok"})


async def readiness(runtime: Runtime) -> tuple[int, dict[str, object]]:
    """``/readyz``: store reachable, schema current, workers running, no loop failing in a row."""
    checks: dict[str, str] = {}
    try:
        current, head = await asyncio.to_thread(runtime.db.schema_revisions)
        checks["store"] = "ok"
        checks["migrations"] = "ok" if current == head else f"at {current}, need {head}: run relay migrate"
    except StoreUnavailable as exc:
        checks["store"] = f"unreachable: {exc}"
    except Exception as exc:  # noqa: BLE001 - any failure to ask the store means "not ready", never a 500
        checks["store"] = f"unreachable: {type(exc).__name__}"
    checks["workers"] = "ok" if runtime.workers_running() else "not running"
    for loop, failures in runtime.loops.failing().items():
        checks[f"loop:{loop}"] = f"{failures} failed passes in a row"
    ready = all(v == "ok" for v in checks.values())
    return (200 if ready else 503), {"status": "ready" if ready else "not_ready", "checks": checks}


async def serve_health(runtime: Runtime, host: str, port: int) -> asyncio.Server:
    """Start answering ``GET /healthz`` and ``GET /readyz`` on ``host:port``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
            while (await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)) not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing in them matters here
            body: dict[str, object]
            parts = request_line.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?", 1)[0]) if len(parts) >= 2 else ("", "")
            if method != "GET":
                status, body = 405, {"error": {"code": "method_not_allowed", "message": "only GET"}}
            elif path == "/healthz":
                status, body = liveness(runtime)
            elif path == "/readyz":
                status, body = await readiness(runtime)
            else:
                status, body = 404, {"error": {"code": "not_found", "message": "GET /healthz or /readyz"}}
            data = json.dumps(body).encode()
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass  # a probe that hung up or sent garbage gets nothing
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port)
    log.info("worker health on http://%s:%d/healthz", host, port)
    return server
