"""Sending one planned message through a webhook: threads, forum posts, channel learning, pacing.

What a webhook message needs beyond the payload the renderer made:

* **Where in the channel.** A destination may name a ``thread_id`` (post into that thread) or a
  ``thread_name`` (a forum or media channel: the result's first message creates a post of that
  name, tagged with ``applied_tags``). The thread a first message created is written onto the
  delivery *before* the next message is sent, so continuations, attachment parts, retries and
  a relay restarted after SIGKILL all post into that one thread, never a second post.
* **What the channel is.** The message object Discord returns (``?wait=true``) names the channel
  of a message posted outside a thread; ``GET /webhooks/{id}/{token}`` names channel and guild.
  Both are stored with the destination (see :mod:`store.channels`) the first time they are seen.
* **The channel's pace.** Every webhook post into a known channel takes a slot of that channel's
  pacer first; the transport waits for it (or, when the slot is far away, raises ``ChannelBusy``
  so the worker frees itself for other destinations).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from delivery import metrics
from delivery.errors import ChannelBusy, CloudflareBanned, DeliveryError, ShuttingDown
from delivery.ports import ChannelStore
from delivery.transport import DiscordTransport, OutgoingFile
from schemas.work import PaceLimit

log = logging.getLogger("relay.delivery")

#: A webhook message into a channel with a per-channel cap: the relay waits this long at most for a
#: slot while holding the destination; a later slot reschedules the delivery instead.
DEFAULT_MAX_PACE_WAIT_S = 5.0


@dataclass
class ChannelState:
    """What one destination task knows about its webhook's channel while it serves it."""

    channel_id: str | None = None
    guild_id: str | None = None
    looked_up: bool = False  # GET /webhooks/{id}/{token} tried in this serve (once is enough)


class ChannelPacing:
    """The transport's view of the per-channel pacer: wait for a slot, or say the channel is blocked."""

    def __init__(self, store: ChannelStore, limit: PaceLimit, *, max_wait_s: float = DEFAULT_MAX_PACE_WAIT_S,
                 run: Callable[..., Any] | None = None) -> None:
        self._store, self.limit, self.max_wait_s = store, limit, max_wait_s
        self._run = run or _to_thread

    async def turn(self, channel_id: str, *, wait: bool = True) -> float:
        """Reserve the channel's next slot; returns seconds to wait for it. ``ChannelBusy`` when far off.

        ``wait=False`` records a send that already happened (whenever the next slot is).
        """
        slot = await self._run(self._store.reserve_slot, channel_id, limit=self.limit,
                               max_wait=self.max_wait_s if wait else float("inf"))
        wait = slot.at - datetime.now(UTC).timestamp()
        if not slot.reserved:
            metrics.CHANNEL_PACED.labels(outcome="rescheduled").inc()
            raise ChannelBusy(channel_id, slot.at)
        if wait > 0:
            metrics.CHANNEL_PACED.labels(outcome="waited").inc()
        return max(0.0, wait)

    async def blocked(self, channel_id: str, retry_after: float) -> None:
        """Discord answered a ``shared`` 429 for this channel: every webhook of it waits ``retry_after``."""
        until = datetime.fromtimestamp(datetime.now(UTC).timestamp() + retry_after, UTC)
        await self._run(self._store.block_channel, channel_id, until)


async def _to_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


class WebhookSender:
    """Posts planned messages through webhooks (and interaction follow-ups, which share the URL shape)."""

    def __init__(self, transport: DiscordTransport, channels: ChannelStore | None, reveal: Callable[[str], str],
                 *, run: Callable[..., Any] | None = None) -> None:
        self._transport, self._channels, self._reveal = transport, channels, reveal
        self._run = run or _to_thread

    async def send(self, *, kind: str, route_key: str, target: dict[str, Any], payload: dict[str, Any],
                   files: list[OutgoingFile], thread_id: str | None, channel: ChannelState) -> dict[str, Any]:
        """POST one message; returns Discord's message object.

        ``thread_id`` is the thread this delivery already posted into (a forum post it created), if any.
        """
        ident = target["webhook_id"] if kind == "webhook" else target["application_id"]
        params = {"wait": "true"}
        thread = target.get("thread_id") or thread_id
        if thread:
            params["thread_id"] = str(thread)
        elif kind == "webhook" and target.get("thread_name"):
            payload = {**payload, "thread_name": target["thread_name"]}
            if target.get("applied_tags"):
                payload["applied_tags"] = list(target["applied_tags"])
        path = f"/webhooks/{ident}/{self._reveal(target['token'])}"
        paced = channel.channel_id if kind == "webhook" and self._transport.pacing is not None else None
        try:
            response = await self._transport.request("POST", path, route_key=route_key, kind=kind, payload=payload,
                                                     files=files, params=params, channel=paced)
        except ChannelBusy as exc:
            if kind != "webhook" or exc.channel_id is not None or self._channels is None:
                raise
            # A channel's cap hit before the relay knew the channel: learn it now, so the whole channel
            # waits (and is paced from now on) instead of only this webhook.
            channel.looked_up = True
            await self._look_up(route_key, path, channel, count_sent=False)
            pacing = self._transport.pacing
            if channel.channel_id is None or pacing is None:
                raise
            await pacing.blocked(channel.channel_id, max(0.0, exc.until - datetime.now(UTC).timestamp()))
            raise ChannelBusy(channel.channel_id, exc.until) from None
        message: dict[str, Any] = response.json()
        if kind == "webhook":
            await self._learn(route_key, message, into_thread=bool(thread or target.get("thread_name")),
                              path=path, channel=channel)
        return message

    async def _learn(self, key: str, message: dict[str, Any], *, into_thread: bool, path: str,
                     channel: ChannelState) -> None:
        """Store what this answer (and, once, the webhook object) says about the webhook's channel."""
        if self._channels is None:
            return
        answered = message.get("channel_id") if not into_thread else None
        if isinstance(answered, str) and answered.isdigit() and answered != channel.channel_id:
            channel.channel_id = answered
            await self._run(self._channels.learn_channel, key, channel_id=answered)
            metrics.CHANNELS_LEARNED.labels(source="message").inc()
            await self._count_unpaced(answered)
        if channel.guild_id is None and not channel.looked_up:
            channel.looked_up = True
            await self._look_up(key, path, channel)

    async def _look_up(self, key: str, path: str, channel: ChannelState, *, count_sent: bool = True) -> None:
        """``GET /webhooks/{id}/{token}``: channel and guild. Best effort: a failure only means "not yet"."""
        try:
            response = await self._transport.request("GET", path, route_key=f"{key}:get", kind="webhook")
        except (ShuttingDown, CloudflareBanned):
            raise
        except DeliveryError as exc:
            log.info("webhook lookup failed (%s); its channel is learned from messages instead", exc.message)
            metrics.CHANNELS_LEARNED.labels(source="lookup_failed").inc()
            return
        body = response.json() if isinstance(response.json(), dict) else {}
        channel_id, guild_id = _snowflake(body.get("channel_id")), _snowflake(body.get("guild_id"))
        if channel_id and channel_id != channel.channel_id:
            channel.channel_id = channel_id
            if count_sent:
                await self._count_unpaced(channel_id)
        if guild_id:
            channel.guild_id = guild_id
        assert self._channels is not None
        await self._run(self._channels.learn_channel, key, channel_id=channel_id, guild_id=guild_id)
        metrics.CHANNELS_LEARNED.labels(source="lookup").inc()


    async def _count_unpaced(self, channel_id: str) -> None:
        """The message just sent went out before its channel was known: it still used one of the channel's
        slots, so the pacer records it (as of now, later than it was: the safe side)."""
        pacing = self._transport.pacing
        if pacing is not None:
            with contextlib.suppress(ChannelBusy):
                await pacing.turn(channel_id, wait=False)


def _snowflake(value: Any) -> str | None:
    return value if isinstance(value, str) and value.isdigit() else None
