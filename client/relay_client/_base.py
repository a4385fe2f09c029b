"""What the sync and async clients share and that does no I/O: configuration, bodies, answers."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from relay_client._backoff import Backoff, retriable, retry_after
from relay_client._exceptions import RelayUnavailable, api_error
from relay_client._models import Receipt, Result
from relay_client._spool import DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES, Spool

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
DEFAULT_MAX_RETRIES = 3
FLUSH_IDLE_S = 2.0  # how often an idle flusher looks at the spool for entries other processes left
USER_AGENT = "result-relay-client/0.1"


@dataclass(frozen=True)
class ApiKey:
    """The producer key; its ``repr`` never shows it, so it cannot leak into a log line."""

    value: str

    def __repr__(self) -> str:
        return "ApiKey('••••')"

    __str__ = __repr__


def new_idempotency_key() -> str:
    """A fresh key for one ``send``: reused on every retry of it and by the spool's flusher."""
    return f"rc-{uuid.uuid4().hex}"


def as_payload(result: Result | Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of ``POST /v1/results`` (a ``Result`` is a dict already; a copy is taken)."""
    payload: dict[str, Any] = json.loads(json.dumps(dict(result)))  # a private JSON-clean copy, stored as is
    if not payload.get("route"):
        raise ValueError("a result needs a route: e.g. route=[webhook(url)] or [dm(user_id)]")
    return payload


class Outcome:
    """The verdict on one attempt: done (``response``), try again (``delay``) or raised."""

    __slots__ = ("response", "error", "retry_after")

    def __init__(self, response: httpx.Response | None, error: RelayUnavailable | None,
                 retry_after: float | None = None) -> None:
        self.response, self.error, self.retry_after = response, error, retry_after


def judge(response: httpx.Response) -> Outcome:
    """2xx is done; 429/5xx is "again"; any other 4xx raises ``RelayAPIError`` with the relay's body."""
    status = response.status_code
    if status < 400:
        return Outcome(response, None)
    if retriable(status):
        return Outcome(None, RelayUnavailable(f"the relay answered {status} {_error_text(response)}", status=status),
                       retry_after(response))
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    raise api_error(status, body)


def transport_failure(exc: httpx.TransportError, url: str) -> Outcome:
    """A connection error or timeout as "again"."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "could not be reached"
    err = RelayUnavailable(f"the relay at {url} {kind}: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return Outcome(None, err)


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase


def receipt(response: httpx.Response, key: str) -> Receipt:
    """The ``Receipt`` of a 202."""
    data = response.json()
    return Receipt(id=data["id"], spooled=False, idempotency_key=key, status=data.get("status"),
                   replayed=response.headers.get("idempotent-replayed") == "true")


@dataclass
class Config:
    """Everything both clients are built from (``RelayClient.__init__``'s arguments, checked)."""

    base_url: str
    api_key: ApiKey
    timeout: httpx.Timeout
    max_retries: int
    backoff: Backoff
    spool: Spool | None

    @classmethod
    def build(cls, base_url: str | None, api_key: str | None, *, spool: str | os.PathLike[str] | Spool | None,
              timeout: float | httpx.Timeout | None, max_retries: int, backoff: Backoff | None,
              spool_max_bytes: int, spool_max_age: float) -> Config:
        """Fill in ``RELAY_URL`` / ``RELAY_KEY`` from the environment and open the spool."""
        url = base_url or os.environ.get("RELAY_URL")
        key = api_key or os.environ.get("RELAY_KEY")
        if not url or not key:
            raise ValueError("the relay's base_url and api_key are required (or RELAY_URL and RELAY_KEY)")
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if isinstance(spool, (str, os.PathLike)):
            spool = Spool(spool, max_bytes=spool_max_bytes, max_age=spool_max_age)
        to = timeout if isinstance(timeout, httpx.Timeout) else (
            DEFAULT_TIMEOUT if timeout is None else httpx.Timeout(timeout))
        return cls(url.rstrip("/"), ApiKey(key), to, max_retries, backoff or Backoff(), spool)

    def headers(self) -> dict[str, str]:
        """Headers of every request."""
        return {"Authorization": f"Bearer {self.api_key.value}", "User-Agent": USER_AGENT}


def result_request(payload: dict[str, Any], has_files: bool) -> dict[str, Any]:
    """httpx keyword arguments for the body: JSON, or a ``payload_json`` part beside the files."""
    if has_files:
        return {"data": {"payload_json": json.dumps(payload, separators=(",", ":"))}}
    return {"json": payload}


SPOOL_DEFAULTS = {"spool_max_bytes": DEFAULT_MAX_BYTES, "spool_max_age": DEFAULT_MAX_AGE}
