"""Bot routes: open a DM channel, post a channel message (with ``enforce_nonce``).

Bot calls also count against the per-token global limit, which webhooks do not."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._discord_api import (
    DiscordError,
    _dropping,
    _limit,
    _note_payload,
    _parse_body,
    _RateLimited,
    _record_files,
    _snowflake_error,
    message_object,
)
from ._discord_state import Channel, RecordedMessage
from .discord_validation import validate_message

if TYPE_CHECKING:
    from .discord import DiscordEmulator


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
