"""A Discord emulator: a real HTTP server on 127.0.0.1 that behaves like discord.com/api/v10.

Every test and benchmark of the relay talks to this instead of Discord, pointed at it with
``RELAY_DISCORD_API_BASE=emulator.api_base``. It is a real server (uvicorn in a background
thread), not a mock transport, so the relay's connection handling, timeouts and retries are
exercised for real: resets are TCP resets, slow answers are slow.

    with DiscordEmulator() as discord:
        webhook_id, token, url = discord.add_webhook()
        ...  # run the relay against discord.api_base
        [message] = discord.messages(webhook_id=webhook_id)

Standalone (for a relay in another process, or a bench)::

    python -m tests.fakes.discord --port 8790 --auto-create-webhooks

and drive it through ``/_emulator/...`` (see :mod:`tests.fakes._discord_control`).

Layout: validation rules in :mod:`.discord_validation`, Discord routes in ``_discord_api``,
rate-limit buckets in ``_discord_ratelimit``, faults and recording at the edge in
``_discord_faults``/``_discord_edge``, state and record types in ``_discord_state``.
"""

from __future__ import annotations

import argparse
import copy
import secrets
import socket
import threading
import time
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._discord_api import VIA, api_routes
from ._discord_control import control_routes
from ._discord_edge import EdgeMiddleware
from ._discord_faults import FaultKind, FaultPlan, FaultRule
from ._discord_interactions import APPLICATION_ID, InteractionCall, InteractionSender
from ._discord_ratelimit import Limit, RateLimiter, RateLimits
from ._discord_state import (
    INTERACTION_TTL_S,
    Channel,
    Counters,
    EmulatorClock,
    EmulatorState,
    Interaction,
    MessageEdit,
    RecordedFile,
    RecordedMessage,
    RejectedRequest,
    Thread,
    Webhook,
)
from .discord_validation import DiscordLimits, DiscordValidationError, validate_message

__all__ = [
    "APPLICATION_ID",
    "Counters",
    "InteractionCall",
    "DiscordEmulator",
    "DiscordLimits",
    "DiscordValidationError",
    "EmulatorClock",
    "FaultRule",
    "Limit",
    "MessageEdit",
    "RateLimits",
    "RecordedFile",
    "RecordedMessage",
    "RejectedRequest",
    "Thread",
    "validate_message",
]


def _epoch(value: float | datetime | str | None, clock: EmulatorClock) -> float:
    if value is None:
        return clock.now()
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


class DiscordEmulator:
    """Discord's REST API for webhooks, follow-ups and DMs, with its limits, errors and failures.

    Args:
        host, port: where to listen; port 0 picks a free port (read ``.port`` after ``start``).
        auto_create_webhooks: accept any numeric id / non-empty token pair, registering it on
            first use (benchmarks); a removed webhook still answers 404.
        bot_token: the token ``Authorization: Bot <token>`` must carry (``None``: every bot
            call is 401 until :meth:`set_bot_token`).
        limits: size limits (:class:`DiscordLimits`); ``max_file_bytes`` overrides its
            per-file limit (default 10 MiB, as Discord; the relay's own default is 8 MiB).
        rate_limits: per-route and global limits (:class:`RateLimits`).
        seed: seed of the random generator used by probabilistic faults.
        nonce_window: seconds (emulator clock) a channel-message nonce is remembered.
        interaction_ttl: seconds (emulator clock) an interaction token lives.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        auto_create_webhooks: bool = False,
        bot_token: str | None = None,
        limits: DiscordLimits | None = None,
        max_file_bytes: int | None = None,
        rate_limits: RateLimits | None = None,
        seed: int | None = 0,
        nonce_window: float = 120.0,
        interaction_ttl: float = INTERACTION_TTL_S,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.auto_create_webhooks = auto_create_webhooks
        limits = limits or DiscordLimits()
        if max_file_bytes is not None:
            limits = replace(limits, max_file_bytes=max_file_bytes)
        self._initial = (bot_token, limits, rate_limits or RateLimits())
        self.limits: DiscordLimits = limits
        self.rate_limits: RateLimits = self._initial[2]
        self.nonce_window = nonce_window
        self.interaction_ttl = interaction_ttl
        self.clock = EmulatorClock()
        self.faults = FaultPlan(seed)
        self._limiter = RateLimiter()
        self._state = EmulatorState(clock=self.clock, bot_token=bot_token)
        # Discord's side of HTTP interactions: the application's key pair, signed requests out.
        self.interactions = InteractionSender(self)
        #: The guild every webhook belongs to unless ``add_webhook`` names another.
        self.guild_id = self._state.snowflake()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.app = self._build_app()

    # ------------------------------------------------------------------ lifecycle

    def _build_app(self) -> EdgeMiddleware:
        async def not_found(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, HTTPException) else 500
            phrase = {404: "Not Found", 405: "Method Not Allowed"}.get(status, "Error")
            return JSONResponse({"message": f"{status}: {phrase}", "code": 0}, status_code=status, headers=VIA)

        app = Starlette(
            routes=[*api_routes(self), *control_routes(self)],
            exception_handlers={404: not_found, 405: not_found},
        )
        return EdgeMiddleware(app, self)

    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",  # no websockets import: nothing to warn about under -W error
            proxy_headers=False,
            server_header=False,
            date_header=True,
            timeout_graceful_shutdown=1,
            backlog=4096,
        )

    def start(self) -> DiscordEmulator:
        """Bind, serve in a daemon thread, and return once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._socket = sock
        self._server = uvicorn.Server(self._config())
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="discord-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Discord emulator did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread; safe to call twice."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until SIGINT/SIGTERM (the standalone mode)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._socket = sock
        # Printed after binding so --port 0 still tells the caller where to point the relay.
        print(f"Discord emulator: RELAY_DISCORD_API_BASE={self.api_base}", flush=True)
        uvicorn.Server(self._config()).run(sockets=[sock])

    def __enter__(self) -> DiscordEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port actually bound (after :meth:`start`)."""
        if self._socket is None:
            raise RuntimeError("emulator not started")
        return int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (control endpoints live under ``/_emulator``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """``http://127.0.0.1:PORT/api/v10``: the value for ``RELAY_DISCORD_API_BASE``."""
        return f"{self.base_url}/api/v10"

    # ------------------------------------------------------------------ registration

    def add_webhook(
        self,
        webhook_id: str | int | None = None,
        token: str | None = None,
        channel_id: str | int | None = None,
        *,
        guild_id: str | int | None = None,
        forum: bool = False,
    ) -> tuple[str, str, str]:
        """Register (or re-register, after a removal) a webhook; returns ``(id, token, url)``.

        Webhooks given the same ``channel_id`` share that channel's limit; ``forum`` makes the
        channel a forum (or media) channel, where every post needs ``thread_name`` or ``thread_id``.
        """
        state = self._state
        with state.lock:
            webhook_id = str(webhook_id) if webhook_id is not None else state.snowflake()
            token = token or secrets.token_urlsafe(48)
            channel = str(channel_id) if channel_id is not None else state.snowflake()
            guild = str(guild_id) if guild_id is not None else self.guild_id
            state.webhooks[webhook_id] = Webhook(id=webhook_id, token=token, channel_id=channel, guild_id=guild,
                                                 forum=forum)
            state.removed_webhooks.discard(webhook_id)
        return webhook_id, token, self.webhook_url(webhook_id, token)

    def thread(self, thread_id: str) -> Thread | None:
        """A thread (forum post) a webhook message created, or ``None``."""
        with self._state.lock:
            return self._state.threads.get(str(thread_id))

    def threads(self, channel_id: str | None = None) -> list[Thread]:
        """Every thread created so far (of one parent channel), oldest first."""
        with self._state.lock:
            found = list(self._state.threads.values())
        return [t for t in found if channel_id is None or t.parent_id == str(channel_id)]

    def webhook_url(self, webhook_id: str, token: str) -> str:
        """The execute URL of a webhook on this emulator."""
        return f"{self.api_base}/webhooks/{webhook_id}/{token}"

    def webhook(self, webhook_id: str) -> Webhook | None:
        """The registration of a webhook (a copy), or ``None``."""
        with self._state.lock:
            hook = self._state.webhooks.get(str(webhook_id))
            return replace(hook) if hook else None

    def remove_webhook(self, webhook_id: str | int) -> None:
        """Delete a webhook: from now on it answers ``404 {"code": 10015}`` until re-added."""
        with self._state.lock:
            self._state.webhooks.pop(str(webhook_id), None)
            self._state.removed_webhooks.add(str(webhook_id))

    def refuse_webhook(
        self, webhook_id: str | int, *, status: int = 404, code: int = 10015, message: str = "Unknown Webhook"
    ) -> None:
        """Make a known webhook refuse every call with this error (e.g. 403/50013) until accepted."""
        with self._state.lock:
            hook = self._state.webhooks.get(str(webhook_id))
            if hook is None:
                raise KeyError(f"unknown webhook {webhook_id}")
            hook.refusal = (status, code, message)

    def accept_webhook(self, webhook_id: str | int) -> None:
        """Undo :meth:`refuse_webhook`."""
        with self._state.lock:
            hook = self._state.webhooks.get(str(webhook_id))
            if hook is not None:
                hook.refusal = None

    def add_interaction(
        self, application_id: str | int, token: str, created_at: float | datetime | str | None = None
    ) -> str:
        """Register an interaction token; follow-ups fail with 401/50027 ``interaction_ttl`` seconds
        (emulator clock) after ``created_at`` (epoch, datetime or ISO string; default now).
        Returns the follow-up URL."""
        created = _epoch(created_at, self.clock)
        with self._state.lock:
            key = (str(application_id), token)
            self._state.interactions[key] = Interaction(str(application_id), token, created)
        return self.webhook_url(str(application_id), token)

    def add_channel(self, channel_id: str | int | None = None) -> str:
        """Register a guild text channel a bot may post to; returns its id."""
        with self._state.lock:
            channel = str(channel_id) if channel_id is not None else self._state.snowflake()
            self._state.channels[channel] = Channel(id=channel)
        return channel

    def set_bot_token(self, token: str | None) -> None:
        """The bot token ``Authorization: Bot ...`` must carry (``None`` refuses every bot call)."""
        with self._state.lock:
            self._state.bot_token = token

    def close_dms(self, user_id: str | int) -> None:
        """This user does not accept DMs: channel messages to their DM answer 403/50007."""
        with self._state.lock:
            self._state.closed_dms.add(str(user_id))

    def open_dms(self, user_id: str | int) -> None:
        """Undo :meth:`close_dms`."""
        with self._state.lock:
            self._state.closed_dms.discard(str(user_id))

    def registered_commands(self, guild_id: str | int | None = None) -> list[dict[str, Any]]:
        """The application commands registered globally (or in ``guild_id``), as Discord returns them."""
        key = (self.interactions.application_id, str(guild_id) if guild_id is not None else None)
        with self._state.lock:
            return copy.deepcopy(self._state.commands.get(key, []))

    def dm_channel_id(self, user_id: str | int) -> str | None:
        """The DM channel opened for a user, if the relay opened one."""
        with self._state.lock:
            return self._state.dm_channels.get(str(user_id))

    # ------------------------------------------------------------------ configuration

    def set_limits(self, limits: DiscordLimits) -> None:
        """Change size limits (e.g. a small ``max_file_bytes`` to test file splitting)."""
        self.limits = limits

    def set_rate_limits(self, rate_limits: RateLimits) -> None:
        """Change rate limits; current windows are forgotten."""
        self.rate_limits = rate_limits
        self._limiter.reset()

    def inject(
        self,
        kind: FaultKind,
        *,
        times: int | None = None,
        probability: float | None = None,
        path: str | None = None,
        method: str | None = None,
        status: int = 500,
        seconds: float = 0.0,
        retry_after: float = 1.0,
        scope: str = "user",
    ) -> FaultRule:
        """Add a fault (see :mod:`._discord_faults` for the kinds); once by default."""
        return self.faults.add(
            FaultRule(
                kind=kind,
                times=times,
                probability=probability,
                path=path,
                method=method,
                status=status,
                seconds=seconds,
                retry_after=retry_after,
                scope=scope,
            )
        )

    def clear_faults(self) -> None:
        """Remove every fault rule (and reseed the fault dice)."""
        self.faults.clear()

    # ------------------------------------------------------------------ records

    def messages(
        self,
        webhook_id: str | int | None = None,
        channel_id: str | int | None = None,
        *,
        kind: str | None = None,
        include_deleted: bool = False,
    ) -> list[RecordedMessage]:
        """Accepted messages in the order they were posted, filtered; snapshots, safe to keep."""
        with self._state.lock:
            found = list(self._state.messages.values())
        return [
            m
            for m in found
            if (webhook_id is None or m.webhook_id == str(webhook_id))
            and (channel_id is None or m.channel_id == str(channel_id))
            and (kind is None or m.kind == kind)
            and (include_deleted or not m.deleted)
        ]

    def message(self, message_id: str) -> RecordedMessage | None:
        """One recorded message by id (deleted ones included)."""
        with self._state.lock:
            return self._state.messages.get(str(message_id))

    @property
    def rejected(self) -> list[RejectedRequest]:
        """Every non-2xx answer (and reset) since the last reset, oldest first."""
        with self._state.lock:
            return list(self._state.rejected)

    def counters(self) -> Counters:
        """Totals: requests, accepted, by status, 429s by scope, invalid requests, ..."""
        return self._state.counters()

    def count_429(self, scope: str | None = None) -> int:
        """429 answers so far, of one scope (user, shared, global, cloudflare) or all."""
        rate_limited = self.counters().rate_limited
        return sum(rate_limited.values()) if scope is None else rate_limited.get(scope, 0)

    @property
    def invalid_requests(self) -> int:
        """401 + 403 + 429 answers: what Cloudflare counts toward a ban."""
        return self.counters().invalid_requests

    def clear_records(self) -> None:
        """Forget messages, rejections and counters; keep registrations, faults and buckets."""
        self._state.clear_records()

    def reset(self) -> None:
        """Back to the state right after construction (records, registrations, faults, clock,
        buckets, limits, bot token); the server keeps running on the same port."""
        self._state.clear_records()
        self._state.clear_registrations()
        self.interactions.clear()
        bot_token, limits, rate_limits = self._initial
        self.set_bot_token(bot_token)
        self.limits = limits
        self.rate_limits = rate_limits
        self._limiter.reset()
        self.faults.clear()
        self.clock.set_offset(0)


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.fakes.discord``: serve until interrupted."""
    parser = argparse.ArgumentParser(description="Discord API emulator for result-relay tests and benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--auto-create-webhooks", action="store_true")
    parser.add_argument("--bot-token", default=None)
    parser.add_argument("--max-file-bytes", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channel-limit", default="30/60",
                        help="Discord's hidden per-channel webhook cap as COUNT/SECONDS, or 'off'")
    args = parser.parse_args(argv)
    emulator = DiscordEmulator(
        host=args.host,
        port=args.port,
        auto_create_webhooks=args.auto_create_webhooks,
        bot_token=args.bot_token,
        max_file_bytes=args.max_file_bytes,
        seed=args.seed,
        rate_limits=RateLimits(webhook_channel=parse_limit(args.channel_limit)),
    )
    emulator.serve_forever()


def parse_limit(text: str) -> Limit | None:
    """``"30/60"`` → 30 requests per 60 s; ``"off"`` → ``None``."""
    if text.strip().lower() == "off":
        return None
    count, _, seconds = text.partition("/")
    return Limit(int(count), float(seconds))


if __name__ == "__main__":
    main()
