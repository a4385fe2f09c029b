"""Secrets that cannot leak by accident: a masking type, encryption at rest, and a log redactor.

Webhook tokens, interaction tokens and the bot token are secrets (DESIGN.md, Security). They are
wrapped in ``Secret`` as soon as they leave the request model, encrypted with Fernet before they
reach the store when ``RELAY_SECRET_KEY`` is set, and scrubbed from every log line by
``RedactingFilter`` as a last line of defence.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re

from cryptography.fernet import Fernet, InvalidToken

from schemas.targets import MASK

_ENC_PREFIX = "enc:v1:"
_WEBHOOK_TOKEN = re.compile(r"(/webhooks/\d+/)[^/?#\s\"']+")
_BOT_HEADER = re.compile(r"(Bot\s+)[A-Za-z0-9._-]+")
# A credential sent as a query parameter (``?token=``, ``?api_key=``, ``?access_token=``…) would
# otherwise reach the access log verbatim: uvicorn logs every request line with its query.
_QUERY_SECRET = re.compile(
    r"([?&;][^=&;\s\"'#]*(?:token|key|secret|pass|auth|sig|credential|session|cookie|nonce|csrf)[^=&;\s\"'#]*=)"
    r"[^&;\s\"'#]*", re.IGNORECASE)


class Secret:
    """A string whose ``repr`` and ``str`` never show it; ``reveal()`` is the only way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Cipher:
    """Encrypts secrets at rest with a key derived from ``RELAY_SECRET_KEY``; plain text without one.

    Values written while a key is set carry a prefix, so a store that started without a key keeps
    working after one is added (old rows are read as plain text).
    """

    def __init__(self, secret_key: str | None) -> None:
        self._fernet: Fernet | None = None
        if secret_key:
            digest = hashlib.sha256(secret_key.encode()).digest()
            self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, value: str) -> str:
        """What the store keeps for ``value``."""
        if self._fernet is None:
            return value
        return _ENC_PREFIX + self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, stored: str) -> Secret:
        """The secret behind a stored value."""
        if not stored.startswith(_ENC_PREFIX):
            return Secret(stored)
        if self._fernet is None:
            raise RuntimeError("a stored secret is encrypted but RELAY_SECRET_KEY is not set")
        try:
            return Secret(self._fernet.decrypt(stored[len(_ENC_PREFIX) :].encode()).decode())
        except InvalidToken as exc:
            raise RuntimeError("a stored secret cannot be decrypted with RELAY_SECRET_KEY") from exc


def redact(text: str) -> str:
    """Replace webhook/interaction tokens in URLs, bot tokens in headers and credentials in query strings."""
    text = _WEBHOOK_TOKEN.sub(lambda m: m.group(1) + MASK, text)
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)
    return _BOT_HEADER.sub(lambda m: m.group(1) + MASK, text)


class RedactingFilter(logging.Filter):
    """Scrubs secrets from every record that passes a handler (httpx logs full URLs at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
