"""Ids drawn from per-thread pools of kernel randomness, and the request hash computed on the loop."""

from __future__ import annotations

import hashlib
import re
import threading
import time

from hypothesis import given
from hypothesis import strategies as st

from app.ingest import sha256_on_loop
from store.ids import new_id, random_bytes


def test_ids_are_prefixed_base32_and_sort_by_creation_time() -> None:
    first = new_id("res")
    time.sleep(0.002)
    later = [new_id("res") for _ in range(1000)]
    assert all(re.fullmatch(r"res_[0-9a-hjkmnp-tv-z]{26}", i) for i in [first, *later])
    assert all(first < i for i in later)


@given(st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=40))
def test_random_draws_have_their_size_and_never_repeat_across_refills(sizes: list[int]) -> None:
    """Mixed sizes (plan nonces take 12, ids 10, some more than a pool): each draw is fresh bytes."""
    draws = [random_bytes(n) for n in sizes]
    assert [len(d) for d in draws] == sizes
    chunks = [d[i:i + 8] for d in draws for i in range(0, len(d) - 7, 8)]
    assert len(chunks) == len(set(chunks))  # no 64-bit piece handed out twice


def test_no_two_ids_share_their_random_part_across_threads_and_pool_refills() -> None:
    """Eight threads, each through several 4 KiB pools: every one of the 80-bit tails differs."""
    tails: list[list[str]] = [[] for _ in range(8)]

    def draw(out: list[str]) -> None:
        out.extend(new_id("x")[12:] for _ in range(5000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in tails]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [tail for out in tails for tail in out]
    assert len(every) == len(set(every)) == 40_000


@given(st.binary(max_size=9000) | st.integers(0, 3).map(lambda k: b"x" * (2047 * k + k % 2)))
def test_the_loop_hash_is_sha256(data: bytes) -> None:
    assert sha256_on_loop(data) == hashlib.sha256(data).hexdigest()
