"""HTTP errors and their one body shape, ``{"error": {"code", "message", "details"}}``.

Exception tree (the store's and validation's errors are translated here, at the boundary)::

    ApiError(status, code, message, details)     raised by routes and parsers
    store.StoreUnavailable                       → 503 + Retry-After
    store.NotFound                               → 404
    store.IdempotencyConflict                    → 409
    fastapi RequestValidationError / HTTPException → 4xx in the same shape
    anything else                                → 500, logged (the outermost boundary)
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from store.errors import IdempotencyConflict, NotFound, StoreUnavailable

log = logging.getLogger("relay.api")
RETRY_AFTER_S = 5


class ApiError(Exception):
    """A known failure with its HTTP status and a message that names the problem."""

    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The error body every failure answers with."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


def validation_details(exc: ValidationError | RequestValidationError, prefix: tuple[Any, ...] = ()) -> list[dict[str,
                                                                                                                 Any]]:
    """Pydantic errors as ``[{"field": "route.0.url", "message": ...}]`` without echoing the input."""
    out = []
    for err in exc.errors():
        loc = [str(p) for p in (*prefix, *err["loc"]) if p not in ("body",)]
        # Tagged unions add the tag to the path ("route.0.webhook.url"); drop it for readability.
        loc = [p for p in loc if p not in ("webhook", "interaction", "dm", "function-after[_plain_name(), str]")]
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":
            tag = (err.get("ctx") or {}).get("tag")
            message = f"unknown destination type {tag!r}; expected webhook, interaction or dm"
        elif err["type"] == "extra_forbidden":
            message = "is not a known field"
        out.append({"field": ".".join(loc) or "body", "message": message})
    return out


def invalid(details: list[dict[str, Any]], status: int = 422) -> ApiError:
    """A 422 whose message names the first bad field and why."""
    first = details[0] if details else {"field": "body", "message": "is invalid"}
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ApiError(status, "invalid_request", f"{first['field']}: {first['message']}{more}", details)


def install_error_handlers(app: FastAPI) -> None:
    """Map every known failure to its status and body."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("store unavailable: %s", exc)
        return error_response(503, "store_unavailable", "the result store is unreachable; retry later",
                              headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, "not_found", f"no such result: {exc}")

    @app.exception_handler(IdempotencyConflict)
    async def _conflict(_: Request, exc: IdempotencyConflict) -> JSONResponse:
        return error_response(409, "idempotency_conflict",
                              "this Idempotency-Key was used with a different body", {"id": exc.result_id})

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = invalid(validation_details(exc))
        return error_response(err.status, err.code, err.message, err.details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route that matched the path only; a path
            # served by several routes (GET and DELETE /v1/results/{id}) allows all of theirs.
            headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
        return error_response(exc.status_code, code, str(exc.detail), headers=headers or None)


def allowed_methods(request: Request) -> list[str]:
    """Every method the API serves at this request's path, read from the app's OpenAPI document
    (built from the same route table; FastAPI nests included routers where Starlette cannot see)."""
    matches = []
    for template, operations in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), request.url.path):
            matches.append((template.count("{"), operations))
    if not matches:
        return []
    # The most literal template names the path (/v1/results/redeliver, not /v1/results/{result_id}).
    operations = min(matches, key=lambda match: match[0])[1]
    return sorted(m.upper() for m in operations if m in ("get", "put", "post", "delete", "patch"))
