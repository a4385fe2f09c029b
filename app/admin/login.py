"""The admin routes reachable without a session: login and the vendored static files.

The login form carries its own CSRF token (a random nonce in a short-lived cookie, echoed in a
hidden field), so another site cannot log a browser in with an attacker's token. Failed logins
are rate limited per client address before the token is even compared.
"""

from __future__ import annotations

import hmac
import secrets
from functools import cache
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from app.admin.security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_TTL_S,
    check_token,
    credential_hash,
    open_session,
    start_session,
)
from app.admin.web import HERE, AdminRoute, error_page, login_limiter, page, safe_next
from app.deps import runtime_of

router = APIRouter(prefix="/admin", route_class=AdminRoute, include_in_schema=False)

STATIC_FILES = {"admin.css": "text/css; charset=utf-8", "admin.js": "text/javascript; charset=utf-8"}
LOGIN_NONCE_TTL_S = 3600


@cache
def _static(name: str) -> bytes:
    return (HERE / "static" / name).read_bytes()


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    """A vendored stylesheet or script (a fixed list: nothing else on disk is reachable)."""
    if name not in STATIC_FILES:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(_static(name), media_type=STATIC_FILES[name], headers={"Cache-Control": "public, max-age=3600"})


def _login_form(request: Request, *, status: int = 200, error: str | None = None, next_url: str = "/admin",
                configured: bool = True) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = page(request, "login.html", status, nonce=nonce, error=error, next_url=safe_next(next_url),
                    configured=configured)
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=LOGIN_NONCE_TTL_S, path="/admin/login", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.get("/login")
async def login_form(request: Request, next: str = "/admin") -> Response:
    """The login form (or straight to the page when the browser already has a session)."""
    runtime = runtime_of(request)
    if await run_in_threadpool(open_session, runtime, request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    cred = await run_in_threadpool(credential_hash, runtime)
    return _login_form(request, next_url=next, configured=cred is not None)


@router.post("/login")
async def login(
    request: Request, token: Annotated[str, Form()] = "", nonce: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/admin",
) -> Response:
    """Check the admin token; on success set the session cookie and go where the user was headed."""
    client = request.client.host if request.client else "unknown"
    limiter = login_limiter(request)
    wait = limiter.retry_after(client)
    if wait is not None:
        response = error_page(request, 429, "Too many attempts",
                              f"Too many failed logins from your address. Try again in {wait} seconds.")
        response.headers["Retry-After"] = str(wait)
        return response
    expected_nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not hmac.compare_digest(nonce.encode(), expected_nonce.encode()):
        return error_page(request, 403, "Not allowed",
                          "The login form expired or was not sent from this page. Reload it and try again.")
    cred = await run_in_threadpool(credential_hash, runtime_of(request))
    if cred is None or not check_token(token.strip(), cred):
        limiter.failed(client)
        return _login_form(request, status=401, error="That token is not the admin token.", next_url=next,
                           configured=cred is not None)
    limiter.succeeded(client)
    value = await run_in_threadpool(start_session, runtime_of(request), cred)
    done = RedirectResponse(safe_next(next), status_code=303)
    done.set_cookie(SESSION_COOKIE, value, max_age=SESSION_TTL_S, path="/admin", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    done.delete_cookie(LOGIN_COOKIE, path="/admin/login")
    return done
