"""The admin credential, the signed session cookie, CSRF tokens and the failed-login limiter.

The credential is ``RELAY_ADMIN_TOKEN`` or, when unset, a token generated at first start whose
sha256 lives in ``config_entries`` so every replica agrees on it. The session cookie is signed
with a key derived from that hash, so changing the token invalidates every session at once; and
it names a session recorded in ``admin_sessions`` (by the sha256 of its id), so logging out ends
the session on every replica at once, whoever copied the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from app.runtime import Runtime
from store.keys import token_digest

SESSION_COOKIE = "relay_admin"
LOGIN_COOKIE = "relay_admin_login"
SESSION_TTL_S = 12 * 3600
_SESSION_CONTEXT = b"result-relay admin session v1"


def ensure_admin_token(runtime: Runtime) -> str | None:
    """Generate the admin token on first start; returns it in clear once, None when one exists.

    Nothing is generated when ``RELAY_ADMIN_TOKEN`` is set. Only the sha256 is stored; if two
    replicas race, the first insert wins and the loser returns None (its token never worked).
    """
    if runtime.settings.admin_token is not None:
        return None
    store = runtime.admin
    if store.admin_token_hash() is not None:
        return None
    token = "rra_" + secrets.token_urlsafe(32)
    return token if store.store_admin_token_hash(token_digest(token)) else None


def credential_hash(runtime: Runtime) -> str | None:
    """The sha256 of the admin credential in force, or None when there is none yet."""
    configured = runtime.settings.admin_token
    if configured is not None:
        return token_digest(configured.get_secret_value())
    return runtime.admin.admin_token_hash()


def check_token(presented: str, expected_hash: str) -> bool:
    """Compare a typed token with the stored hash in constant time."""
    return hmac.compare_digest(token_digest(presented), expected_hash)


@dataclass(frozen=True)
class AdminSession:
    """A valid session: its expiry, its id (recorded server side) and the CSRF token its forms carry."""

    expires_at: int
    sid: str
    csrf: str

    @property
    def digest(self) -> str:
        """What ``admin_sessions`` keys the session by: a stolen database holds no usable cookie."""
        return hashlib.sha256(self.sid.encode()).hexdigest()

    def csrf_ok(self, presented: str | None) -> bool:
        """True when a form's hidden token is this session's (constant time)."""
        return bool(presented) and hmac.compare_digest(presented.encode(), self.csrf.encode())  # type: ignore[union-attr]


def _signing_key(cred_hash: str) -> bytes:
    return hmac.new(cred_hash.encode(), _SESSION_CONTEXT, hashlib.sha256).digest()


def _sign(cred_hash: str, payload: str) -> str:
    return hmac.new(_signing_key(cred_hash), payload.encode(), hashlib.sha256).hexdigest()


def new_session_cookie(cred_hash: str, *, now: float | None = None) -> tuple[str, AdminSession]:
    """A fresh session (new CSRF token) and the cookie value that carries it."""
    session = AdminSession(expires_at=int((now or time.time()) + SESSION_TTL_S), sid=secrets.token_urlsafe(24),
                           csrf=secrets.token_urlsafe(24))
    payload = f"{session.expires_at}.{session.sid}.{session.csrf}"
    return f"{payload}.{_sign(cred_hash, payload)}", session


def read_session_cookie(value: str | None, cred_hash: str | None, *, now: float | None = None) -> AdminSession | None:
    """The session a cookie carries, or None when it is missing, forged, expired or from an old token."""
    if not value or cred_hash is None:
        return None
    parts = value.split(".")
    if len(parts) != 4 or not parts[0].isdigit():
        return None
    expires, sid, csrf, signature = parts
    if not hmac.compare_digest(signature.encode(), _sign(cred_hash, f"{expires}.{sid}.{csrf}").encode()):
        return None
    if int(expires) <= (now or time.time()):
        return None
    return AdminSession(expires_at=int(expires), sid=sid, csrf=csrf)


def start_session(runtime: Runtime, cred_hash: str) -> str:
    """Log in: record a new session and return the cookie value that carries it."""
    value, session = new_session_cookie(cred_hash)
    runtime.admin.start_session(
        session.digest, credential=cred_hash, expires_at=datetime.fromtimestamp(session.expires_at, UTC))
    return value


def open_session(runtime: Runtime, cookie: str | None) -> AdminSession | None:
    """The live session a cookie names: signed by the credential in force and not logged out."""
    cred = credential_hash(runtime)
    session = read_session_cookie(cookie, cred)
    if session is None or cred is None:
        return None
    alive = runtime.admin.session_alive(session.digest, credential=cred)
    return session if alive else None


def end_session(runtime: Runtime, session: AdminSession) -> None:
    """Log out: the session stops working everywhere, including for any copy of its cookie."""
    runtime.admin.end_session(session.digest)


class LoginLimiter:
    """At most ``max_failures`` failed logins per client address in a sliding ``window``.

    Kept per process: an attacker spreading guesses across replicas gains a factor of the
    replica count, which is still nowhere near enough to guess a 256-bit token.
    """

    def __init__(self, max_failures: int = 5, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.max_failures, self.window, self.max_clients = max_failures, window, max_clients
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        stamps = self._failures.get(client, deque())
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        return stamps

    def retry_after(self, client: str, *, now: float | None = None) -> int | None:
        """Seconds until ``client`` may try again, or None when it may try now."""
        now = time.monotonic() if now is None else now
        stamps = self._recent(client, now)
        if len(stamps) < self.max_failures:
            return None
        return max(1, int(stamps[0] + self.window - now) + 1)

    def failed(self, client: str, *, now: float | None = None) -> None:
        """Record a failed attempt."""
        now = time.monotonic() if now is None else now
        if len(self._failures) >= self.max_clients:
            # Forget idle clients first so a flood of addresses cannot grow this without bound.
            for key in [k for k, v in self._failures.items() if not self._recent(k, now)]:
                del self._failures[key]
            while len(self._failures) >= self.max_clients:
                del self._failures[next(iter(self._failures))]
        stamps = self._recent(client, now)
        stamps.append(now)
        self._failures[client] = stamps

    def succeeded(self, client: str) -> None:
        """A correct login clears the client's failures."""
        self._failures.pop(client, None)
