"""Turning a producer's route into stored destinations: URL checks (no SSRF), keys, masking.

A webhook URL is accepted only when it is a Discord webhook URL or lies exactly under the
configured API base (the emulator in tests). The relay always sends to its own API base, never to
the host a producer wrote, so the URL is only a way to carry ``{id}/{token}``.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from app.secrets import Cipher
from schemas.api import DestinationIn, DMDestination, InteractionDestination, WebhookDestination
from schemas.tables import DEFAULT_TENANT
from schemas.targets import Target, destination_label, tenant_key

DISCORD_HOSTS = frozenset(
    f"{prefix}{host}" for host in ("discord.com", "discordapp.com") for prefix in ("", "ptb.", "canary.")
)
_WEBHOOK_PATH = re.compile(r"^(?:/api(?:/v\d{1,2})?)?/webhooks/0*(\d{1,20})/([A-Za-z0-9_-]{1,200})/?$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


class InvalidDestination(ValueError):
    """A route entry the relay refuses; ``field`` names it for the 422 body."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@functools.lru_cache(maxsize=4096)
def parse_webhook_url(url: str, api_base: str) -> tuple[str, str, str | None]:
    """``(webhook_id, token, thread_id)`` of an acceptable webhook URL, else ``ValueError`` with why.

    A pure function of its two strings, and producers post to the same few webhooks again and
    again: accepted URLs are remembered (a refused one raises, which is never cached).
    """
    if any(ch.isspace() for ch in url) or "\\" in url:
        raise ValueError("must not contain whitespace or backslashes")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("must not carry user information")
    if parts.fragment:
        raise ValueError("must not carry a fragment")
    if "%" in parts.path or "/../" in parts.path + "/" or "/./" in parts.path + "/":
        raise ValueError("must not contain encoded or relative path segments")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    host = (parts.hostname or "").lower()
    base = urlsplit(api_base)
    under_base = (
        parts.scheme == base.scheme
        and host == (base.hostname or "").lower()
        and port == base.port
        and parts.path.startswith(base.path.rstrip("/") + "/webhooks/")
    )
    if under_base:
        path = parts.path[len(base.path.rstrip("/")) :]
        match = re.fullmatch(r"/webhooks/0*(\d{1,20})/([A-Za-z0-9_-]{1,200})/?", path)
    else:
        if parts.scheme != "https":
            raise ValueError("must use https")
        if host not in DISCORD_HOSTS:
            raise ValueError("must be a Discord webhook URL (discord.com/api/webhooks/<id>/<token>)")
        if port not in (None, 443):
            raise ValueError("must not name a port")
        match = _WEBHOOK_PATH.fullmatch(parts.path)
    if match is None:
        raise ValueError("must have the form https://discord.com/api/webhooks/<id>/<token>")
    query = parse_qs(parts.query, keep_blank_values=True)
    if set(query) - {"thread_id", "wait"}:
        raise ValueError("may only carry thread_id or wait in its query")
    thread = query.get("thread_id", [None])[-1]
    if thread is not None and not thread.isdigit():
        raise ValueError("thread_id must be a snowflake")
    # One webhook is one destination whichever way its URL was written: "0123" and "123" are the same
    # snowflake (the host's case, a trailing slash and the API version are already ignored above).
    return str(int(match.group(1))), unquote(match.group(2)), thread


def build_target(
    dest: DestinationIn, *, field: str, api_base: str, cipher: Cipher, bot_token_configured: bool,
    tenant: str = DEFAULT_TENANT,
) -> Target:
    """Validate one route entry against configuration and produce what the store keeps."""
    target = _build_target(dest, field=field, api_base=api_base, cipher=cipher,
                           bot_token_configured=bot_token_configured)
    return Target(key=tenant_key(tenant, target.key), kind=target.kind, label=target.label, stored=target.stored,
                  tenant=tenant)


def _build_target(
    dest: DestinationIn, *, field: str, api_base: str, cipher: Cipher, bot_token_configured: bool
) -> Target:
    if isinstance(dest, WebhookDestination):
        try:
            webhook_id, token, url_thread = parse_webhook_url(dest.url, api_base)
        except ValueError as exc:
            raise InvalidDestination(f"{field}.url", str(exc)) from None
        thread = dest.thread_id or url_thread
        if thread and dest.thread_name is not None:
            raise InvalidDestination(f"{field}.thread_name", "give thread_name (a new forum post) or a thread_id "
                                     "(in the URL or the field), not both")
        stored: dict[str, Any] = {"webhook_id": webhook_id, "token": cipher.encrypt(token), "thread_id": thread}
        if dest.thread_name is not None:
            stored["thread_name"] = dest.thread_name
            if dest.applied_tags:
                stored["applied_tags"] = list(dest.applied_tags)
        if dest.silent:
            stored["silent"] = True
        return Target(key=f"webhook:{webhook_id}", kind="webhook", label=destination_label("webhook", stored),
                      stored=stored)
    if isinstance(dest, InteractionDestination):
        if not _TOKEN.match(dest.token):
            raise InvalidDestination(f"{field}.token", "is not an interaction token")
        digest = hashlib.sha256(dest.token.encode()).hexdigest()[:16]
        stored = {
            "application_id": dest.application_id,
            "token": cipher.encrypt(dest.token),
            "created_at": dest.created_at.isoformat(),
        }
        if dest.user_id is not None:
            stored["user_id"] = dest.user_id
        if dest.silent:
            stored["silent"] = True
        return Target(key=f"interaction:{dest.application_id}:{digest}", kind="interaction",
                      label=destination_label("interaction", stored), stored=stored)
    assert isinstance(dest, DMDestination)
    if not bot_token_configured:
        raise InvalidDestination(f"{field}.type", "a DM destination needs RELAY_DISCORD_BOT_TOKEN on the relay")
    stored = {"user_id": dest.user_id}
    if dest.silent:
        stored["silent"] = True
    return Target(key=f"dm:{dest.user_id}", kind="dm", label=destination_label("dm", stored), stored=stored)
