"""Operator alerts: what went wrong, told to the operators' Discord channel, at most once a window.

    a result becomes undelivered ─┐                     (same transaction as the change itself,
    a destination is disabled ────┼─► alert_events row   so no alert is lost with a crash)
    a Cloudflare ban starts/ends ─┘         │
                                            ▼
    AlertLoop (supervised) ── the window's turn? (compare-and-set in the store: one digest per
                              window across every replica) ── one digest message ──► RELAY_ALERT_WEBHOOK

Coalesced: at most one message per window (default 60 s). A digest groups what happened under
one header per kind, destination and reason ("12 results undelivered to webhook 1234: Unknown
Webhook (Discord 10015)") and names every result with a link to its admin page; what does not fit
one message waits for the next digest. An alert that cannot be delivered is logged and counted
(``relay_alerts_failed_total``), never alerted about, and never touches a delivery: the loop has
its own route key, and a permanent refusal (the alert webhook deleted) drops those events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from delivery import metrics
from delivery.errors import ChannelBusy, CloudflareBanned, DeliveryError, Permanent, Transient
from delivery.ports import AlertStore
from delivery.transport import DiscordTransport
from schemas.clock import utcnow
from schemas.work import PendingAlert

log = logging.getLogger("relay.alerts")

DESCRIPTION_LIMIT = 4000  # of Discord's 4096 per embed description, with room for the "more" line
LINE_LIMIT = 600
ALERT_COLOR = 0xED4245


def digest(events: Sequence[PendingAlert], *, admin_url: str | None) -> tuple[dict[str, Any], list[int]]:
    """One Discord message for as many events as fit; returns it and the ids it carries.

    Pure. Groups keep the order of their first event; every event is one line under its group's
    header, a result's line linking to its admin page.
    """
    groups: dict[str, list[PendingAlert]] = {}
    for event in events:
        groups.setdefault(event.group_key, []).append(event)
    lines: list[str] = []
    carried: list[int] = []
    size = 0
    for header, members in groups.items():
        room = DESCRIPTION_LIMIT - size - len(header) - 40  # the header line with its count
        taken: list[str] = []
        for event in members:
            line = _line(event, admin_url)
            if len(line) + 1 > room:
                break
            taken.append(line)
            carried.append(event.id)
            room -= len(line) + 1
        if not taken:
            break
        kind = members[0].kind
        head = f"**{len(taken)} {_noun(kind, len(taken))} {header}**" if kind == "undelivered" else f"**{header}**"
        lines += [head, *taken]
        size += len(head) + 1 + sum(len(t) + 1 for t in taken)
        if len(taken) < len(members):
            break
    carried.sort()
    left = len(events) - len(carried)
    if left:
        lines.append(f"… and {left} more in the next digest")
    title = f"result-relay: {len(carried)} alert{'s' if len(carried) != 1 else ''}"
    payload = {"embeds": [{"title": title, "description": "\n".join(lines), "color": ALERT_COLOR}],
               "allowed_mentions": {"parse": []}}
    return payload, carried


def _noun(kind: str, count: int) -> str:
    return ("result" if count == 1 else "results") if kind == "undelivered" else ""


def _line(event: PendingAlert, admin_url: str | None) -> str:
    """One event's line (bounded, so any one event always fits an empty digest)."""
    text = event.text if len(event.text) <= LINE_LIMIT else event.text[:LINE_LIMIT - 1] + "…"
    if event.kind == "undelivered" and admin_url is not None:
        result_id = event.text.split("`")[1] if event.text.count("`") >= 2 else ""
        if result_id:
            return f"• {text} · [admin]({admin_url.rstrip('/')}/admin/results/{result_id})"
    return f"• {text}"


class AlertLoop:
    """The supervised loop that turns alert events into at most one digest message per window."""

    def __init__(self, store: AlertStore, transport: DiscordTransport, *, webhook_id: str, token: Callable[[], str],
                 window_s: float = 60.0, admin_url: str | None = None, interval_s: float = 1.0) -> None:
        self._store, self._transport = store, transport
        self._webhook_id, self._token = webhook_id, token
        self._window, self._admin_url, self._interval = window_s, admin_url, interval_s
        self._banned = False

    async def step(self) -> float:
        """One pass: note ban changes, send the window's digest if there is something to say."""
        await self._watch_ban(asyncio.to_thread)
        events = await asyncio.to_thread(self._store.pending)
        if not events:
            return self._interval
        if self._transport.banned_for() > 0:
            return min(self._interval * 5, max(self._interval, self._transport.banned_for()))
        if not await asyncio.to_thread(self._store.take_window, self._window):
            return max(0.05, min(self._interval, await asyncio.to_thread(self._store.window_left, self._window)))
        payload, ids = digest(events, admin_url=self._admin_url)
        try:
            await self._transport.request("POST", f"/webhooks/{self._webhook_id}/{self._token()}",
                                          route_key=f"alerts:{self._webhook_id}", kind="webhook",
                                          payload=payload, params={"wait": "true"})
        except (Transient, CloudflareBanned, ChannelBusy) as exc:
            # Kept: the next window's digest says it (never an alert about an alert).
            metrics.ALERTS_FAILED.labels(reason="transient").inc()
            log.warning("operator alert not sent (%s); it goes with the next digest", exc.message)
            return self._interval
        except DeliveryError as exc:
            reason = "permanent" if isinstance(exc, Permanent) else "refused"
            metrics.ALERTS_FAILED.labels(reason=reason).inc()
            log.error("operator alert webhook refused the digest (%s); %d alerts dropped", exc.message, len(ids))
            await asyncio.to_thread(self._store.mark, ids)
            return self._interval
        await asyncio.to_thread(self._store.mark, ids, restart_window=True)
        metrics.ALERTS_SENT.inc()
        metrics.ALERT_EVENTS.inc(len(ids))
        return self._interval

    async def _watch_ban(self, run: Callable[..., Any]) -> None:
        banned = self._transport.banned_for() > 0
        if banned == self._banned:
            return
        self._banned = banned
        if banned:
            until = datetime.fromtimestamp(time.time() + self._transport.banned_for(), UTC)
            await run(self._store.add, "ban_started", "Cloudflare ban: Discord refuses this relay's address",
                      f"every send paused until {until:%H:%M:%S} UTC")
        else:
            await run(self._store.add, "ban_ended", "Cloudflare ban over: sending again",
                      f"resumed at {utcnow():%H:%M:%S} UTC")

