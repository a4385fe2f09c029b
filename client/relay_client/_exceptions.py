"""The client's exceptions, one tree.

::

    RelayError
    ├── RelayUnavailable          the relay could not be reached or kept failing (connection
    │                             errors, timeouts, 429, 5xx) after the quick retries
    ├── RelayAPIError             the relay answered 4xx (not 429): the request itself is wrong;
    │   │                         carries the error body (code, message, field, details)
    │   ├── InvalidRequest        400 / 422: a field is invalid (``field`` names it)
    │   ├── AuthenticationError   401 / 403
    │   ├── NotFound              404
    │   ├── IdempotencyConflict   409: the key was used with a different body
    │   └── TooLarge              413
    ├── SpoolError                the local spool cannot take or keep a result
    │   └── SpoolFull             over ``spool_max_bytes``: raised instead of dropping anything
    └── WaitTimeout               ``wait()`` ran out of time before a final status

A ``RelayAPIError`` is never spooled: sending the same request later would fail the same way.
httpx's errors never escape: transports translate them here, ``raise … from exc``.
"""

from __future__ import annotations

from typing import Any


class RelayError(Exception):
    """Base of every error this package raises."""


class RelayUnavailable(RelayError):
    """The relay did not take the request after the retries (unreachable, timeouts, 429, 5xx)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RelayAPIError(RelayError):
    """A 4xx answer other than 429, with the relay's error body."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details

    @property
    def field(self) -> str | None:
        """The first invalid field the relay named (``route.0.url``), if any."""
        details = self.details
        if isinstance(details, list) and details and isinstance(details[0], dict):
            return details[0].get("field")
        if isinstance(details, dict):
            return details.get("field")
        return None


class InvalidRequest(RelayAPIError):
    """400 / 422: the body names the field and why."""


class AuthenticationError(RelayAPIError):
    """401 / 403: the API key is missing, wrong or revoked."""


class NotFound(RelayAPIError):
    """404: no such result (or transcription)."""


class IdempotencyConflict(RelayAPIError):
    """409: this Idempotency-Key was already used with a different body."""


class TooLarge(RelayAPIError):
    """413: the request is over the relay's size limit."""


class SpoolError(RelayError):
    """The local spool cannot take or keep a result."""


class SpoolFull(SpoolError):
    """Taking this result would put the spool over ``spool_max_bytes``; nothing was dropped."""


class WaitTimeout(RelayError):
    """``wait()`` gave up before the result reached a final status."""


_BY_STATUS: dict[int, type[RelayAPIError]] = {400: InvalidRequest, 422: InvalidRequest, 401: AuthenticationError,
                                              403: AuthenticationError, 404: NotFound, 409: IdempotencyConflict,
                                              413: TooLarge}


def api_error(status: int, body: Any) -> RelayAPIError:
    """The most specific ``RelayAPIError`` for a 4xx answer and its (possibly non-JSON) body."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"code": "http_error", "message": str(body)[:500] or f"HTTP {status}"}
    cls = _BY_STATUS.get(status, RelayAPIError)
    return cls(status, str(error.get("code", "http_error")), str(error.get("message", "")), error.get("details"))
