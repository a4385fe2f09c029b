"""Ed25519 signatures of Discord's HTTP interactions, checked before a byte of the body is parsed.

Discord signs ``X-Signature-Timestamp`` + the raw body with the application's key and sends the
signature hex-encoded in ``X-Signature-Ed25519``; the public half is on the Developer Portal.
Discord also sends deliberately bad signatures to check that the endpoint refuses them, and a
captured request must not be replayable later, so a timestamp far from now is refused too.
"""

from __future__ import annotations

import binascii
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

#: How far a request's timestamp may be from the relay's clock (seconds) before it counts as a replay.
MAX_CLOCK_SKEW_S = 300.0


class BadSignature(Exception):
    """Why a request is not from Discord (missing header, malformed hex, wrong signature, stale)."""


def load_public_key(hex_key: str) -> Ed25519PublicKey:
    """The application's public key from its 64-hex-character form; ``ValueError`` if it is not one."""
    try:
        raw = bytes.fromhex(hex_key)
    except ValueError as exc:
        raise ValueError("the public key is not hex") from exc
    if len(raw) != 32:
        raise ValueError(f"the public key is {len(raw)} bytes; an Ed25519 key is 32")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_request(key: Ed25519PublicKey, *, signature: str | None, timestamp: str | None, body: bytes,
                   now: float | None = None, max_skew: float = MAX_CLOCK_SKEW_S) -> None:
    """Return if ``body`` was signed by Discord at ``timestamp``; raise ``BadSignature`` otherwise.

    The signature is checked first: only a genuine request earns an answer about its clock.
    """
    if not signature or not timestamp:
        raise BadSignature("missing X-Signature-Ed25519 or X-Signature-Timestamp")
    try:
        raw = binascii.unhexlify(signature)
    except (binascii.Error, ValueError):
        raise BadSignature("the signature is not hex") from None
    if len(raw) != 64:
        raise BadSignature("the signature is not 64 bytes")
    try:
        key.verify(raw, timestamp.encode() + body)
    except InvalidSignature:
        raise BadSignature("the signature does not match") from None
    try:
        stamp = float(timestamp)
    except ValueError:
        raise BadSignature("the timestamp is not a number of seconds") from None
    current = time.time() if now is None else now
    if abs(current - stamp) > max_skew:
        raise BadSignature(f"the timestamp is {current - stamp:+.0f} s off the relay's clock (a replay?)")
