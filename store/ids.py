"""Identifiers: time-ordered, URL-safe, prefixed by kind (``res_``, ``tr_``, ``key_``)."""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


_RANDOM_BYTES = 10
_POOL_BYTES = 4096
_pools = threading.local()


def random_bytes(count: int = _RANDOM_BYTES) -> bytes:
    """``count`` bytes from ``os.urandom``, drawn 4 KiB at a time per thread.

    ``os.urandom`` lets go of the GIL for its ``getrandom`` call, and on a busy event loop getting
    it back meant waiting for the store's writer thread (and the writer waiting for the loop): a
    single id or nonce cost a switch. The bytes are the same kernel randomness; each thread has its
    own pool, so no bytes are ever handed out twice.
    """
    pool: bytes = getattr(_pools, "data", b"")
    pos: int = getattr(_pools, "pos", 0)
    if pos + count > len(pool):
        pool, pos = os.urandom(max(_POOL_BYTES, count)), 0
        _pools.data = pool
    _pools.pos = pos + count
    return pool[pos:pos + count]


def new_id(prefix: str) -> str:
    """A ULID-shaped id: 48 bits of milliseconds then 80 random bits, so ids sort by creation time."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{_b32(millis, 10)}{_b32(int.from_bytes(random_bytes(), 'big'), 16)}"
