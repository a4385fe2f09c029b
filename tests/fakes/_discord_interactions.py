"""Discord's side of HTTP interactions: signed requests out, callbacks, ``@original``, commands.

An application with an Interactions Endpoint URL receives every slash command, button click and
autocomplete as an HTTP POST signed with the application's Ed25519 key, and answers it in the
HTTP response (the "callback") within 3 seconds. The emulator plays Discord: it holds a test key
pair (the public half is what the relay is configured with), builds and signs interactions,
sends them, validates the answer against Discord's OpenAPI document, and applies it: a type 4
answer becomes the interaction's original message, a type 5 deferral a "thinking" placeholder
that ``PATCH /webhooks/{app}/{token}/messages/@original`` later fills in, a type 6/7 answer to a
click acknowledges (or edits) the message the button is on, a type 8 answer carries at most 25
choices. The token registered for each interaction takes follow-ups for 15 minutes like any
other (``_discord_webhooks``).

Also here: ``POST /interactions/{id}/{token}/callback`` (the callback for applications that
answer out of band; a second acknowledgement is 40060) and command registration
(``PUT``/``GET /applications/{app}/commands`` and the guild variant, bot token, body checked
against the spec plus the rules the spec cannot say).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._discord_api import DiscordError, _limit, _loads, _note_payload
from ._discord_state import Interaction, RecordedMessage
from .discord_validation import DiscordValidationError, validate_message, validate_request

if TYPE_CHECKING:
    from .discord import DiscordEmulator

__all__ = ["APPLICATION_ID", "InteractionCall", "InteractionSender", "interaction_routes"]

APPLICATION_ID = "1100000000000000001"  # the emulated bot's application (the same id as its user)
RESPONSE_DEADLINE_S = 3.0
EPHEMERAL, LOADING = 1 << 6, 1 << 7
PING, COMMAND, COMPONENT, AUTOCOMPLETE = 1, 2, 3, 4
#: Which callback types answer which interaction type, and the spec schema of each.
_CALLBACKS: dict[int, dict[int, str]] = {
    PING: {1: "PongInteractionCallbackRequest"},
    COMMAND: {4: "CreateMessageInteractionCallbackRequest", 5: "CreateMessageInteractionCallbackRequest"},
    COMPONENT: {4: "CreateMessageInteractionCallbackRequest", 5: "CreateMessageInteractionCallbackRequest",
                6: "UpdateMessageInteractionCallbackRequest", 7: "UpdateMessageInteractionCallbackRequest"},
    AUTOCOMPLETE: {8: "ApplicationCommandAutocompleteCallbackRequest"},
}
_COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")
_SUBCOMMAND, _GROUP = 1, 2


@dataclass
class InteractionRecord:
    """One interaction the emulator sent, and what became of it."""

    id: str
    application_id: str
    token: str
    type: int
    channel_id: str
    created_at: float
    message_id: str | None = None  # the message a clicked component is on
    callback_type: int | None = None
    original_message_id: str | None = None
    choices: list[dict[str, Any]] | None = None
    failure: str | None = None  # why Discord would show "This interaction failed"
    acknowledged: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class InteractionCall:
    """The relay's HTTP answer to one interaction, as Discord saw it."""

    id: str
    token: str
    status: int
    body: Any
    failure: str | None
    emulator: DiscordEmulator

    @property
    def callback_type(self) -> int | None:
        """The answer's ``type`` (1 pong, 4 message, 5 deferred, 6 deferred update, 7 update, 8 choices)."""
        return self.body.get("type") if isinstance(self.body, dict) else None

    @property
    def choices(self) -> list[dict[str, Any]]:
        """The autocomplete choices of a type 8 answer."""
        record = self.emulator.interactions.record(self.id)
        return list(record.choices or []) if record else []

    def original(self) -> RecordedMessage | None:
        """The interaction's original message in its current state (None before any answer)."""
        record = self.emulator.interactions.record(self.id)
        if record is None or record.original_message_id is None:
            return None
        return self.emulator.message(record.original_message_id)

    def wait_original(self, done: Any = None, timeout: float = 30.0) -> RecordedMessage:
        """The original message once it is no longer "thinking" (and ``done(message)``, if given)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.original()
            if message is not None and not (message.payload.get("flags") or 0) & LOADING and (
                    done is None or done(message)):
                return message
            if time.monotonic() > deadline:
                raise AssertionError(f"interaction {self.id}: @original not completed (now {message})")
            time.sleep(0.02)


class InteractionSender:
    """Builds, signs and sends interactions to an application's endpoint; applies their answers."""

    def __init__(self, emulator: DiscordEmulator, application_id: str = APPLICATION_ID) -> None:
        self._emulator = emulator
        self.application_id = application_id
        self._key = Ed25519PrivateKey.generate()
        self._records: dict[str, InteractionRecord] = {}
        self._lock = threading.Lock()

    # --- keys and signing ------------------------------------------------------------------------

    @property
    def public_key(self) -> str:
        """The application's public key as the Developer Portal shows it (64 hex characters)."""
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def sign(self, timestamp: str, body: bytes) -> str:
        """Discord's signature of one request: Ed25519 over timestamp + body, hex."""
        return self._key.sign(timestamp.encode() + body).hex()

    def clear(self) -> None:
        """Forget every interaction sent (the key pair stays: the application is configured with it)."""
        with self._lock:
            self._records.clear()

    def record(self, interaction_id: str) -> InteractionRecord | None:
        """What the emulator knows of one interaction it sent."""
        with self._lock:
            return self._records.get(interaction_id)

    def record_for_token(self, application_id: str, token: str) -> InteractionRecord | None:
        """The interaction whose token this is."""
        with self._lock:
            for record in self._records.values():
                if record.application_id == application_id and record.token == token:
                    return record
        return None

    # --- building interactions -------------------------------------------------------------------

    def _base(self, kind: int, *, user_id: str, guild_id: str | None, permissions: int, channel_id: str | None,
              data: dict[str, Any] | None) -> dict[str, Any]:
        state = self._emulator._state
        user = {"id": str(user_id), "username": f"user{user_id}", "discriminator": "0", "global_name": None,
                "avatar": None}
        body: dict[str, Any] = {
            "id": state.snowflake(), "application_id": self.application_id, "type": kind,
            "token": "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(60), "version": 1,
            "channel_id": channel_id or state.snowflake(), "locale": "en-US",
            "app_permissions": "2248473465835073", "entitlements": [], "authorizing_integration_owners": {},
        }
        if data is not None:
            body["data"] = data
        if guild_id is not None:
            body["guild_id"] = str(guild_id)
            body["guild_locale"] = "en-US"
            body["context"] = 0
            body["member"] = {"user": user, "roles": [], "permissions": str(permissions), "nick": None,
                              "joined_at": "2026-01-01T00:00:00+00:00", "deaf": False, "mute": False, "flags": 0}
        else:
            body["user"] = user
            body["context"] = 1
        return body

    def ping(self, url: str, **kwargs: Any) -> InteractionCall:
        """The PING Discord sends when the endpoint URL is saved."""
        body = {"id": self._emulator._state.snowflake(), "application_id": self.application_id, "type": PING,
                "token": "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(60), "version": 1}
        return self.send(url, body, **kwargs)

    def command(self, url: str, *, user_id: str, name: str = "results", subcommand: str | None = None,
                options: dict[str, Any] | None = None, guild_id: str | None = None, permissions: int = 0,
                channel_id: str | None = None, **kwargs: Any) -> InteractionCall:
        """A slash command, ``/name [subcommand] option:value…``."""
        opts = [{"name": k, "type": 3 if isinstance(v, str) else 4, "value": v} for k, v in (options or {}).items()]
        if subcommand is not None:
            opts = [{"name": subcommand, "type": _SUBCOMMAND, "options": opts}]
        data = {"id": self._emulator._state.snowflake(), "name": name, "type": 1, "options": opts}
        return self.send(url, self._base(COMMAND, user_id=user_id, guild_id=guild_id, permissions=permissions,
                                         channel_id=channel_id, data=data), **kwargs)

    def autocomplete(self, url: str, *, user_id: str, option: str, typed: str, name: str = "results",
                     subcommand: str | None = None, guild_id: str | None = None, permissions: int = 0,
                     **kwargs: Any) -> InteractionCall:
        """What Discord sends while a user types into an autocomplete option."""
        opts: list[dict[str, Any]] = [{"name": option, "type": 3, "value": typed, "focused": True}]
        if subcommand is not None:
            opts = [{"name": subcommand, "type": _SUBCOMMAND, "options": opts}]
        data = {"id": self._emulator._state.snowflake(), "name": name, "type": 1, "options": opts}
        return self.send(url, self._base(AUTOCOMPLETE, user_id=user_id, guild_id=guild_id, permissions=permissions,
                                         channel_id=None, data=data), **kwargs)

    def click(self, url: str, *, message: RecordedMessage, custom_id: str, user_id: str,
              guild_id: str | None = None, permissions: int = 0, **kwargs: Any) -> InteractionCall:
        """A button press on ``message`` (any ``custom_id``: a forged one is how a test attacks)."""
        data = {"custom_id": custom_id, "component_type": 2}
        body = self._base(COMPONENT, user_id=user_id, guild_id=guild_id, permissions=permissions,
                          channel_id=message.channel_id, data=data)
        body["message"] = {"id": message.id, "channel_id": message.channel_id, "content": message.content,
                           "flags": message.payload.get("flags") or 0,
                           "components": message.payload.get("components") or []}
        return self.send(url, body, message_id=message.id, **kwargs)

    # --- sending ---------------------------------------------------------------------------------

    def send(self, url: str, interaction: dict[str, Any], *, signature: str | None = None,
             timestamp: str | None = None, message_id: str | None = None, sign: bool = True) -> InteractionCall:
        """Sign (or, with ``signature``/``sign=False``, mis-sign) and POST one interaction; apply the answer."""
        emulator = self._emulator
        raw = json.dumps(interaction, separators=(",", ":")).encode()
        stamp = timestamp or str(int(emulator.clock.now()))
        headers = {"Content-Type": "application/json", "User-Agent": "Discord-Interactions/1.0 (+https://discord.com)"}
        if sign:
            headers["X-Signature-Timestamp"] = stamp
            headers["X-Signature-Ed25519"] = signature if signature is not None else self.sign(stamp, raw)
        record = InteractionRecord(id=interaction["id"], application_id=self.application_id,
                                   token=interaction["token"], type=interaction["type"],
                                   channel_id=str(interaction.get("channel_id") or ""),
                                   created_at=emulator.clock.now(), message_id=message_id)
        with self._lock:
            self._records[record.id] = record
        if record.type != PING:
            with emulator._state.lock:  # the token takes follow-ups (and @original) for 15 minutes
                emulator._state.interactions[(self.application_id, record.token)] = Interaction(
                    self.application_id, record.token, record.created_at, channel_id=record.channel_id or None)
        try:
            response = httpx.post(url, content=raw, headers=headers, timeout=RESPONSE_DEADLINE_S)
        except httpx.TimeoutException:
            record.failure = f"the application did not answer within {RESPONSE_DEADLINE_S:g} s"
            return InteractionCall(record.id, record.token, 0, None, record.failure, emulator)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code == 200:
            try:
                self._apply(record, body)
            except (DiscordError, DiscordValidationError) as exc:
                record.failure = f"invalid interaction response: {getattr(exc, 'body', exc)}"
        else:
            record.failure = f"the application answered {response.status_code}"
        return InteractionCall(record.id, record.token, response.status_code, body, record.failure, emulator)

    # --- applying an answer (HTTP response or callback endpoint) ---------------------------------

    def _apply(self, record: InteractionRecord, answer: Any) -> None:
        """Validate a callback against the spec and Discord's rules, then make it so."""
        if not isinstance(answer, dict) or not isinstance(answer.get("type"), int):
            raise DiscordError(400, 50035, "Invalid Form Body",
                               errors={"type": {"_errors": [{"code": "BASE_TYPE_REQUIRED",
                                                              "message": "This field is required"}]}})
        kind = answer["type"]
        schema = _CALLBACKS.get(record.type, {}).get(kind)
        if schema is None:
            raise DiscordError(400, 40043, f"Interaction callback type {kind} is not valid for this interaction")
        validate_request("", schema, answer)
        data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
        emulator, state = self._emulator, self._emulator._state
        if record.acknowledged.is_set():
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        original: str | None = None
        if kind in (4, 5):
            payload = dict(data)
            if kind == 4:
                validate_message(payload, kind="interaction", limits=emulator.limits)
            else:
                payload = {"flags": (int(data.get("flags") or 0) & EPHEMERAL) | LOADING}
            message = RecordedMessage(id=state.snowflake(), kind="interaction", channel_id=record.channel_id,
                                      webhook_id=record.application_id, thread_id=None, payload=payload,
                                      original_payload=payload, files=(), created_at=emulator.clock.now())
            state.store_message(message)
            original = message.id
        elif kind in (6, 7):
            original = record.message_id
            if kind == 7 and original is not None:
                current = emulator.message(original)
                if current is not None:
                    merged = {**current.payload, **data}
                    validate_message(merged, kind="edit", limits=emulator.limits)
                    state.update_message(original, payload=merged, edited_at=emulator.clock.now())
        elif kind == 8:
            choices = data.get("choices") or []
            if len(choices) > 25:
                raise DiscordError(400, 50035, "Invalid Form Body", errors={"data": {"choices": {"_errors": [
                    {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 25 or fewer in length."}]}}})
            for i, item in enumerate(choices):
                for key in ("name", "value"):
                    if len(str(item.get(key, ""))) > 100:
                        raise DiscordError(400, 50035, "Invalid Form Body", errors={"data": {"choices": {str(i): {
                            key: {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH",
                                               "message": "Must be between 1 and 100 in length."}]}}}}})
            record.choices = list(choices)
        record.callback_type = kind
        record.original_message_id = original
        record.acknowledged.set()

    def original_message_id(self, application_id: str, token: str) -> str:
        """The message ``@original`` means for this token; waits briefly for a callback in flight,
        because Discord reads the HTTP answer before the token's webhook is usable."""
        record = self.record_for_token(application_id, token)
        if record is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        record.acknowledged.wait(RESPONSE_DEADLINE_S)
        if record.original_message_id is None:
            raise DiscordError(404, 10008, "Unknown Message")
        return record.original_message_id


# --------------------------------------------------------------------------- routes


async def interaction_callback(request: Request, emulator: DiscordEmulator, headers: dict[str, str]) -> Response:
    """POST /interactions/{id}/{token}/callback: the out-of-band answer (at most one, within 3 s)."""
    interaction_id, token = request.path_params["interaction_id"], request.path_params["token"]
    _limit(emulator, headers, "POST /interactions/{interaction_id}/{token}/callback", interaction_id,
           emulator.rate_limits.webhook)
    record = emulator.interactions.record(interaction_id)
    if record is None or record.token != token or (
            not record.acknowledged.is_set() and emulator.clock.now() - record.created_at > RESPONSE_DEADLINE_S):
        raise DiscordError(404, 10062, "Unknown interaction")
    answer = _loads(await request.body())
    _note_payload(request, answer)
    emulator.interactions._apply(record, answer)
    return Response(status_code=204, headers=headers)


def _check_commands(commands: list[Any]) -> None:
    """The rules of a command list that the OpenAPI document cannot say."""
    errors: dict[str, Any] = {}

    def fail(path: list[str], message: str) -> None:
        node = errors
        for key in path:
            node = node.setdefault(key, {})
        node.setdefault("_errors", []).append({"code": "APPLICATION_COMMAND_INVALID", "message": message})

    seen: set[tuple[int, str]] = set()
    for i, command in enumerate(commands):
        kind = command.get("type") or 1
        name = str(command.get("name", ""))
        if (kind, name) in seen:
            fail([str(i), "name"], "Application command names must be unique")
        seen.add((kind, name))
        if kind == 1:
            if not _COMMAND_NAME.match(name) or name != name.lower():
                fail([str(i), "name"], "Command name is invalid")
            if not command.get("description"):
                fail([str(i), "description"], "This field is required")
            _check_options(command.get("options") or [], [str(i), "options"], fail, depth=0)
    if errors:
        raise DiscordError(400, 50035, "Invalid Form Body", errors=errors)


def _check_options(options: list[Any], path: list[str], fail: Any, *, depth: int) -> None:
    kinds = [o.get("type") for o in options]
    if any(k in (_SUBCOMMAND, _GROUP) for k in kinds) and not all(k in (_SUBCOMMAND, _GROUP) for k in kinds):
        fail(path, "Sub-command and sub-command group option types are mutually exclusive to all other types")
    names: set[str] = set()
    optional_seen = False
    for j, option in enumerate(options):
        where = [*path, str(j)]
        name = str(option.get("name", ""))
        if not _COMMAND_NAME.match(name) or name != name.lower():
            fail([*where, "name"], "Command name is invalid")
        if name in names:
            fail([*where, "name"], "Option names must be unique")
        names.add(name)
        if option.get("type") in (_SUBCOMMAND, _GROUP):
            if depth >= (1 if option.get("type") == _SUBCOMMAND else 0) + 1:
                fail(where, "Sub-commands nest at most two levels deep")
            _check_options(option.get("options") or [], [*where, "options"], fail, depth=depth + 1)
            continue
        if option.get("required"):
            if optional_seen:
                fail([*where, "required"], "Required options must be placed before non-required options")
        else:
            optional_seen = True
        if option.get("autocomplete") and option.get("choices"):
            fail([*where, "autocomplete"], "Autocomplete cannot be set on options with choices")


async def commands_route(request: Request, emulator: DiscordEmulator, headers: dict[str, str]) -> Response:
    """PUT (bulk overwrite) / GET the application's commands, global or of one guild."""
    from ._discord_bot import _bot  # the bot routes' authentication

    _bot(request, emulator, headers)
    application_id = request.path_params["application_id"]
    guild_id = request.path_params.get("guild_id")
    _limit(emulator, headers, f"{request.method} commands", f"{application_id}/{guild_id}",
           emulator.rate_limits.webhook)
    if application_id != emulator.interactions.application_id:
        raise DiscordError(403, 20012, "You are not authorized to perform this action on this application")
    key = (application_id, guild_id)
    if request.method == "GET":
        with emulator._state.lock:
            return JSONResponse(list(emulator._state.commands.get(key, [])), headers=headers)
    body = _loads(await request.body())
    _note_payload(request, body)
    spec_path = ("/applications/{application_id}/guilds/{guild_id}/commands" if guild_id
                 else "/applications/{application_id}/commands")
    validate_request("PUT", spec_path, body)
    _check_commands(body or [])
    state = emulator._state
    registered = []
    for command in body or []:
        entry = {"id": state.snowflake(), "application_id": application_id, "version": state.snowflake(),
                 "default_member_permissions": None, "type": 1, "nsfw": False, **command}
        if guild_id:
            entry["guild_id"] = guild_id
        registered.append(entry)
    with state.lock:
        state.commands[key] = registered
    return JSONResponse(registered, headers=headers)


def interaction_routes() -> list[tuple[str, Any, list[str]]]:
    """(path under the API prefix, handler, methods) of this module's routes."""
    return [
        ("/interactions/{interaction_id}/{token}/callback", interaction_callback, ["POST"]),
        ("/applications/{application_id}/commands", commands_route, ["GET", "PUT"]),
        ("/applications/{application_id}/guilds/{guild_id}/commands", commands_route, ["GET", "PUT"]),
    ]

