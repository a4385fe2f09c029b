"""Discord's answers → the relay's decisions (DESIGN.md's error table, in one pure function)."""

from __future__ import annotations

from typing import Any

from delivery.errors import DeliveryError, DestinationGone, Expired, Permanent, TooLarge, Transient

TRANSIENT_STATUS = frozenset({500, 502, 503, 504, 524})
TOO_LARGE_CODES = frozenset({40005, 50045})
GONE_CODES = frozenset({10015, 10003})
PAYLOAD_BUG_CODES = frozenset({50035, 50006, 50109})
#: Forum and media channels: Discord's refusals, in words a producer can act on (the route is theirs).
FORUM_REASONS = {
    220001: "this webhook is in a forum channel: give a thread_name or thread_id",
    220002: "a forum post takes a thread_name or a thread_id, not both",
    220003: "thread_name only works in forum or media channels, and this webhook's channel is neither: "
            "drop thread_name (or use a webhook of a forum channel)",
    220004: "this webhook cannot post in forum channels",
}


def first_error_path(errors: Any, prefix: str = "") -> str | None:
    """The first field path in Discord's nested ``errors`` object (``embeds.0.description``)."""
    if not isinstance(errors, dict):
        return None
    if "_errors" in errors:
        return prefix or None
    for key, value in errors.items():
        found = first_error_path(value, f"{prefix}.{key}" if prefix else str(key))
        if found:
            return found
    return None


def classify(status: int, body: Any, *, kind: str) -> DeliveryError:
    """The error for a non-2xx, non-429 answer. ``kind``: webhook, interaction or dm."""
    body = body if isinstance(body, dict) else {}
    code = body.get("code") if isinstance(body.get("code"), int) else None
    message = str(body.get("message") or f"HTTP {status}")
    if status in TRANSIENT_STATUS or status >= 500:
        return Transient(f"Discord answered {status}", status=status, code=code)
    if status == 413 or code in TOO_LARGE_CODES:
        return TooLarge(message, status=status, code=code)
    if kind == "interaction" and (status == 401 or code == 50027):
        return Expired("interaction token expired", status=status, code=code)
    if status == 404 or code in GONE_CODES:
        return DestinationGone(message, status=status, code=code)
    if code in FORUM_REASONS:
        return Permanent(f"{FORUM_REASONS[code]} (Discord {code}: {message})", status=status, code=code)
    if code in PAYLOAD_BUG_CODES:
        path = first_error_path(body.get("errors"))
        text = f"{message} at {path}" if path else message
        return Permanent(text, status=status, code=code, field=path)
    return Permanent(message, status=status, code=code)
