"""The admin area's plumbing: templates, the route class that adds security headers and maps
errors to pages, and the guard that demands a session (and a CSRF token on every POST).

Exception tree, all turned into pages by ``AdminRoute``::

    AdminRedirect(url)      no session on a page → 303 to the login page
    AdminForbidden(message) no session or no/wrong CSRF token on an action → 403
    store.NotFound          → 404 page
    store.StoreUnavailable  → 503 page with Retry-After
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import jinja2
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from app.admin import present
from app.admin.security import SESSION_COOKIE, AdminSession, LoginLimiter, open_session
from app.deps import runtime_of
from schemas.clock import utcnow
from schemas.targets import destination_label
from store.admin import AdminStore
from store.errors import NotFound, StoreUnavailable

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
RETRY_AFTER_S = 5


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(markdown=present.markdown, size=present.human_size)
    env.globals.update(describe_error=present.describe_error, age=present.age, destination_label=destination_label)
    return env


templates = Jinja2Templates(env=_environment())


class AdminRedirect(Exception):
    """A page asked for without a session: send the browser to ``url``."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class AdminForbidden(Exception):
    """An action refused (no session, or a missing/wrong CSRF token)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def admin_store(request: Request) -> AdminStore:
    """The admin page's store, built once in ``Runtime``."""
    return runtime_of(request).admin


def login_limiter(request: Request) -> LoginLimiter:
    """The process's failed-login limiter, created on first use."""
    state = request.app.state
    if not hasattr(state, "admin_login_limiter"):
        state.admin_login_limiter = LoginLimiter()
    return cast(LoginLimiter, state.admin_login_limiter)


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a template with what every page needs (session for the CSRF field, the clock)."""
    values = {"session": getattr(request.state, "admin", None), "now": utcnow(), "done": None, "active": "",
              **context}
    return templates.TemplateResponse(request, template, values, status_code=status)


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    """A friendly error page in the admin layout."""
    return page(request, "error.html", status, title=title, message=message)


def safe_next(target: str | None) -> str:
    """Only ever redirect inside the admin area (no open redirect through ``?next=``)."""
    if target and target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return "/admin"


async def require_admin(request: Request) -> AdminSession:
    """The router-wide guard: a valid session, and on POST the session's CSRF token."""
    session = await run_in_threadpool(open_session, runtime_of(request), request.cookies.get(SESSION_COOKIE))
    if session is None:
        if request.method in ("GET", "HEAD"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise AdminRedirect(f"/admin/login?next={quote(target, safe='')}")
        raise AdminForbidden("Your session has expired or you are not logged in. Log in and try again.")
    if request.method == "POST":
        presented = (await request.form()).get("csrf")
        if not session.csrf_ok(presented if isinstance(presented, str) else None):
            raise AdminForbidden("This form is missing its security token (CSRF). Reload the page and try again.")
    request.state.admin = session
    return session


class AdminRoute(APIRoute):
    """Adds the security headers to every admin response and turns known errors into pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler (dependencies run inside it, so the guard's errors land here)."""
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response = await handler(request)
            except AdminRedirect as exc:
                response = RedirectResponse(exc.url, status_code=303)
            except AdminForbidden as exc:
                response = error_page(request, 403, "Not allowed", exc.message)
            except NotFound:
                response = error_page(request, 404, "Not found", "There is no such result (it may have been "
                                      "deleted or purged by retention).")
            except RequestValidationError:
                response = error_page(request, 400, "Bad request", "Some part of this address is not valid.")
            except StoreUnavailable:
                response = error_page(request, 503, "Store unavailable", "The result store cannot be reached "
                                      "right now. Nothing is lost; try again in a few seconds.")
                response.headers["Retry-After"] = str(RETRY_AFTER_S)
            response.headers.update(SECURITY_HEADERS)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return guarded
