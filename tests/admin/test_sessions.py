"""Admin sessions end when they should, on every replica: logout, token rotation, the login limit.

Two relays on one store stand for two replicas; a cookie copied out of one browser is replayed
from another client, as an attacker holding a stolen cookie would.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy import update

from app.admin import ensure_admin_token
from app.admin.security import SESSION_COOKIE
from schemas.tables import ConfigEntry
from store.admin import ADMIN_TOKEN_KEY
from store.keys import token_digest
from tests.admin.conftest import ADMIN_TOKEN, AdminClient
from tests.conftest import Relay, result_payload


def _replay(relay: Relay, cookie: str) -> httpx.Client:
    """A different client presenting a copied session cookie."""
    return httpx.Client(base_url=relay.url, cookies={SESSION_COOKIE: cookie}, follow_redirects=False, timeout=30)


def _works(relay: Relay, cookie: str) -> bool:
    with _replay(relay, cookie) as thief:
        resp = thief.get("/admin")
    assert resp.status_code in (200, 303), resp.text
    return resp.status_code == 200


def test_logout_ends_the_session_for_every_copy_of_the_cookie_on_every_replica(
    make_relay: Callable[..., Relay],
) -> None:
    first, second = make_relay(admin_token=ADMIN_TOKEN), make_relay(admin_token=ADMIN_TOKEN)
    browser = AdminClient(first).login()
    cookie = browser.http.cookies[SESSION_COOKIE]
    assert _works(first, cookie) and _works(second, cookie)
    rid = first.post_result(result_payload()).json()["id"]

    assert browser.post("/admin/logout").status_code == 303
    assert not _works(first, cookie) and not _works(second, cookie)
    with _replay(second, cookie) as thief:  # nor can the copy act, even with the session's CSRF token
        assert thief.post(f"/admin/results/{rid}/ack", data={"csrf": browser.csrf}).status_code == 403
    assert first.client.get(f"/v1/results/{rid}").json()["status"] == "pending"
    other = AdminClient(second).login()  # logging out one session leaves others alone
    assert other.get("/admin").status_code == 200
    browser.http.close()
    other.http.close()


def test_rotating_the_admin_token_ends_every_session(make_relay: Callable[..., Relay]) -> None:
    old = make_relay(admin_token=ADMIN_TOKEN)
    cookie = AdminClient(old).login().http.cookies[SESSION_COOKIE]
    rotated = make_relay(admin_token="a-brand-new-admin-token-0987654321")
    assert _works(old, cookie) and not _works(rotated, cookie)


def test_rotating_the_generated_admin_token_ends_every_session(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()
    token = ensure_admin_token(relay.runtime)
    assert token is not None
    cookie = AdminClient(relay).login(token).http.cookies[SESSION_COOKIE]
    assert _works(relay, cookie)
    with relay.runtime.db.session(write=True) as session:
        session.execute(update(ConfigEntry).where(ConfigEntry.key == ADMIN_TOKEN_KEY)
                        .values(value=token_digest("rra_rotated")))
    assert not _works(relay, cookie)
    assert AdminClient(relay).login("rra_rotated").get("/admin").status_code == 200


def _failures_then_right_token(relay: Relay) -> int:
    """Five wrong tokens, each from a different claimed address, then the right one from a sixth."""
    client = AdminClient(relay)
    for n in range(5):
        client.http.headers["X-Forwarded-For"] = f"203.0.113.{n}"
        assert client.login_attempt("wrong").status_code == 401
    client.http.headers["X-Forwarded-For"] = "203.0.113.99"
    status = client.login_attempt(ADMIN_TOKEN).status_code
    client.http.close()
    return status


def test_the_login_limit_counts_the_peer_address_whatever_x_forwarded_for_says(
    make_relay: Callable[..., Relay],
) -> None:
    assert _failures_then_right_token(make_relay(admin_token=ADMIN_TOKEN)) == 429


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(make_relay: Callable[..., Relay]) -> None:
    assert _failures_then_right_token(make_relay(admin_token=ADMIN_TOKEN, trusted_proxies="127.0.0.1")) == 303
