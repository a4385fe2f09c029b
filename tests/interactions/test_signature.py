"""Ed25519 verification of Discord's interactions: only Discord's signature of this exact request, now."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from app.interactions.signature import MAX_CLOCK_SKEW_S, BadSignature, load_public_key, verify_request

PRIVATE = Ed25519PrivateKey.generate()
PUBLIC_HEX = PRIVATE.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
KEY = load_public_key(PUBLIC_HEX)
NOW = 1_800_000_000.0


def _signed(body: bytes, stamp: str) -> str:
    return PRIVATE.sign(stamp.encode() + body).hex()


@given(body=st.binary(max_size=2000), offset=st.integers(-int(MAX_CLOCK_SKEW_S), int(MAX_CLOCK_SKEW_S)))
def test_a_genuine_recent_request_passes(body: bytes, offset: int) -> None:
    stamp = str(int(NOW) + offset)
    verify_request(KEY, signature=_signed(body, stamp), timestamp=stamp, body=body, now=NOW)


@settings(max_examples=200)
@given(body=st.binary(min_size=1, max_size=500), data=st.data())
def test_any_change_to_body_timestamp_or_signature_fails(body: bytes, data: st.DataObject) -> None:
    stamp = str(int(NOW))
    signature = _signed(body, stamp)
    part = data.draw(st.sampled_from(["body", "timestamp", "signature"]))
    if part == "body":
        i = data.draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([body[i] ^ data.draw(st.integers(1, 255))]) + body[i + 1:]
    elif part == "timestamp":
        stamp = str(int(NOW) + data.draw(st.integers(1, 100)))
    else:
        raw = bytearray(bytes.fromhex(signature))
        i = data.draw(st.integers(0, 63))
        raw[i] ^= data.draw(st.integers(1, 255))
        signature = raw.hex()
    with pytest.raises(BadSignature):
        verify_request(KEY, signature=signature, timestamp=stamp, body=body, now=NOW)


@pytest.mark.parametrize("signature, timestamp", [
    (None, "1800000000"), ("ab" * 64, None), ("", ""), ("zz" * 64, "1800000000"), ("ab" * 10, "1800000000"),
])
def test_missing_or_malformed_headers_fail(signature: str | None, timestamp: str | None) -> None:
    with pytest.raises(BadSignature):
        verify_request(KEY, signature=signature, timestamp=timestamp, body=b"{}", now=NOW)


@pytest.mark.parametrize("offset", [MAX_CLOCK_SKEW_S + 1, -MAX_CLOCK_SKEW_S - 1, 86400])
def test_a_genuine_but_stale_request_is_a_replay(offset: float) -> None:
    stamp = str(int(NOW + offset))
    with pytest.raises(BadSignature, match="replay"):
        verify_request(KEY, signature=_signed(b"{}", stamp), timestamp=stamp, body=b"{}", now=NOW)


def test_another_applications_signature_fails() -> None:
    other = Ed25519PrivateKey.generate()
    stamp = str(int(NOW))
    with pytest.raises(BadSignature, match="does not match"):
        verify_request(KEY, signature=other.sign(stamp.encode() + b"{}").hex(), timestamp=stamp, body=b"{}",
                       now=NOW)


@pytest.mark.parametrize("text", ["", "xyz", "ab" * 31, "ab" * 33])
def test_only_a_32_byte_hex_key_loads(text: str) -> None:
    with pytest.raises(ValueError):
        load_public_key(text)
