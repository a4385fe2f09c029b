"""Admin authentication over real HTTP: login, logout, rate limit, CSRF, generated credential."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import pytest

from app.admin import ensure_admin_token
from app.admin.security import LoginLimiter, new_session_cookie, read_session_cookie
from schemas.tables import ConfigEntry
from store.admin import ADMIN_TOKEN_KEY
from tests.admin.conftest import ADMIN_TOKEN, AdminClient
from tests.conftest import Relay, result_payload

CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"


def test_pages_redirect_to_login_and_actions_are_refused_without_session(admin_relay: Relay) -> None:
    rid = admin_relay.post_result(result_payload()).json()["id"]
    anon = AdminClient(admin_relay)
    for path in ("/admin", f"/admin/results/{rid}", "/admin/destinations", f"/admin/results/{rid}/attachments/0"):
        resp = anon.get(path)
        assert resp.status_code == 303, path
        assert resp.headers["location"].startswith("/admin/login?next=%2Fadmin"), path
    for path in (f"/admin/results/{rid}/ack", f"/admin/results/{rid}/delete", "/admin/bulk/redeliver",
                 "/admin/destinations/reenable", "/admin/logout"):
        resp = anon.post(path, {"csrf": "guess"}, csrf=False)
        assert resp.status_code == 403, path
        assert resp.headers["content-security-policy"] == CSP
    assert admin_relay.client.get(f"/v1/results/{rid}").json()["status"] == "pending"
    login = anon.get("/admin/login")
    assert login.status_code == 200 and "Admin token" in login.text
    assert login.headers["content-security-policy"] == CSP and login.headers["x-frame-options"] == "DENY"
    anon.http.close()


def test_login_sets_a_strict_cookie_and_logout_ends_the_session(admin_relay: Relay) -> None:
    client = AdminClient(admin_relay)
    resp = client.login_attempt(ADMIN_TOKEN, next_url="/admin/destinations")
    assert resp.status_code == 303 and resp.headers["location"] == "/admin/destinations"
    cookie = next(v for k, v in resp.headers.multi_items() if k == "set-cookie" and v.startswith("relay_admin="))
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/admin" in lowered
    assert "max-age=" in lowered and "secure" not in lowered  # plain http in tests; https adds Secure
    page = client.get("/admin")
    assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
    assert page.headers["cache-control"] == "no-store"
    client.csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert client.post("/admin/logout").status_code == 303
    assert client.get("/admin").status_code == 303
    # An open redirect through ?next= is not possible.
    assert client.login_attempt(ADMIN_TOKEN, next_url="https://evil.example/").headers["location"] == "/admin"
    client.http.close()


def test_wrong_token_then_rate_limited_with_retry_after(admin_relay: Relay) -> None:
    client = AdminClient(admin_relay)
    for _ in range(5):
        resp = client.login_attempt("not-the-token")
        assert resp.status_code == 401 and "not the admin token" in resp.text
        assert "relay_admin=" not in resp.headers.get("set-cookie", "")
    limited = client.login_attempt(ADMIN_TOKEN)  # even the right token waits now
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 61
    assert client.get("/admin").status_code == 303
    client.http.close()


def test_login_form_needs_its_nonce(admin_relay: Relay) -> None:
    client = AdminClient(admin_relay)
    resp = client.http.post("/admin/login", data={"token": ADMIN_TOKEN, "nonce": "forged"})
    assert resp.status_code == 403
    client.http.close()


def test_post_without_or_with_a_wrong_csrf_token_is_forbidden(admin: AdminClient) -> None:
    rid = admin.relay.post_result(result_payload()).json()["id"]
    assert admin.post(f"/admin/results/{rid}/ack", csrf=False).status_code == 403
    assert admin.post(f"/admin/results/{rid}/ack", {"csrf": "x" * 32}, csrf=False).status_code == 403
    assert admin.relay.client.get(f"/v1/results/{rid}").json()["status"] == "pending"
    assert admin.post(f"/admin/results/{rid}/ack").status_code == 303
    assert admin.relay.client.get(f"/v1/results/{rid}").json()["status"] == "picked_up"


def test_generated_admin_token_is_stored_hashed_and_works(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()
    client = AdminClient(relay)
    assert "No admin credential exists yet" in client.get("/admin/login").text
    token = ensure_admin_token(relay.runtime)
    assert token and ensure_admin_token(relay.runtime) is None  # generated once; replicas agree
    with relay.runtime.db.session() as session:
        stored = session.get(ConfigEntry, ADMIN_TOKEN_KEY)
    assert stored is not None and stored.value == hashlib.sha256(token.encode()).hexdigest()
    assert token not in stored.value
    assert client.login_attempt("wrong").status_code == 401
    client.login(token)
    assert client.get("/admin").status_code == 200
    client.http.close()


def test_session_cookie_is_tamper_proof_expires_and_dies_with_the_credential() -> None:
    value, session = new_session_cookie("a" * 64)
    assert read_session_cookie(value, "a" * 64) == session
    assert read_session_cookie(value, "b" * 64) is None  # token changed: everyone is logged out
    expires, sid, csrf, sig = value.split(".")
    assert read_session_cookie(f"{int(expires) + 999}.{sid}.{csrf}.{sig}", "a" * 64) is None
    assert read_session_cookie(value, "a" * 64, now=time.time() + 13 * 3600) is None
    assert read_session_cookie("garbage", "a" * 64) is None and read_session_cookie(value, None) is None
    assert session.csrf_ok(session.csrf) and not session.csrf_ok("") and not session.csrf_ok(None)


@pytest.mark.parametrize("failures", [4, 5])
def test_limiter_window(failures: int) -> None:
    limiter = LoginLimiter(max_failures=5, window=60)
    for i in range(failures):
        limiter.failed("1.2.3.4", now=100.0 + i)
    wait = limiter.retry_after("1.2.3.4", now=105.0)
    assert (wait is None) == (failures < 5)
    assert limiter.retry_after("1.2.3.4", now=161.0) is None
    assert limiter.retry_after("5.6.7.8", now=105.0) is None
