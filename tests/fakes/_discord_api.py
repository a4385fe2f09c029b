"""The emulated Discord routes under ``/api/v10``, and the plumbing they share.

Each handler follows Discord's order of checks (rate limit, authentication, existence, body
size, form body, emptiness) and answers with Discord's status, JSON code and headers. Every
answer carries the route's ``X-RateLimit-*`` headers and ``Via: 1.1 google`` like the real
thing, so the relay's header handling is exercised on successes and failures alike. The
handlers live in ``_discord_webhooks`` (webhooks, follow-ups) and ``_discord_bot`` (DMs).
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
from ._discord_state import Interaction, RecordedFile, RecordedMessage, Webhook
from .discord_validation import DiscordValidationError

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
    """A refused request; ``route_headers`` are the route's own bucket headers for a ``shared`` refusal."""

    def __init__(self, decision: RateLimitDecision, route_headers: dict[str, str] | None = None) -> None:
        super().__init__("rate limited")
        self.decision = decision
        self.route_headers = route_headers


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
            if limited.route_headers is not None:
                # A shared cap (a channel's, across its webhooks): the route's own bucket still shows
                # requests left; only the scope and the long Retry-After tell the client what happened.
                headers.update(limited.route_headers)
                headers["Retry-After"] = decision.limited_headers()["Retry-After"]
                headers["X-RateLimit-Scope"] = decision.scope
            elif decision.is_global:
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
        raise _RateLimited(decision, dict(headers) if scope == "shared" else None)
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
            hook = Webhook(id=webhook_id, token=token, channel_id=state.snowflake(), guild_id=emulator.guild_id)
            state.webhooks[webhook_id] = hook
        if not hmac.compare_digest(hook.token.encode(), token.encode()):
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        if hook.refusal is not None:
            status, code, message = hook.refusal
            raise DiscordError(status, code, message)
        return hook


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def api_routes(emulator: DiscordEmulator, prefix: str = "/api/v10") -> list[Route]:
    """The Discord routes, bound to one emulator."""
    # Imported here: the handler modules build on the plumbing above.
    from ._discord_bot import create_channel_message, open_dm
    from ._discord_interactions import interaction_routes
    from ._discord_webhooks import execute_webhook, get_webhook, webhook_message

    return [
        *(_route(f"{prefix}{path}", handler, emulator, methods) for path, handler, methods in interaction_routes()),
        _route(f"{prefix}/webhooks/{{webhook_id}}/{{token}}", execute_webhook, emulator, ["POST"]),
        _route(f"{prefix}/webhooks/{{webhook_id}}/{{token}}", get_webhook, emulator, ["GET"]),
        _route(
            f"{prefix}/webhooks/{{webhook_id}}/{{token}}/messages/{{message_id}}",
            webhook_message,
            emulator,
            ["GET", "PATCH", "DELETE"],
        ),
        _route(f"{prefix}/users/@me/channels", open_dm, emulator, ["POST"]),
        _route(f"{prefix}/channels/{{channel_id}}/messages", create_channel_message, emulator, ["POST"]),
    ]
