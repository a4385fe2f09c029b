"""A real uvicorn server in a background thread, on a free port of 127.0.0.1."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn


class LiveServer:
    """Serves an ASGI app over real HTTP for the duration of a test."""

    def __init__(self, app: Any, *, timeout_graceful_shutdown: int = 5, **options: Any) -> None:
        """``options`` are more ``uvicorn.Config`` arguments (the relay's proxy options, say)."""
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on",
                                timeout_graceful_shutdown=timeout_graceful_shutdown, access_log=False, **options)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="live-server", daemon=True)
        self.url = ""

    def start(self) -> LiveServer:
        """Start and wait until the socket listens (the lifespan has run)."""
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread died during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the lifespan to finish."""
        self._server.should_exit = True
        self._thread.join(timeout=30)
