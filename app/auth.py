"""Producer authentication: ``Authorization: Bearer <key>`` on every ``/v1`` route."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from app.errors import ApiError
from app.store import Producer

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="result-relay"'}


async def require_producer(request: Request) -> Producer:
    """The authenticated key and its tenant; 401 without a valid key, 403 for a revoked one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "missing bearer token: send Authorization: Bearer <producer key>",
                       headers=_CHALLENGE)
    keys = request.app.state.keys
    found = keys.cached(token.strip()) or await run_in_threadpool(keys.verify, token.strip())
    if found is None:
        raise ApiError(401, "unauthorized", "unknown producer key", headers=_CHALLENGE)
    producer, revoked = found
    if revoked:
        raise ApiError(403, "forbidden", "this producer key was revoked")
    return producer
