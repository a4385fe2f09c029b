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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, or_, select, update

from delivery.errors import ChannelBusy, CloudflareBanned, DeliveryError, Permanent, Transient
from delivery.queue import EngineStore, utcnow
from delivery.supervise import LoopMonitor, supervise
from delivery.transport import DiscordTransport
from schemas.tables import Delivery, Destination, ProgressMessage, Result

log = logging.getLogger("relay.progress")

INTERACTION_TTL = timedelta(minutes=15)
LAST_SAFE_SEND = timedelta(seconds=5)  # never use a token this close to its end
PROGRESS_RETRY = timedelta(seconds=2)
BAR_CELLS = 12
# What the relay, not the producer, writes into a progress row's state; a producer's update keeps them.
RELAY_STATE_MARKS = ("handoff_sent", "thread_id")


@dataclass(frozen=True)
class ProgressWork:
    """A progress row claimed for sending."""

    id: int
    workflow_id: str
    destination_key: str
    kind: str
    target: dict[str, Any]
    state: dict[str, Any]
    version: int
    message_id: str | None
    done: bool
    thread_id: str | None = None  # the forum post its message lives in (created by it or by the result)
    channel_id: str | None = None  # the webhook's channel, once learned: a new progress post takes a slot of it


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


class ProgressQueue(EngineStore):
    """Store side of progress messages and hand-off notices."""

    def claim(self, owner: str, *, limit: int, lease_s: float) -> list[ProgressWork]:
        """Progress rows with a newer state than Discord shows, whose destination has no due result."""
        now = utcnow()
        busy = exists().where(Delivery.destination_key == ProgressMessage.destination_key,
                              Delivery.status == "pending", Delivery.next_attempt_at <= now)
        query = (select(ProgressMessage)
                 .where(ProgressMessage.version > ProgressMessage.sent_version,
                        or_(ProgressMessage.next_attempt_at.is_(None), ProgressMessage.next_attempt_at <= now),
                        or_(ProgressMessage.lease_owner.is_(None), ProgressMessage.lease_expires_at < now),
                        ~busy)
                 .order_by(ProgressMessage.updated_at).limit(limit))
        if self._postgres:
            query = query.with_for_update(skip_locked=True)
        with self._session(write=True) as session:
            rows = session.scalars(query).all()
            for row in rows:
                row.lease_owner, row.lease_expires_at = owner, now + timedelta(seconds=lease_s)
            keys = [r.destination_key for r in rows if r.kind == "webhook"]
            channels: dict[str, str] = {key: channel for key, channel in session.execute(
                select(Destination.key, Destination.channel_id).where(
                    Destination.key.in_(keys), Destination.channel_id.is_not(None)))} if keys else {}
            return [ProgressWork(id=r.id or 0, workflow_id=r.workflow_id, destination_key=r.destination_key,
                                 kind=r.kind, target=dict(r.target_json), state=dict(r.state_json), version=r.version,
                                 message_id=r.message_id, done=r.done, thread_id=_forum_thread(session, r),
                                 channel_id=channels.get(r.destination_key))
                    for r in rows]

    def sent(self, row_id: int, *, version: int, message_id: str | None, failed: str | None = None,
             thread_id: str | None = None) -> None:
        """Discord shows ``version`` now (or gave up with ``failed``); release the lease.

        ``thread_id``: the forum post the message just created; its edits (and the result) go there.
        """
        values: dict[str, Any] = {"sent_version": version, "lease_owner": None, "lease_expires_at": None,
                                  "next_attempt_at": None, "failed_reason": failed}
        if message_id is not None:
            values["message_id"] = message_id
        with self._session(write=True) as session:
            if thread_id is not None:
                _mark_state(session, row_id, thread_id=thread_id)
            session.execute(update(ProgressMessage).where(ProgressMessage.id == row_id).values(**values))

    def retry_later(self, row_id: int, at: datetime) -> None:
        """A transient failure: try the newest state again at ``at``."""
        with self._session(write=True) as session:
            session.execute(update(ProgressMessage).where(ProgressMessage.id == row_id)
                            .values(lease_owner=None, lease_expires_at=None, next_attempt_at=at))

    def due_handoffs(self, *, margin_s: float) -> list[ProgressWork]:
        """Interaction progress rows whose token is in its last ``margin_s`` and whose workflow has no result yet.

        The token's creation time rides in the stored target; rows are few (one per running
        interaction), so the time window is checked here rather than in SQL.
        """
        now = utcnow()
        delivered = exists().where(Result.workflow_id == ProgressMessage.workflow_id,
                                   Result.status.in_(("delivered", "picked_up")))
        with self._session() as session:
            rows = session.scalars(select(ProgressMessage).where(
                ProgressMessage.kind == "interaction", ProgressMessage.done.is_(False), ~delivered)).all()
        due = []
        for r in rows:
            if r.state_json.get("handoff_sent"):
                continue
            created = datetime.fromisoformat(r.target_json["created_at"])
            start = created + INTERACTION_TTL - timedelta(seconds=margin_s)
            if start <= now < created + INTERACTION_TTL - LAST_SAFE_SEND:
                due.append(ProgressWork(id=r.id or 0, workflow_id=r.workflow_id, destination_key=r.destination_key,
                                        kind=r.kind, target=dict(r.target_json), state=dict(r.state_json),
                                        version=r.version, message_id=r.message_id, done=r.done))
        return due

    def handoff_sent(self, row_id: int) -> None:
        """Remember the notice went out (once per interaction)."""
        with self._session(write=True) as session:
            _mark_state(session, row_id, handoff_sent=True)


def _mark_state(session: Any, row_id: int, **marks: Any) -> None:
    """Merge the relay's own marks into a progress row's state as it is now, under a row lock.

    A state read earlier may since have been replaced by a newer progress update (``app.progress``
    keeps these marks across updates); writing that earlier state back would undo the update.
    """
    row = session.scalar(select(ProgressMessage).where(ProgressMessage.id == row_id).with_for_update())
    if row is not None:
        row.state_json = {**row.state_json, **marks}
        session.flush()


def _forum_thread(session: Any, row: ProgressMessage) -> str | None:
    """The forum post of a progress row: the one its message opened, or the one its result's delivery did."""
    if row.state_json.get("thread_id"):
        return str(row.state_json["thread_id"])
    if not row.target_json.get("thread_name"):
        return None
    thread = session.scalar(select(Delivery.thread_id).join(Result, Result.id == Delivery.result_id).where(
        Result.workflow_id == row.workflow_id, Delivery.destination_key == row.destination_key,
        Delivery.thread_id.is_not(None)).limit(1))
    return str(thread) if thread else None


class ProgressWorker:
    """Sends the newest progress state of each (workflow, destination) and the hand-off notices."""

    def __init__(self, queue: ProgressQueue, transport: DiscordTransport, reveal: Callable[[str], str], *,
                 owner: str, interaction_margin_s: float, interval_s: float = 0.5, lease_s: float = 30.0,
                 concurrency: int = 8, monitor: LoopMonitor | None = None,
                 pickup_command: str | None = None) -> None:
        self._queue, self._transport, self._reveal = queue, transport, reveal
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
        for row in await asyncio.to_thread(self._queue.due_handoffs, margin_s=self._margin):
            await self._handoff(row)
        rows = await asyncio.to_thread(self._queue.claim, self._owner, limit=self._concurrency,
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
            await asyncio.to_thread(self._queue.sent, row.id, version=row.version, message_id=None,
                                    failed="interaction token expired")
            return
        bucket = self._transport.limiter.state(row.destination_key)
        if row.message_id is None and bucket.remaining is not None and bucket.remaining <= 1 \
                and bucket.reset_at > utcnow().timestamp():
            # The last request of this window belongs to results, not to a progress bar.
            await asyncio.to_thread(self._queue.retry_later, row.id, datetime.fromtimestamp(bucket.reset_at,
                                                                                          tz=utcnow().tzinfo))
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
            await asyncio.to_thread(self._queue.sent, row.id, version=row.version, message_id=message_id,
                                    thread_id=created_thread or None)
        except ChannelBusy as exc:  # the channel's cap: results first, progress after the wait
            until = datetime.fromtimestamp(exc.until, tz=utcnow().tzinfo)
            await asyncio.to_thread(self._queue.retry_later, row.id, max(until, utcnow() + PROGRESS_RETRY))
        except (Transient, CloudflareBanned):
            await asyncio.to_thread(self._queue.retry_later, row.id, utcnow() + PROGRESS_RETRY)
        except Permanent as exc:
            await asyncio.to_thread(self._queue.sent, row.id, version=row.version, message_id=None,
                                    failed=exc.message)
        except DeliveryError as exc:  # TooLarge cannot happen for a one-embed message; give this state up
            await asyncio.to_thread(self._queue.sent, row.id, version=row.version, message_id=None,
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
                await asyncio.to_thread(self._queue.handoff_sent, row.id)
            return
        await asyncio.to_thread(self._queue.handoff_sent, row.id)
        log.info("hand-off notice posted", extra={"workflow_id": row.workflow_id})
