"""``/_emulator/...``: the emulator's Python control surface, over HTTP.

A relay running in another process (the multi-process and chaos tests, ``bench/``) cannot
call the emulator's methods, so each of them has an HTTP twin here. Handlers only translate
JSON to a method call and back; the behaviour lives in :class:`~tests.fakes.discord.DiscordEmulator`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._discord_faults import FaultRule
from ._discord_ratelimit import Limit, RateLimits
from ._discord_state import RecordedFile, RecordedMessage, RejectedRequest
from .discord_validation import DiscordLimits

if TYPE_CHECKING:
    from .discord import DiscordEmulator

__all__ = ["control_routes", "message_to_json", "rejected_to_json"]


def _file_to_json(file: RecordedFile, include_bytes: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "field": file.field,
        "filename": file.filename,
        "content_type": file.content_type,
        "size": file.size,
        "sha256": hashlib.sha256(file.data).hexdigest(),
        "attachment_id": file.attachment_id,
    }
    if include_bytes:
        out["data_base64"] = base64.b64encode(file.data).decode()
    return out


def message_to_json(message: RecordedMessage, *, include_bytes: bool = False) -> dict[str, Any]:
    """A recorded message as JSON: the dataclass fields, files with sha256 (bytes on request)."""
    return {
        "id": message.id,
        "kind": message.kind,
        "channel_id": message.channel_id,
        "webhook_id": message.webhook_id,
        "thread_id": message.thread_id,
        "payload": message.payload,
        "original_payload": message.original_payload,
        "files": [_file_to_json(f, include_bytes) for f in message.files],
        "created_at": message.created_at,
        "edited_at": message.edited_at,
        "edits": [
            {"payload": e.payload, "files": [_file_to_json(f, include_bytes) for f in e.files], "at": e.at}
            for e in message.edits
        ],
        "deleted": message.deleted,
        "nonce": message.nonce,
        "response_dropped": message.response_dropped,
    }


def rejected_to_json(rejected: RejectedRequest) -> dict[str, Any]:
    """A rejection as JSON (the dataclass fields)."""
    return asdict(rejected)


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    data = await request.json()
    return data if isinstance(data, dict) else {}


def _bool(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _rate_limits_from(current: RateLimits, changes: dict[str, Any]) -> RateLimits:
    """``current`` with the limits named in ``changes`` replaced (``null`` turns one off)."""
    names = {f.name for f in fields(RateLimits)}
    unknown = set(changes) - names
    if unknown:
        raise ValueError(f"unknown rate limits {sorted(unknown)}; known: {sorted(names)}")
    values: dict[str, Any] = {name: getattr(current, name) for name in names}
    for name, value in changes.items():
        values[name] = Limit(requests=int(value["requests"]), per=float(value["per"])) if value else None
    return RateLimits(**values)


def control_routes(emulator: DiscordEmulator) -> list[Route]:
    """The ``/_emulator`` routes bound to one emulator."""

    async def add_webhook(request: Request) -> Response:
        body = await _json(request)
        webhook_id, token, url = emulator.add_webhook(
            webhook_id=body.get("webhook_id"),
            token=body.get("token"),
            channel_id=body.get("channel_id"),
            guild_id=body.get("guild_id"),
            forum=bool(body.get("forum")),
        )
        channel_id = emulator.webhook(webhook_id).channel_id  # type: ignore[union-attr]
        return JSONResponse({"id": webhook_id, "token": token, "url": url, "channel_id": channel_id}, status_code=201)

    async def remove_webhook(request: Request) -> Response:
        emulator.remove_webhook(request.path_params["webhook_id"])
        return Response(status_code=204)

    async def refuse_webhook(request: Request) -> Response:
        body = await _json(request)
        emulator.refuse_webhook(
            request.path_params["webhook_id"],
            status=int(body.get("status", 404)),
            code=int(body.get("code", 10015)),
            message=str(body.get("message", "Unknown Webhook")),
        )
        return Response(status_code=204)

    async def accept_webhook(request: Request) -> Response:
        emulator.accept_webhook(request.path_params["webhook_id"])
        return Response(status_code=204)

    async def add_interaction(request: Request) -> Response:
        body = await _json(request)
        url = emulator.add_interaction(str(body["application_id"]), str(body["token"]), body.get("created_at"))
        return JSONResponse({"url": url}, status_code=201)

    async def add_channel(request: Request) -> Response:
        body = await _json(request)
        return JSONResponse({"id": emulator.add_channel(body.get("channel_id"))}, status_code=201)

    async def bot_token(request: Request) -> Response:
        emulator.set_bot_token((await _json(request)).get("token"))
        return Response(status_code=204)

    async def close_dms(request: Request) -> Response:
        emulator.close_dms(request.path_params["user_id"])
        return Response(status_code=204)

    async def open_dms(request: Request) -> Response:
        emulator.open_dms(request.path_params["user_id"])
        return Response(status_code=204)

    async def messages(request: Request) -> Response:
        q = request.query_params
        found = emulator.messages(
            webhook_id=q.get("webhook_id"),
            channel_id=q.get("channel_id"),
            kind=q.get("kind"),
            include_deleted=_bool(q.get("include_deleted")),
        )
        include_bytes = _bool(q.get("include_bytes"))
        return JSONResponse({"messages": [message_to_json(m, include_bytes=include_bytes) for m in found]})

    async def rejected(request: Request) -> Response:
        return JSONResponse({"rejected": [rejected_to_json(r) for r in emulator.rejected]})

    async def counters(request: Request) -> Response:
        return JSONResponse(emulator.counters().to_dict())

    async def reset(request: Request) -> Response:
        emulator.reset()
        return Response(status_code=204)

    async def clear_records(request: Request) -> Response:
        emulator.clear_records()
        return Response(status_code=204)

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            body = await _json(request)
            allowed = {f.name for f in fields(FaultRule)} - {"fired"}
            try:
                rule = emulator.inject(**{k: v for k, v in body.items() if k in allowed})
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(rule.to_dict(), status_code=201)
        if request.method == "DELETE":
            emulator.clear_faults()
            return Response(status_code=204)
        return JSONResponse({"faults": [r.to_dict() for r in emulator.faults.rules()]})

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            body = await _json(request)
            if "offset" in body:
                emulator.clock.set_offset(float(body["offset"]))
            if "advance" in body:
                emulator.clock.advance(float(body["advance"]))
        return JSONResponse({"now": emulator.clock.now(), "offset": emulator.clock.offset})

    async def rate_limits(request: Request) -> Response:
        if request.method == "PUT":
            try:
                emulator.set_rate_limits(_rate_limits_from(emulator.rate_limits, await _json(request)))
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(asdict(emulator.rate_limits))

    async def limits(request: Request) -> Response:
        if request.method == "PUT":
            try:
                emulator.set_limits(DiscordLimits(**{**asdict(emulator.limits), **await _json(request)}))
            except TypeError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(asdict(emulator.limits))

    p = "/_emulator"
    return [
        Route(f"{p}/webhooks", add_webhook, methods=["POST"]),
        Route(f"{p}/webhooks/{{webhook_id}}", remove_webhook, methods=["DELETE"]),
        Route(f"{p}/webhooks/{{webhook_id}}/refuse", refuse_webhook, methods=["POST"]),
        Route(f"{p}/webhooks/{{webhook_id}}/accept", accept_webhook, methods=["POST"]),
        Route(f"{p}/interactions", add_interaction, methods=["POST"]),
        Route(f"{p}/channels", add_channel, methods=["POST"]),
        Route(f"{p}/bot_token", bot_token, methods=["PUT"]),
        Route(f"{p}/users/{{user_id}}/close_dms", close_dms, methods=["POST"]),
        Route(f"{p}/users/{{user_id}}/open_dms", open_dms, methods=["POST"]),
        Route(f"{p}/messages", messages, methods=["GET"]),
        Route(f"{p}/rejected", rejected, methods=["GET"]),
        Route(f"{p}/counters", counters, methods=["GET"]),
        Route(f"{p}/reset", reset, methods=["POST"]),
        Route(f"{p}/clear_records", clear_records, methods=["POST"]),
        Route(f"{p}/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route(f"{p}/clock", clock, methods=["GET", "POST"]),
        Route(f"{p}/rate_limits", rate_limits, methods=["GET", "PUT"]),
        Route(f"{p}/limits", limits, methods=["GET", "PUT"]),
    ]
