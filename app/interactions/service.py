"""Answering Discord's interactions for ``/results``: what to say at once, what to finish later.

Discord waits 3 seconds for the answer to an interaction. So the answer is either quick and
inline (PING, autocomplete: one indexed query, at most 25 choices) or a deferral — type 5,
ephemeral, for a command; type 6 for a button click — and the real message follows with
``PATCH /webhooks/{application_id}/{token}/messages/@original`` once the store has answered.

Who asks is taken from the interaction (``member.user`` in a guild, ``user`` in a DM) and every
read goes through ``PickupStore`` with that ``Viewer``, on every command and every click: a
custom id names a result, it never proves the clicker may have it.

"Send here" hands the result to the delivery engine as a new route: this click's own interaction,
whose token is fresh for 15 minutes. The worker then renders, splits, attaches, rate-limits and
resumes exactly as for any interaction follow-up. "DM me" does the same with a DM destination,
"Dismiss" acknowledges the result (``picked_up``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool

from app.destinations import build_target
from app.interactions.signature import load_public_key, verify_request
from app.interactions.views import (
    ACTIONS,
    DEFAULT_STATUS,
    EPHEMERAL,
    MAX_CHOICES,
    PER_PAGE,
    STATUS_CHOICES,
    Click,
    choice,
    list_message,
    notice,
    parse_custom_id,
    show_message,
)
from app.runtime import Runtime
from delivery.errors import DeliveryError
from delivery.transport import DiscordTransport
from schemas.api import DMDestination, InteractionDestination
from schemas.clock import utcnow
from store.errors import NotFound, StoreUnavailable
from store.pickup import Viewer

log = logging.getLogger("relay.interactions")

INTERACTIONS = Counter("relay_discord_interactions_total", "Discord interactions answered, by type and outcome",
                       ["type", "outcome"])

PING, COMMAND, COMPONENT, AUTOCOMPLETE = 1, 2, 3, 4
PONG, MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, CHOICES = 1, 4, 5, 6, 8
ADMINISTRATOR, MANAGE_GUILD = 1 << 3, 1 << 5
DISCORD_EPOCH_MS = 1_420_070_400_000
TOKEN_TTL = timedelta(minutes=15)
# An edit of @original this close to the token's end is not tried: it would only meet a 401.
TOKEN_MARGIN = timedelta(seconds=30)
TYPE_NAMES = {PING: "ping", COMMAND: "command", COMPONENT: "component", AUTOCOMPLETE: "autocomplete"}

Later = Callable[[], Awaitable[None]]


class BadInteraction(ValueError):
    """A signed body that is not an interaction the relay understands (answered 400)."""


@dataclass(frozen=True)
class Asker:
    """The interaction's identity and token: who asks, where, and how to answer later."""

    interaction_id: str
    token: str
    viewer: Viewer
    created_at: datetime

    @property
    def expires_at(self) -> datetime:
        """When Discord stops taking this token."""
        return self.created_at + TOKEN_TTL


def snowflake_time(snowflake: str) -> datetime | None:
    """When a Discord id was made (ms since 2015 in its top 42 bits)."""
    if not snowflake.isdigit():
        return None
    return datetime.fromtimestamp(((int(snowflake) >> 22) + DISCORD_EPOCH_MS) / 1000, UTC)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class InteractionService:
    """Verifies, answers and completes the interactions of one Discord application."""

    def __init__(self, runtime: Runtime, transport: DiscordTransport) -> None:
        settings = runtime.settings
        assert settings.discord_application_id is not None and settings.discord_public_key is not None
        self._runtime = runtime
        self._settings = settings
        self._application_id = settings.discord_application_id
        self._key = load_public_key(settings.discord_public_key)
        self._transport = transport
        self._pickup = runtime.pickup
        self._tenants = tuple(settings.discord_tenants)

    def verify(self, *, signature: str | None, timestamp: str | None, body: bytes) -> None:
        """``BadSignature`` unless Discord signed this body recently (see ``signature``)."""
        verify_request(self._key, signature=signature, timestamp=timestamp, body=body)

    # --- the answer within 3 seconds --------------------------------------------------------------

    async def answer(self, interaction: dict[str, Any]) -> tuple[dict[str, Any], Later | None]:
        """The immediate response body, and the work (if any) that completes it after it is sent."""
        kind = interaction.get("type")
        if kind == PING:
            INTERACTIONS.labels(type="ping", outcome="answered").inc()
            return {"type": PONG}, None
        if _str(interaction.get("application_id")) != self._application_id:
            raise BadInteraction("the interaction is for another application")
        asker = self._asker(interaction)
        raw_data = interaction.get("data")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        if kind == AUTOCOMPLETE:
            return await self._autocomplete(asker, data), None
        if kind == COMMAND:
            if data.get("name") != "results":
                return self._inline("command", f"This relay has no `/{str(data.get('name'))[:32]}` command."), None
            sub, options = _subcommand(data)
            if sub == "show" and options.get("id"):
                later = self._later("command", asker, lambda: self._show(asker, options["id"]))
            else:
                status = options.get("status") or DEFAULT_STATUS
                status = status if status in STATUS_CHOICES else DEFAULT_STATUS
                later = self._later("command", asker, lambda: self._list(asker, status, 0, options.get("workflow")))
            return {"type": DEFERRED_MESSAGE, "data": {"flags": EPHEMERAL}}, later
        if kind == COMPONENT:
            click = parse_custom_id(str(data.get("custom_id") or ""))
            if click is None:
                return self._inline("component", "This button is not one of the relay's (any more)."), None
            return {"type": DEFERRED_UPDATE}, self._later("component", asker, lambda: self._click(asker, click))
        raise BadInteraction(f"interaction type {kind!r} is not one the relay answers")

    def _inline(self, kind: str, text: str) -> dict[str, Any]:
        INTERACTIONS.labels(type=kind, outcome="answered").inc()
        return {"type": MESSAGE, "data": {**notice(text), "flags": EPHEMERAL}}

    def _asker(self, interaction: dict[str, Any]) -> Asker:
        member = interaction.get("member") if isinstance(interaction.get("member"), dict) else None
        user = (member or {}).get("user") if member else interaction.get("user")
        user_id = _str(user.get("id")) if isinstance(user, dict) else None
        interaction_id, token = _str(interaction.get("id")), _str(interaction.get("token"))
        if not user_id or not user_id.isdigit() or not interaction_id or not token:
            raise BadInteraction("the interaction names no user, id or token")
        managed = None
        guild_id = _str(interaction.get("guild_id"))
        if member is not None and guild_id:
            try:
                permissions = int(str(member.get("permissions") or "0"))
            except ValueError:
                permissions = 0
            if permissions & (MANAGE_GUILD | ADMINISTRATOR):
                managed = guild_id
        created = snowflake_time(interaction_id) or utcnow()
        return Asker(interaction_id=interaction_id, token=token, created_at=created,
                     viewer=Viewer(user_id=user_id, tenants=self._tenants, managed_guild=managed))

    async def _autocomplete(self, asker: Asker, data: dict[str, Any]) -> dict[str, Any]:
        focused = _focused(data)
        name, typed = (focused or ("", ""))
        try:
            if name == "workflow":
                found = await run_in_threadpool(self._pickup.suggest_workflows, asker.viewer, typed,
                                                limit=MAX_CHOICES)
                choices = [choice(w, w) for w in found]
            elif name == "id":
                suggestions = await run_in_threadpool(self._pickup.suggest, asker.viewer, typed, limit=MAX_CHOICES)
                choices = [choice(" · ".join(p for p in (s.title or s.workflow_id or s.result_id, s.status) if p),
                                  s.result_id) for s in suggestions]
            else:
                choices = []
        except StoreUnavailable:
            INTERACTIONS.labels(type="autocomplete", outcome="store_unavailable").inc()
            choices = []  # an empty list is still an answer; Discord shows "no options"
        else:
            INTERACTIONS.labels(type="autocomplete", outcome="answered").inc()
        return {"type": CHOICES, "data": {"choices": choices[:MAX_CHOICES]}}

    # --- completing a deferral --------------------------------------------------------------------

    def _later(self, kind: str, asker: Asker, work: Callable[[], Awaitable[dict[str, Any]]]) -> Later:
        """Run ``work`` after the deferral is sent and put its message into @original; every error
        is counted and, where the token still lives, told to the user instead of left as "thinking"."""

        async def complete() -> None:
            try:
                message = await work()
                outcome = "completed"
            except StoreUnavailable:
                message, outcome = notice("The relay's store is unreachable right now; try again in a minute."), (
                    "store_unavailable")
            except Exception:  # noqa: BLE001 - the outermost boundary of a background task
                log.exception("answering a %s interaction failed", kind)
                message, outcome = notice("Something went wrong on the relay; try again."), "error"
            INTERACTIONS.labels(type=kind, outcome=outcome).inc()
            await self._edit_original(asker, message)

        INTERACTIONS.labels(type=kind, outcome="deferred").inc()
        return complete

    async def _edit_original(self, asker: Asker, message: dict[str, Any]) -> None:
        """``PATCH …/messages/@original``, never on a token that has (nearly) expired."""
        if utcnow() >= asker.expires_at - TOKEN_MARGIN:
            INTERACTIONS.labels(type="edit", outcome="expired").inc()
            return
        digest = hashlib.sha256(asker.token.encode()).hexdigest()[:16]
        try:
            await self._transport.request(
                "PATCH", f"/webhooks/{self._application_id}/{asker.token}/messages/@original",
                route_key=f"interaction:{self._application_id}:{digest}", kind="interaction", payload=message)
        except DeliveryError as exc:
            INTERACTIONS.labels(type="edit", outcome="failed").inc()
            log.warning("could not edit the interaction's answer: %s", exc.message)
        else:
            INTERACTIONS.labels(type="edit", outcome="sent").inc()

    async def _list(self, asker: Asker, status: str, page: int, workflow: str | None) -> dict[str, Any]:
        results, more = await run_in_threadpool(
            self._pickup.page, asker.viewer, statuses=STATUS_CHOICES[status], workflow_id=workflow, page=page,
            per_page=PER_PAGE)
        return list_message(results, status=status, page=page, has_more=more, workflow=workflow, now=utcnow())

    async def _show(self, asker: Asker, result_id: str, note: str | None = None) -> dict[str, Any]:
        try:
            view, preview = await run_in_threadpool(self._pickup.preview, result_id, asker.viewer)
        except NotFound:
            return _not_yours(result_id)
        return show_message(view, preview, now=utcnow(), note=note)

    async def _click(self, asker: Asker, click: Click) -> dict[str, Any]:
        if click.action == "page":
            return await self._list(asker, click.status, click.page, click.workflow)
        assert click.action in ACTIONS and click.result_id is not None
        result_id = click.result_id
        try:
            # Ownership again, from the clicking user: the custom id only names the result.
            view = await run_in_threadpool(self._pickup.get, result_id, asker.viewer)
        except NotFound:
            return _not_yours(result_id)
        if click.action == "dismiss":
            await run_in_threadpool(self._runtime.results.ack, result_id, tenant=view.tenant)
            return await self._show(asker, result_id, note="Dismissed: marked as picked up.")
        if click.action == "dm":
            if self._settings.discord_bot_token is None:
                return await self._show(asker, result_id, note="This relay has no bot token, so it cannot DM.")
            target = build_target(DMDestination(type="dm", user_id=asker.viewer.user_id), field="route.0",
                                  api_base=self._settings.discord_api_base, cipher=self._runtime.cipher,
                                  bot_token_configured=True, tenant=view.tenant)
            note = "On its way to your DMs."
        else:
            # This click's own token: fresh for 15 minutes, and its follow-ups post into this channel.
            dest = InteractionDestination(type="interaction", application_id=self._application_id,
                                          token=asker.token, created_at=asker.created_at,
                                          user_id=asker.viewer.user_id)
            target = build_target(dest, field="route.0", api_base=self._settings.discord_api_base,
                                  cipher=self._runtime.cipher, bot_token_configured=True, tenant=view.tenant)
            note = "Sending it into this channel…"
        # The click was answered with type 6 (no message of its own), so the result's follow-ups
        # are new messages of this channel, not an edit of anything ephemeral.
        await run_in_threadpool(self._runtime.results.redeliver, result_id, targets=[target], mode="first_success",
                                tenant=view.tenant)
        self._runtime.wake_workers()
        return await self._show(asker, result_id, note=note)


def _not_yours(result_id: str) -> dict[str, Any]:
    # The same words for "no such result" and "someone else's": an id of another user's result
    # must tell nothing about it.
    return notice(f"You have no result `{result_id[:40]}`. `/results list` shows yours.")


def _subcommand(data: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    """``(subcommand name, {option: value})`` of a ``/results`` invocation."""
    raw = data.get("options")
    options: list[Any] = raw if isinstance(raw, list) else []
    if options and isinstance(options[0], dict) and options[0].get("type") == 1:
        sub = options[0]
        raw_inner = sub.get("options")
        inner: list[Any] = raw_inner if isinstance(raw_inner, list) else []
        return str(sub.get("name")), {str(o.get("name")): str(o.get("value")) for o in inner
                                      if isinstance(o, dict) and isinstance(o.get("value"), str | int)}
    return None, {}


def _focused(data: dict[str, Any]) -> tuple[str, str] | None:
    """The option being typed in an autocomplete interaction, and what has been typed so far."""
    options = data.get("options")
    stack: list[Any] = list(options) if isinstance(options, list) else []
    while stack:
        option = stack.pop(0)
        if not isinstance(option, dict):
            continue
        if option.get("focused"):
            return str(option.get("name")), str(option.get("value") or "")[:100]
        if isinstance(option.get("options"), list):
            stack.extend(option["options"])
    return None
