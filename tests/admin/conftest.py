"""Admin fixtures: a relay with a known admin token, a logged-in browser-like client, store pokes.

The fast tests set a result's state through the store (what the delivery engine would have
written), so they check the page without waiting on deliveries; the browser tests let the real
engine deliver to the Discord emulator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime

import httpx
import pytest
from sqlalchemy import select, update

from schemas.clock import utcnow
from schemas.tables import Delivery, DeliveryEvent, Destination, Result
from tests.conftest import Relay

ADMIN_TOKEN = "admin-test-token-0123456789"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_NONCE = re.compile(r'name="nonce" value="([^"]+)"')


class AdminClient:
    """An HTTP client that logs in through the form like a browser and keeps its CSRF token."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.http = httpx.Client(base_url=relay.url, timeout=30, follow_redirects=False)
        self.csrf = ""

    def login_attempt(self, token: str, *, next_url: str = "/admin") -> httpx.Response:
        """GET the form (for its nonce cookie) and POST the token."""
        form = self.http.get("/admin/login")
        nonce = _NONCE.search(form.text)
        assert nonce, form.text
        return self.http.post("/admin/login", data={"token": token, "nonce": nonce.group(1), "next": next_url})

    def login(self, token: str = ADMIN_TOKEN) -> AdminClient:
        """Log in and read the session's CSRF token from the first page."""
        resp = self.login_attempt(token)
        assert resp.status_code == 303, resp.text
        self.csrf = csrf_of(self.get("/admin").text)
        return self

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        """GET a page."""
        return self.http.get(path, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, data: dict | None = None, *, csrf: bool = True) -> httpx.Response:
        """POST a form, with the session's CSRF token unless told not to."""
        fields = dict(data or {})
        if csrf:
            fields["csrf"] = self.csrf
        return self.http.post(path, data=fields)


def csrf_of(html: str) -> str:
    """The CSRF token of a page's forms."""
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


@pytest.fixture
def admin_relay(make_relay: Callable[..., Relay]) -> Relay:
    """A relay with ``RELAY_ADMIN_TOKEN`` set (workers off)."""
    return make_relay(admin_token=ADMIN_TOKEN)


@pytest.fixture
def admin(admin_relay: Relay) -> Iterator[AdminClient]:
    """A logged-in admin client."""
    client = AdminClient(admin_relay).login()
    yield client
    client.http.close()


def mark_undelivered(relay: Relay, result_id: str, *, status: int = 404, code: int | None = 10015,
                     message: str = "Unknown Webhook", outcome: str = "failed", at: datetime | None = None) -> None:
    """Record what the engine writes when a result's only destination failed for good."""
    now = at or utcnow()
    with relay.runtime.db.session(write=True) as session:
        delivery = session.scalars(select(Delivery).where(Delivery.result_id == result_id)).one()
        delivery.status, delivery.attempts = "failed", delivery.attempts + 1
        delivery.last_error_status, delivery.last_error_code, delivery.last_error_message = status, code, message
        session.add(DeliveryEvent(delivery_id=delivery.id, at=now, outcome=outcome, http_status=status,
                                  discord_code=code, message=message))
        session.execute(update(Result).where(Result.id == result_id).values(status="undelivered", finished_at=now))


def disable_destination(relay: Relay, key: str, reason: str) -> None:
    """What the engine does after a 404 Unknown Webhook."""
    with relay.runtime.db.session(write=True) as session:
        session.execute(update(Destination).where(Destination.key == key)
                        .values(disabled=True, disabled_reason=reason, disabled_at=utcnow()))
