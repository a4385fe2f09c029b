"""Webhook routes: execute (and interaction follow-ups, which share the URL shape), read,
edit in place, delete. Follow-ups differ in two ways that matter to the relay: they always
return the message, and their token dies ``interaction_ttl`` after creation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._discord_api import (
    DiscordError,
    _dropping,
    _limit,
    _note_payload,
    _parse_body,
    _record_files,
    _resolve_execute,
    _snowflake_error,
    _truthy,
    message_object,
)
from ._discord_interactions import LOADING
from ._discord_state import Interaction, MessageEdit, RecordedMessage, Thread, Webhook
from .discord_validation import MessageKind, validate_message

if TYPE_CHECKING:
    from .discord import DiscordEmulator


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
        # Discord's hidden cap on webhook posts per channel, shared by every webhook of the channel
        # (threads of a forum count toward their forum). Its 429 keeps the webhook's own headers.
        _limit(emulator, headers, "webhook channel", target.channel_id, limits.webhook_channel, scope="shared")
    body = await _parse_body(request, emulator)
    _note_payload(request, body.payload)
    kind: MessageKind = "interaction" if isinstance(target, Interaction) else "webhook"
    validate_message(body.payload, body.sizes(), kind=kind, limits=emulator.limits)
    state = emulator._state
    thread_name = body.payload.get("thread_name") if isinstance(body.payload, dict) else None
    message_id = state.snowflake()
    if isinstance(target, Webhook):
        thread_id = _thread_of(emulator, target, thread_id, thread_name, body.payload, message_id)
    # A follow-up posts into the channel its command was used in (the application id stands in
    # for tokens registered without one).
    home = target.channel_id if isinstance(target, Webhook) else (target.channel_id or target.application_id)
    channel_id = thread_id or home
    message = RecordedMessage(
        id=message_id,
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


def _thread_of(
    emulator: DiscordEmulator,
    hook: Webhook,
    thread_id: str | None,
    thread_name: object,
    payload: dict,
    message_id: str,
) -> str | None:
    """The thread a webhook message lands in, creating a forum post for ``thread_name``; Discord's refusals."""
    named = isinstance(thread_name, str) and thread_name != ""
    if hook.forum:
        if thread_id is None and not named:
            raise DiscordError(400, 220001, "Webhooks posted to forum channels must have a thread_name or thread_id")
        if thread_id is not None and named:
            raise DiscordError(400, 220002, "Webhooks posted to forum channels cannot have both a thread_name and "
                               "thread_id")
    elif named:
        raise DiscordError(400, 220003, "Webhooks can only create threads in forum channels")
    state = emulator._state
    with state.lock:
        if thread_id is not None:
            thread = state.threads.get(thread_id)
            if hook.forum and (thread is None or thread.parent_id != hook.channel_id):
                raise DiscordError(404, 10003, "Unknown Channel")
            return thread_id
        if not named:
            return None
        tags = tuple(str(t) for t in payload.get("applied_tags") or ())
        # A forum post's id is its starter message's id, as on Discord.
        state.threads[message_id] = Thread(id=message_id, parent_id=hook.channel_id, name=str(thread_name),
                                           applied_tags=tags)
    return message_id


async def get_webhook(request: Request, emulator: DiscordEmulator, headers: dict[str, str]) -> Response:
    """GET /webhooks/{id}/{token}: the webhook object (how a client checks a URL is alive)."""
    webhook_id, token = request.path_params["webhook_id"], request.path_params["token"]
    _limit(
        emulator, headers, "GET /webhooks/{webhook_id}/{token}", f"{webhook_id}/{token}", emulator.rate_limits.webhook
    )
    target = _resolve_execute(emulator, webhook_id, token)
    if isinstance(target, Interaction):
        raise DiscordError(404, 10015, "Unknown Webhook")  # follow-up tokens are not webhooks you can read
    return JSONResponse(
        {
            "id": target.id,
            "type": 1,
            "channel_id": target.channel_id,
            "guild_id": target.guild_id,
            "name": "Captain Hook",
            "avatar": None,
            "application_id": None,
            "token": target.token,
            "url": emulator.webhook_url(target.id, target.token),
        },
        headers=headers,
    )


def _find_webhook_message(
    emulator: DiscordEmulator, webhook_id: str, message_id: str, thread_id: str | None
) -> RecordedMessage:
    with emulator._state.lock:
        message = emulator._state.messages.get(message_id)
    if message is None or message.deleted or message.webhook_id != webhook_id:
        raise DiscordError(404, 10008, "Unknown Message")
    if message.thread_id is not None and message.thread_id != thread_id:
        # Discord looks a message up in the channel the call names: one in a thread needs ?thread_id=.
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
    target = _resolve_execute(emulator, webhook_id, token)
    if message_id == "@original":
        if not isinstance(target, Interaction):
            raise DiscordError(404, 10008, "Unknown Message")  # a plain webhook has no original message
        message_id = emulator.interactions.original_message_id(webhook_id, token)
    message = _find_webhook_message(emulator, webhook_id, message_id, request.query_params.get("thread_id"))
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
    if isinstance(message.payload.get("flags"), int) and message.payload["flags"] & LOADING:
        # Filling in a deferral: the "thinking" state ends, ephemeral stays what the deferral said.
        merged["flags"] = message.payload["flags"] & ~LOADING
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
