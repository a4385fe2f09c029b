"""The emulated Discord routes under ``/api/v10``: webhooks, follow-ups, DMs, channel messages.

Each handler follows Discord's order of checks (rate limit, authentication, existence, body
size, form body, emptiness) and answers with Discord's status, JSON code and headers. Every
answer carries the route's ``X-RateLimit-*`` headers and ``Via: 1.1 google`` like the real
thing, so the relay's header handling is exercised on successes and failures alike.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._discord_edge import EDGE_NOTES
from ._discord_ratelimit import Limit, RateLimitDecision
from ._discord_state import Channel, Interaction, MessageEdit, RecordedFile, RecordedMessage, Webhook
from .discord_validation import DiscordValidationError, MessageKind, validate_message

if TYPE_CHECKING:
    from .discord import DiscordEmulator

__all__ = ["DiscordError", "api_routes", "message_object"]

VIA = {"Via": "1.1 google"}
BOT_USER_ID = "1100000000000000001"


class DiscordError(Exception):
    """An answer other than success, raised from deep inside a handler."""

    def __init__(self, status: int, code: int, message: str, *, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"code": code, "message": message}
        if errors is not None:
            self.body["errors"] = errors


class _RateLimited(Exception):
    def __init__(self, decision: RateLimitDecision) -> None:
        super().__init__("rate limited")
        self.decision = decision


def _snowflake_error(name: str, value: str) -> DiscordError:
    return DiscordError(
        400,
        50035,
        "Invalid Form Body",
        errors={name: {"_errors": [{"code": "NUMBER_TYPE_COERCE", "message": f'Value "{value}" is not snowflake.'}]}},
    )


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")


def message_object(message: RecordedMessage, emulator: DiscordEmulator) -> dict[str, Any]:
    """The message as Discord returns it (the fields a client reads; not every field Discord has)."""
    payload = message.payload
    if message.kind == "channel":
        author = {"id": BOT_USER_ID, "username": "relay-bot", "discriminator": "0", "avatar": None, "bot": True}
    else:
        author = {
            "id": message.webhook_id,
            "username": payload.get("username") or "Captain Hook",
            "discriminator": "0000",
            "avatar": None,
            "bot": True,
        }
    body: dict[str, Any] = {
        "id": message.id,
        "type": 0,
        "channel_id": message.channel_id,
        "author": author,
        "content": payload.get("content") or "",
        "embeds": [{"type": "rich", **e} for e in payload.get("embeds") or []],
        "attachments": [
            {
                "id": f.attachment_id,
                "filename": f.filename,
                "size": f.size,
                "url": f"https://cdn.discordapp.com/attachments/{message.channel_id}/{f.attachment_id}/{f.filename}",
                "proxy_url": f"https://media.discordapp.net/attachments/{message.channel_id}/{f.attachment_id}/{f.filename}",
                "content_type": f.content_type,
            }
            for f in message.files
        ],
        "mentions": [],
        "mention_roles": [],
        "mention_everyone": False,
        "pinned": False,
        "tts": bool(payload.get("tts")),
        "timestamp": _iso(message.created_at),
        "edited_timestamp": _iso(message.edited_at),
        "flags": payload.get("flags") or 0,
        "components": payload.get("components") or [],
    }
    if message.webhook_id is not None:
        body["webhook_id"] = message.webhook_id
    if message.kind == "interaction":
        body["application_id"] = message.webhook_id
    if message.nonce is not None:
        body["nonce"] = message.nonce
    return body


# --------------------------------------------------------------------------- request parsing


class _Body:
    """A parsed request: the JSON payload and the uploaded files (form name, filename, type, bytes)."""

    def __init__(self, payload: Any, files: list[tuple[str, str, str | None, bytes]]) -> None:
        self.payload = payload
        self.files = files

    def sizes(self) -> list[tuple[str, int]]:
        return [(name, len(data)) for name, _filename, _ctype, data in self.files]


async def _parse_body(request: Request, emulator: DiscordEmulator) -> _Body:
    limits = emulator.limits
    too_large = DiscordError(413, 40005, "Request entity too large")
    declared = request.headers.get("content-length")
    # Refuse before reading, as Discord's edge does: the client learns early, and a huge
    # upload never sits in the emulator's memory.
    if declared is not None and declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise too_large
    raw = await request.body()
    if len(raw) > limits.max_request_bytes:
        raise too_large
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1000, max_fields=1000, max_part_size=limits.max_request_bytes)
        payload: Any = None
        fields: dict[str, Any] = {}
        files: list[tuple[str, str, str | None, bytes]] = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                if name == "payload_json":
                    payload = _loads(data)
                else:
                    files.append((name, value.filename or name, value.content_type, data))
            elif name == "payload_json":
                payload = _loads(value.encode())
            else:
                fields[name] = value
        await form.close()
        return _Body(payload if payload is not None else fields, files)
    return _Body(_loads(raw), [])


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise DiscordError(400, 50109, "The request body contains invalid JSON.") from exc


# --------------------------------------------------------------------------- handler plumbing

Handler = Callable[[Request, "DiscordEmulator", dict[str, str]], Awaitable[Response]]


def _route(path: str, handler: Handler, emulator: DiscordEmulator, methods: list[str]) -> Route:
    async def endpoint(request: Request) -> Response:
        headers: dict[str, str] = dict(VIA)
        try:
            return await handler(request, emulator, headers)
        except _RateLimited as limited:
            decision = limited.decision
            body = {
                "message": "You are being rate limited.",
                "retry_after": decision.retry_after,
                "global": decision.is_global,
            }
            if decision.is_global:
                headers.update(
                    {
                        "Retry-After": decision.limited_headers()["Retry-After"],
                        "X-RateLimit-Global": "true",
                        "X-RateLimit-Scope": "global",
                    }
                )
            else:
                headers.update(decision.limited_headers())
            return JSONResponse(body, status_code=429, headers=headers)
        except DiscordError as error:
            return JSONResponse(error.body, status_code=error.status, headers=headers)
        except DiscordValidationError as error:
            return JSONResponse(error.body, status_code=error.status, headers=headers)

    return Route(path, endpoint, methods=methods)


def _limit(
    emulator: DiscordEmulator, headers: dict[str, str], route: str, major: str, limit: Limit, *, scope: str = "user"
) -> None:
    decision = emulator._limiter.hit(route, major, limit, scope=scope)
    if not decision.allowed:
        raise _RateLimited(decision)
    if scope != "shared":  # a shared cap is not the route's own bucket; keep the route's headers
        headers.update(decision.headers())


def _note_payload(request: Request, payload: Any) -> None:
    notes = request.scope.get(EDGE_NOTES)
    if notes is not None:
        notes["payload"] = payload


def _dropping(request: Request) -> bool:
    return bool(request.scope.get(EDGE_NOTES, {}).get("drop"))


def _record_files(emulator: DiscordEmulator, body: _Body) -> tuple[RecordedFile, ...]:
    return tuple(
        RecordedFile(
            field=name, filename=filename, content_type=ctype, data=data, attachment_id=emulator._state.snowflake()
        )
        for name, filename, ctype, data in body.files
    )


def _resolve_execute(emulator: DiscordEmulator, webhook_id: str, token: str) -> Webhook | Interaction:
    """Which registration a ``/webhooks/{id}/{token}`` call addresses, or Discord's refusal."""
    if not webhook_id.isdigit():
        raise _snowflake_error("webhook_id", webhook_id)
    state = emulator._state
    with state.lock:
        interaction = state.interactions.get((webhook_id, token))
        if interaction is not None:
            if emulator.clock.now() - interaction.created_at >= emulator.interaction_ttl:
                raise DiscordError(401, 50027, "Invalid Webhook Token")
            return interaction
        hook = state.webhooks.get(webhook_id)
        if hook is None:
            if any(app_id == webhook_id for app_id, _ in state.interactions):
                raise DiscordError(401, 50027, "Invalid Webhook Token")
            if not (emulator.auto_create_webhooks and token and webhook_id not in state.removed_webhooks):
                raise DiscordError(404, 10015, "Unknown Webhook")
            hook = Webhook(id=webhook_id, token=token, channel_id=state.snowflake())
            state.webhooks[webhook_id] = hook
        if not hmac.compare_digest(hook.token.encode(), token.encode()):
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        if hook.refusal is not None:
            status, code, message = hook.refusal
            raise DiscordError(status, code, message)
        return hook


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


# --------------------------------------------------------------------------- webhooks


async def execute_webhook(request: Request, emulator: DiscordEmulator, headers: dict[str, str]) -> Response:
    """POST /webhooks/{id}/{token}: execute a webhook, or send an interaction follow-up."""
    webhook_id, token = request.path_params["webhook_id"], request.path_params["token"]
    limits = emulator.rate_limits
    _limit(emulator, headers, "POST /webhooks/{webhook_id}/{token}", f"{webhook_id}/{token}", limits.webhook)
    target = _resolve_execute(emulator, webhook_id, token)
    thread_id = request.query_params.get("thread_id")
    if thread_id is not None and not thread_id.isdigit():
        raise _snowflake_error("thread_id", thread_id)
    if isinstance(target, Webhook) and limits.webhook_channel is not None:
        _limit(
            emulator, headers, "webhook channel", thread_id or target.channel_id, limits.webhook_channel, scope="shared"
        )
    body = await _parse_body(request, emulator)
    _note_payload(request, body.payload)
    kind: MessageKind = "interaction" if isinstance(target, Interaction) else "webhook"
    validate_message(body.payload, body.sizes(), kind=kind, limits=emulator.limits)
    state = emulator._state
    channel_id = thread_id or (target.channel_id if isinstance(target, Webhook) else target.application_id)
    message = RecordedMessage(
        id=state.snowflake(),
        kind=kind,
        channel_id=channel_id,
        webhook_id=webhook_id,
        thread_id=thread_id,
        payload=body.payload,
        original_payload=body.payload,
        files=_record_files(emulator, body),
        created_at=emulator.clock.now(),
        response_dropped=_dropping(request),
    )
    state.store_message(message)
    # Follow-ups always return the message; plain webhooks only with ?wait=true.
    if kind == "interaction" or _truthy(request.query_params.get("wait")):
        return JSONResponse(message_object(message, emulator), headers=headers)
    return Response(status_code=204, headers=headers)


def _find_webhook_message(emulator: DiscordEmulator, webhook_id: str, message_id: str) -> RecordedMessage:
    with emulator._state.lock:
        message = emulator._state.messages.get(message_id)
    if message is None or message.deleted or message.webhook_id != webhook_id:
        raise DiscordError(404, 10008, "Unknown Message")
    return message


async def webhook_message(request: Request, emulator: DiscordEmulator, headers: dict[str, str]) -> Response:
    """GET/PATCH/DELETE /webhooks/{id}/{token}/messages/{message_id}: read, edit in place, delete."""
    webhook_id, token = request.path_params["webhook_id"], request.path_params["token"]
    message_id = request.path_params["message_id"]
    _limit(
        emulator,
        headers,
        f"{request.method} /webhooks/{{webhook_id}}/{{token}}/messages/{{message_id}}",
        f"{webhook_id}/{token}",
        emulator.rate_limits.webhook_message,
    )
    _resolve_execute(emulator, webhook_id, token)
    message = _find_webhook_message(emulator, webhook_id, message_id)
    state = emulator._state
    if request.method == "GET":
        return JSONResponse(message_object(message, emulator), headers=headers)
    if request.method == "DELETE":
        state.update_message(message_id, deleted=True)
        return Response(status_code=204, headers=headers)
    body = await _parse_body(request, emulator)
    _note_payload(request, body.payload)
    patch = body.payload
    if not isinstance(patch, dict):
        raise DiscordError(400, 50109, "The request body contains invalid JSON.")
    new_files = _record_files(emulator, body)
    kept = message.files
    if isinstance(patch.get("attachments"), list):
        # On edit, `attachments` lists what stays: existing ids, plus new uploads.
        keep_ids = {str(a.get("id")) for a in patch["attachments"] if isinstance(a, dict)}
        kept = tuple(f for f in message.files if f.attachment_id in keep_ids)
    files = kept + new_files
    merged = {**message.payload, **patch}
    validate_message(merged, [(f.field, f.size) for f in files], kind="edit", limits=emulator.limits)
    now = emulator.clock.now()
    updated = state.update_message(
        message_id,
        payload=merged,
        files=files,
        edited_at=now,
        edits=(*message.edits, MessageEdit(payload=patch, files=new_files, at=now)),
    )
    assert updated is not None  # deleted between lookup and update: not possible, one writer per id
    return JSONResponse(message_object(updated, emulator), headers=headers)


# --------------------------------------------------------------------------- bot routes


def _bot(request: Request, emulator: DiscordEmulator, headers: dict[str, str]) -> str:
    """Authenticate ``Authorization: Bot <token>`` and apply the per-bot global limit."""
    header = request.headers.get("authorization", "")
    expected = emulator._state.bot_token
    scheme, _, token = header.partition(" ")
    if scheme != "Bot" or expected is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise DiscordError(401, 0, "401: Unauthorized")
    decision = emulator._limiter.hit("global", token, emulator.rate_limits.global_per_bot, scope="global")
    if not decision.allowed:
        raise _RateLimited(decision)
    return token


async def open_dm(request: Request, emulator: DiscordEmulator, headers: dict[str, str]) -> Response:
    """POST /users/@me/channels {recipient_id}: the DM channel, the same one for the same user."""
    token = _bot(request, emulator, headers)
    _limit(emulator, headers, "POST /users/@me/channels", token, emulator.rate_limits.dm_open)
    body = await _parse_body(request, emulator)
    _note_payload(request, body.payload)
    recipient = body.payload.get("recipient_id") if isinstance(body.payload, dict) else None
    if recipient is None:
        raise DiscordError(
            400,
            50035,
            "Invalid Form Body",
            errors={"recipient_id": {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]}},
        )
    recipient = str(recipient)
    if not recipient.isdigit():
        raise _snowflake_error("recipient_id", recipient)
    state = emulator._state
    with state.lock:
        channel_id = state.dm_channels.get(recipient)
        if channel_id is None:
            channel_id = state.snowflake()
            state.dm_channels[recipient] = channel_id
            state.channels[channel_id] = Channel(id=channel_id, recipient_id=recipient)
    return JSONResponse(
        {
            "id": channel_id,
            "type": 1,
            "last_message_id": None,
            "flags": 0,
            "recipients": [
                {
                    "id": recipient,
                    "username": f"user{recipient[-4:]}",
                    "discriminator": "0",
                    "global_name": None,
                    "avatar": None,
                }
            ],
        },
        headers=headers,
    )


async def create_channel_message(request: Request, emulator: DiscordEmulator, headers: dict[str, str]) -> Response:
    """POST /channels/{id}/messages: a bot message; ``enforce_nonce`` makes a retry idempotent."""
    _bot(request, emulator, headers)
    channel_id = request.path_params["channel_id"]
    if not channel_id.isdigit():
        raise _snowflake_error("channel_id", channel_id)
    _limit(emulator, headers, "POST /channels/{channel_id}/messages", channel_id, emulator.rate_limits.channel_messages)
    state = emulator._state
    with state.lock:
        channel = state.channels.get(channel_id)
        closed = channel is not None and channel.recipient_id in state.closed_dms
    if channel is None:
        raise DiscordError(404, 10003, "Unknown Channel")
    if closed:
        raise DiscordError(403, 50007, "Cannot send messages to this user")
    body = await _parse_body(request, emulator)
    _note_payload(request, body.payload)
    validate_message(body.payload, body.sizes(), kind="channel", limits=emulator.limits)
    payload = body.payload
    nonce = payload.get("nonce")
    nonce_key = (channel_id, str(nonce)) if nonce is not None and payload.get("enforce_nonce") else None
    now = emulator.clock.now()
    with state.lock:
        if nonce_key is not None:
            seen = state.nonces.get(nonce_key)
            if seen is not None and now - seen[1] < emulator.nonce_window:
                existing = state.messages.get(seen[0])
                if existing is not None:
                    state.counts["nonce_replays"] += 1
                    return JSONResponse(message_object(existing, emulator), headers=headers)
        message = RecordedMessage(
            id=state.snowflake(),
            kind="channel",
            channel_id=channel_id,
            webhook_id=None,
            thread_id=None,
            payload=payload,
            original_payload=payload,
            files=_record_files(emulator, body),
            created_at=now,
            nonce=str(nonce) if nonce is not None else None,
            response_dropped=_dropping(request),
        )
        state.store_message(message)
        if nonce_key is not None:
            state.nonces[nonce_key] = (message.id, now)
    return JSONResponse(message_object(message, emulator), headers=headers)


def api_routes(emulator: DiscordEmulator, prefix: str = "/api/v10") -> list[Route]:
    """The Discord routes, bound to one emulator."""
    return [
        _route(f"{prefix}/webhooks/{{webhook_id}}/{{token}}", execute_webhook, emulator, ["POST"]),
        _route(
            f"{prefix}/webhooks/{{webhook_id}}/{{token}}/messages/{{message_id}}",
            webhook_message,
            emulator,
            ["GET", "PATCH", "DELETE"],
        ),
        _route(f"{prefix}/users/@me/channels", open_dm, emulator, ["POST"]),
        _route(f"{prefix}/channels/{{channel_id}}/messages", create_channel_message, emulator, ["POST"]),
    ]
