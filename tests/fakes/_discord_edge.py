"""The emulator's outermost ASGI layer: what happens before Discord's code runs, and after.

It plays the network and the load balancers in front of Discord: it injects the faults of
:mod:`._discord_faults` (errors, delays, resets, lost responses, 429 storms, Cloudflare bans)
and it is the one place that counts and records every non-2xx answer, so the route handlers
only decide what to answer.

A connection reset has to be a real one (the client sees "server disconnected", not a 500),
and ASGI has no verb for that. uvicorn's per-request ``send`` is a bound method of its
request cycle, which holds the connection's transport; aborting that transport is exactly a
TCP reset. That is an implementation detail of uvicorn, so it fails loudly if it ever moves.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from ._discord_faults import FaultRule
from ._discord_state import RejectedRequest

if TYPE_CHECKING:
    from .discord import DiscordEmulator

__all__ = ["EdgeMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: A dict the edge puts in the scope (shared even if Starlette copies the scope): ``drop``
#: tells the handler to mark its stored message ``response_dropped``; the handler leaves the
#: parsed request ``payload`` there, kept with a rejection.
EDGE_NOTES = "emulator.edge"

_CLOUDFLARE_PAGE = (
    "<!DOCTYPE html>\n<html>\n<head><title>Access denied | discord.com used Cloudflare to restrict access"
    "</title></head>\n<body>\n<h1>Error 1015</h1>\n<h2>You are being rate limited</h2>\n"
    "<p>The owner of this website (discord.com) has banned you temporarily from accessing this website.</p>\n"
    "</body>\n</html>\n"
)

_REASONS = {400: "validation", 401: "auth", 403: "forbidden", 404: "not_found", 413: "too_large"}


def _status_phrase(status: int) -> str:
    if status == 524:
        return "A Timeout Occurred"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _buffered(receive: Receive) -> Receive:
    """Read the whole request body now and hand back a ``receive`` that replays it.

    Needed for ``delay``: the client may give up while we sleep, and the message should still
    be processed (as Discord would), so the body must already be here.
    """
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # the server's own: blocks, or reports the client has gone

    return replay


async def _abort(send: Send) -> None:
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("the emulator cannot reach uvicorn's transport to reset the connection")
    transport.abort()
    # Let uvicorn see connection_lost before we return, or it logs and writes a 500.
    for _ in range(3):
        await asyncio.sleep(0)


class _ResponseTap:
    """Wraps ``send``: notes the status and keeps error bodies; swallows everything if asked."""

    def __init__(self, send: Send, *, swallow: bool, before_end: Callable[[_ResponseTap], None] | None = None) -> None:
        self._send = send
        self._swallow = swallow
        self._before_end = before_end
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.ended = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            if self.status >= 400:
                self.body.extend(message.get("body", b""))
            if not message.get("more_body", False) and self._before_end is not None and not self.ended:
                # Recorded before the client can read the end of the answer: a test that looks at
                # ``rejected`` right after its request returns must find it there.
                self.ended = True
                self._before_end(self)
        if not self._swallow:
            await self._send(message)


class EdgeMiddleware:
    """Faults in, records out; control paths (``/_emulator``) pass straight through."""

    def __init__(self, app: ASGIApp, emulator: DiscordEmulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_emulator"):
            await self.app(scope, receive, send)
            return
        state = self.emulator._state
        with state.lock:
            state.counts["requests"] += 1
        fault = self.emulator.faults.pick(scope["method"], scope["path"])
        if fault is not None and fault.kind == "delay":
            receive = await _buffered(receive)
            await asyncio.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind == "reset":
            await _buffered(receive)
            self._record(scope, 0, {}, b"", reason="reset")
            with state.lock:
                state.counts["resets"] += 1
            await _abort(send)
            return
        if fault is not None and fault.kind in ("http_error", "rate_limit", "cloudflare"):
            await _buffered(receive)
            reason = self._fault_reason(fault)
            tap = _ResponseTap(send, swallow=False, before_end=lambda t: self._record(
                scope, t.status, t.headers, bytes(t.body), reason=reason))
            await self._send_fault(fault, tap)
            if not tap.ended:
                self._record(scope, tap.status, tap.headers, bytes(tap.body), reason=reason)
            return
        drop = fault is not None and fault.kind == "drop_response"
        scope[EDGE_NOTES] = {"drop": drop, "payload": None}
        tap = _ResponseTap(send, swallow=drop, before_end=lambda t: self._record(
            scope, t.status, t.headers, bytes(t.body), reason=None))
        await self.app(scope, receive, tap)
        if not tap.ended:  # the app ended without a final body message
            self._record(scope, tap.status, tap.headers, bytes(tap.body), reason=None)
        if drop:
            with state.lock:
                state.counts["dropped_responses"] += 1
            await _abort(send)

    @staticmethod
    def _fault_reason(fault: FaultRule) -> str:
        return {"rate_limit": "rate_limit", "cloudflare": "cloudflare"}.get(fault.kind, "fault")

    @staticmethod
    async def _send_fault(fault: FaultRule, send: Send) -> None:
        retry_after = round(fault.retry_after, 3)
        headers: list[tuple[bytes, bytes]]
        if fault.kind == "cloudflare":
            # Cloudflare answers before Google's load balancer: no Via, no JSON, no buckets.
            body = _CLOUDFLARE_PAGE.encode()
            status = 429
            headers = [
                (b"content-type", b"text/html; charset=UTF-8"),
                (b"server", b"cloudflare"),
                (b"cf-ray", b"8e1f2c3d4b5a6978-FRA"),
                (b"retry-after", str(max(1, math.ceil(retry_after))).encode()),
            ]
        elif fault.kind == "rate_limit":
            is_global = fault.scope == "global"
            status = 429
            body = json.dumps(
                {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
            ).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"retry-after", str(max(1, math.ceil(retry_after))).encode()),
                (b"x-ratelimit-scope", fault.scope.encode()),
                (b"via", b"1.1 google"),
            ]
            if is_global:
                headers.append((b"x-ratelimit-global", b"true"))
        else:
            status = fault.status
            body = json.dumps({"message": f"{status}: {_status_phrase(status)}", "code": 0}).encode()
            headers = [(b"content-type", b"application/json"), (b"via", b"1.1 google")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _record(self, scope: Scope, status: int, headers: dict[str, str], body: bytes, *, reason: str | None) -> None:
        state = self.emulator._state
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body) if "json" in headers.get("content-type", "") else body.decode()
            except (ValueError, UnicodeDecodeError):
                parsed = body.decode("latin-1")
        with state.lock:
            if status:
                state.by_status[status] += 1
            if status == 429:
                scope_name = "cloudflare" if reason == "cloudflare" else headers.get("x-ratelimit-scope", "user")
                state.rate_limited[scope_name] += 1
            if status >= 400 or status == 0:
                if reason is None:
                    reason = "rate_limit" if status == 429 else _REASONS.get(status, "fault")
                state.rejected.append(
                    RejectedRequest(
                        status=status,
                        code=parsed.get("code") if isinstance(parsed, dict) else None,
                        method=scope["method"],
                        path=scope["path"],
                        body=parsed,
                        reason=reason,
                        at=self.emulator.clock.now(),
                        request=scope.get(EDGE_NOTES, {}).get("payload"),
                    )
                )
