"""Producer authentication: ``Authorization: Bearer <key>`` on every ``/v1`` route."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from app.errors import ApiError
from store.keys import KeyStore, Producer

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="result-relay"'}


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (the scheme in any case, RFC 7235), or None."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def authenticate(request: Request, keys: KeyStore) -> Producer:
    """The authenticated key and its tenant; 401 without a valid key, 403 for a revoked one."""
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, "unauthorized", "missing bearer token: send Authorization: Bearer <producer key>",
                       headers=_CHALLENGE)
    found = keys.cached(token) or await run_in_threadpool(keys.verify, token)
    if found is None:
        raise ApiError(401, "unauthorized", "unknown producer key", headers=_CHALLENGE)
    producer, revoked = found
    if revoked:
        raise ApiError(403, "forbidden", "this producer key was revoked")
    return producer
