"""Progress messages and hand-off notices: keeping the person who ran a long command informed.

One progress message per (workflow, destination) is created once and then edited in place. Only
the newest state is ever sent (a row carries ``version``; a send records the version it showed),
so a burst of updates under rate limits coalesces into one edit. Progress never delays a result:
a destination with due result deliveries is left alone, and progress does not spend the last
request of a bucket.

Hand-off notice: an interaction token dies 15 minutes after the command. When a workflow's route
holds one and no result was delivered by the time the token is within the safety margin of
expiring, the relay spends the token's last minute on a follow-up that says where the result will
arrive, described without secrets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from delivery.errors import ChannelBusy, CloudflareBanned, DeliveryError, Permanent, Transient
from delivery.ports import ProgressStore
from delivery.supervise import LoopMonitor, supervise
from delivery.transport import DiscordTransport
from schemas.clock import utcnow
from schemas.messages import INTERACTION_TTL, LAST_SAFE_SEND
from schemas.work import ProgressWork

log = logging.getLogger("relay.progress")

PROGRESS_RETRY = timedelta(seconds=2)
BAR_CELLS = 12


def describe_destination(kind: str | None) -> str:
    """Where a result will arrive, in words a user understands and without secrets."""
    if kind == "webhook":
        return "posted in this channel by webhook"
    if kind == "dm":
        return "sent to you by DM"
    if kind == "interaction":
        return "posted as a follow-up to the command"
    return "kept for pickup; the team running the workflow will share it"


def handoff_text(next_kind: str | None, pickup_command: str | None = None) -> str:
    """The notice posted on an interaction that is about to expire before its result.

    ``pickup_command`` (``/results`` when the relay answers Discord interactions) tells the user
    how to fetch the result themselves if it never arrives where it is expected.
    """
    where = describe_destination(next_kind)
    text = f"⏳ Still working — this command is about to time out. The result will be {where}"
    return f"{text}, or run `{pickup_command}` later to fetch it." if pickup_command else f"{text}."


def progress_payload(state: dict[str, Any], *, done: bool, workflow_id: str) -> dict[str, Any]:
    """The message showing a progress state (or "done")."""
    if done:
        embed: dict[str, Any] = {"title": "✅ Done", "description": "The result has been delivered.",
                                 "color": 0x57F287}
    else:
        current, total = state.get("current"), state.get("total")
        lines = []
        if isinstance(current, int | float) and isinstance(total, int | float) and total > 0:
            ratio = max(0.0, min(1.0, current / total))
            filled = round(ratio * BAR_CELLS)
            lines.append(f"`{'█' * filled}{'░' * (BAR_CELLS - filled)}` {current:g}/{total:g} ({ratio:.0%})")
        if state.get("message"):
            lines.append(str(state["message"])[:3000])
        embed = {"title": f"⏳ {str(state.get('stage') or 'Working')[:240]}",
                 "description": "\n".join(lines) or "Working…", "color": 0x5865F2}
    embed["footer"] = {"text": f"workflow {workflow_id}"[:2048]}
    return {"embeds": [embed], "allowed_mentions": {"parse": []}}


class ProgressWorker:
    """Sends the newest progress state of each (workflow, destination) and the hand-off notices."""

    def __init__(self, queue: ProgressStore, transport: DiscordTransport, reveal: Callable[[str], str], *,
                 owner: str, interaction_margin_s: float, interval_s: float = 0.5, lease_s: float = 30.0,
                 concurrency: int = 8, monitor: LoopMonitor | None = None,
                 pickup_command: str | None = None, run: Callable[..., Awaitable[Any]] | None = None) -> None:
        self._queue, self._transport, self._reveal = queue, transport, reveal
        # How store calls leave the event loop: the delivery worker's own runner in the relay (one
        # writer thread on SQLite, see ``DeliveryWorker.run_store``), a thread of the pool otherwise.
        self._run: Callable[..., Awaitable[Any]] = run or asyncio.to_thread
        self._pickup_command = pickup_command
        self._owner, self._margin, self._interval = owner, interaction_margin_s, interval_s
        self._lease_s, self._concurrency = lease_s, concurrency
        self._monitor = monitor or LoopMonitor()

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop``; each pass sends due hand-offs, then pending progress states.

        Supervised: a failed pass (the store away, a bug) is logged, counted and backed off from;
        progress is best effort and results never depend on it, but the loop never ends early.
        """

        async def step() -> float:
            await self.pass_once()
            return self._interval

        await supervise("progress", step, stop=stop, monitor=self._monitor)

    async def pass_once(self) -> None:
        """One round of hand-offs and progress edits."""
        if self._transport.banned_for() > 0:
            return
        for row in await self._run(self._queue.due_handoffs, margin_s=self._margin):
            await self._handoff(row)
        rows = await self._run(self._queue.claim, self._owner, limit=self._concurrency,
                               lease_s=self._lease_s)
        if rows:
            await asyncio.gather(*(self._send(row) for row in rows))

    def _path(self, row: ProgressWork) -> tuple[str, dict[str, str]]:
        ident = row.target["webhook_id"] if row.kind == "webhook" else row.target["application_id"]
        params = {"wait": "true"}
        thread = row.target.get("thread_id") or row.thread_id
        if thread:
            params["thread_id"] = str(thread)
        return f"/webhooks/{ident}/{self._reveal(row.target['token'])}", params

    def _token_alive(self, row: ProgressWork) -> bool:
        if row.kind != "interaction":
            return True
        created = datetime.fromisoformat(row.target["created_at"])
        return utcnow() < created + INTERACTION_TTL - LAST_SAFE_SEND

    async def _send(self, row: ProgressWork) -> None:
        if not self._token_alive(row):
            await self._run(self._queue.sent, row.id, version=row.version, message_id=None,
                            failed="interaction token expired")
            return
        bucket = self._transport.limiter.state(row.destination_key)
        if row.message_id is None and bucket.remaining is not None and bucket.remaining <= 1 \
                and bucket.reset_at > utcnow().timestamp():
            # The last request of this window belongs to results, not to a progress bar.
            await self._run(self._queue.retry_later, row.id,
                            datetime.fromtimestamp(bucket.reset_at, tz=utcnow().tzinfo))
            return
        payload = progress_payload(row.state, done=row.done, workflow_id=row.workflow_id)
        path, params = self._path(row)
        try:
            created_thread = None
            if row.message_id is None:
                opens_post = row.kind == "webhook" and row.target.get("thread_name") and "thread_id" not in params
                if opens_post:  # a forum channel: the progress message opens the result's post
                    payload = {**payload, "thread_name": row.target["thread_name"]}
                    if row.target.get("applied_tags"):
                        payload["applied_tags"] = list(row.target["applied_tags"])
                # A new progress message is a post into the channel: it takes a slot of the channel's pacer
                # (edits are not posts and do not count toward Discord's per-channel cap).
                channel = row.channel_id if row.kind == "webhook" and self._transport.pacing is not None else None
                response = await self._transport.request("POST", path, route_key=row.destination_key,
                                                         kind=row.kind, payload=payload, params=params,
                                                         channel=channel)
                message_id: str | None = str(response.json()["id"])
                created_thread = str(response.json().get("channel_id") or "") if opens_post else None
            else:
                edit_params = {k: v for k, v in params.items() if k == "thread_id"}
                await self._transport.request("PATCH", f"{path}/messages/{row.message_id}",
                                              route_key=f"{row.destination_key}:edit", kind=row.kind,
                                              payload=payload, params=edit_params)
                message_id = None
            await self._run(self._queue.sent, row.id, version=row.version, message_id=message_id,
                            thread_id=created_thread or None)
        except ChannelBusy as exc:  # the channel's cap: results first, progress after the wait
            until = datetime.fromtimestamp(exc.until, tz=utcnow().tzinfo)
            await self._run(self._queue.retry_later, row.id, max(until, utcnow() + PROGRESS_RETRY))
        except (Transient, CloudflareBanned):
            await self._run(self._queue.retry_later, row.id, utcnow() + PROGRESS_RETRY)
        except Permanent as exc:
            await self._run(self._queue.sent, row.id, version=row.version, message_id=None,
                            failed=exc.message)
        except DeliveryError as exc:  # TooLarge cannot happen for a one-embed message; give this state up
            await self._run(self._queue.sent, row.id, version=row.version, message_id=None,
                            failed=exc.message)

    async def _handoff(self, row: ProgressWork) -> None:
        payload = {"content": handoff_text(row.state.get("next_kind"), self._pickup_command),
                   "allowed_mentions": {"parse": []}}
        path, params = self._path(row)
        try:
            await self._transport.request("POST", path, route_key=row.destination_key, kind="interaction",
                                          payload=payload, params=params)
        except DeliveryError as exc:
            log.warning("hand-off notice not sent: %s", exc.message, extra={"workflow_id": row.workflow_id})
            if not isinstance(exc, Transient | CloudflareBanned):
                await self._run(self._queue.handoff_sent, row.id)
            return
        await self._run(self._queue.handoff_sent, row.id)
        log.info("hand-off notice posted", extra={"workflow_id": row.workflow_id})
