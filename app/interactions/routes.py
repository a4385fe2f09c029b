"""``POST /discord/interactions``: Discord's Interactions Endpoint URL for the ``/results`` command.

The signature is checked on the raw bytes before anything is parsed; a bad or missing one is a
401 and touches nothing (Discord probes with deliberately bad ones before it saves the URL).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse, Response

from app.errors import ApiError
from app.interactions.service import INTERACTIONS, BadInteraction, InteractionService
from app.interactions.signature import BadSignature

router = APIRouter(tags=["discord"])

#: Discord's interactions are small JSON documents; anything much larger is not one.
MAX_INTERACTION_BYTES = 256 * 1024


async def _bounded_body(request: Request) -> bytes:
    """The raw body, refused (413) past ``MAX_INTERACTION_BYTES`` before more of it is read:
    the endpoint is open to the internet, and nothing unsigned may make the relay buffer megabytes."""
    too_large = ApiError(413, "too_large", f"an interaction is at most {MAX_INTERACTION_BYTES} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_INTERACTION_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_INTERACTION_BYTES:
            raise too_large
    return bytes(body)


@router.post("/discord/interactions", include_in_schema=False)
async def discord_interactions(request: Request, background: BackgroundTasks) -> Response:
    """Verify, answer within Discord's 3 seconds, and finish deferred answers in the background."""
    service: InteractionService | None = getattr(request.app.state, "interactions", None)
    if service is None:
        raise ApiError(404, "not_configured", "the Discord interactions endpoint is off: set "
                       "RELAY_DISCORD_APPLICATION_ID and RELAY_DISCORD_PUBLIC_KEY")
    body = await _bounded_body(request)
    try:
        service.verify(signature=request.headers.get("x-signature-ed25519"),
                       timestamp=request.headers.get("x-signature-timestamp"), body=body)
    except BadSignature as exc:
        INTERACTIONS.labels(type="unknown", outcome="bad_signature").inc()
        raise ApiError(401, "invalid_signature", f"invalid request signature: {exc}") from None
    try:
        interaction = json.loads(body)
        if not isinstance(interaction, dict):
            raise BadInteraction("the body is not a JSON object")
        reply, later = await service.answer(interaction)
    except (ValueError, UnicodeDecodeError) as exc:  # BadInteraction and JSON errors alike
        INTERACTIONS.labels(type="unknown", outcome="invalid").inc()
        raise ApiError(400, "invalid_interaction", f"not an interaction this relay answers: {exc}") from None
    if later is not None:
        background.add_task(later)
    return JSONResponse(reply)
