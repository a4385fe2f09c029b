"""Pure pieces of the engine: error classification, header-driven rate limits, URL checks."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.destinations import parse_webhook_url
from delivery.classify import classify, first_error_path
from delivery.errors import DestinationGone, Expired, Permanent, TooLarge, Transient
from delivery.ratelimit import RateLimiter
from schemas.messages import BucketState


@pytest.mark.parametrize(("status", "body", "kind", "expected"), [
    (500, {}, "webhook", Transient), (502, None, "webhook", Transient), (503, {}, "dm", Transient),
    (504, {}, "webhook", Transient), (524, {}, "webhook", Transient),
    (413, {}, "webhook", TooLarge), (400, {"code": 40005}, "webhook", TooLarge),
    (400, {"code": 50045}, "webhook", TooLarge),
    (401, {"code": 50027}, "interaction", Expired),
    (404, {"code": 10015}, "webhook", DestinationGone), (404, {"code": 10003}, "dm", DestinationGone),
    (403, {"code": 50007}, "dm", Permanent), (403, {"code": 50013}, "webhook", Permanent),
    (400, {"code": 50035, "errors": {}}, "webhook", Permanent), (400, {"code": 50006}, "webhook", Permanent),
    (401, {"code": 50027}, "webhook", Permanent),
])
def test_discord_answers_are_classified_as_the_design_table_says(status, body, kind, expected) -> None:  # type: ignore[no-untyped-def]
    err = classify(status, body, kind=kind)
    assert type(err) is expected
    assert err.status == status


def test_invalid_form_body_names_the_field() -> None:
    body = {"code": 50035, "message": "Invalid Form Body",
            "errors": {"embeds": {"0": {"description": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}}}}}
    err = classify(400, body, kind="webhook")
    assert isinstance(err, Permanent) and err.field == "embeds.0.description"
    assert first_error_path({"content": {"_errors": []}}) == "content"
    assert first_error_path("nope") is None


class FakeClock:
    """Time that only moves when the limiter sleeps: waits are counted, never slept."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_limiter_waits_when_remaining_is_zero_until_reset() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock.time, sleep=clock.sleep)
    limiter.update("k", {"x-ratelimit-remaining": "0", "x-ratelimit-reset-after": "1.5", "x-ratelimit-bucket": "b"})
    asyncio.run(limiter.acquire("k", bot=False))
    assert len(clock.slept) == 1 and 1.5 <= clock.slept[0] <= 1.6
    assert limiter.state("k").bucket == "b"


def test_limiter_spends_known_remaining_optimistically() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock.time, sleep=clock.sleep)
    limiter.update("k", {"x-ratelimit-remaining": "2", "x-ratelimit-reset-after": "2"})
    for _ in range(2):
        asyncio.run(limiter.acquire("k", bot=False))
    assert clock.slept == []
    asyncio.run(limiter.acquire("k", bot=False))  # the third waits for the window
    assert len(clock.slept) == 1


def test_global_429_pauses_every_bot_send_but_not_webhooks() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock.time, sleep=clock.sleep)
    limiter.pause("dm:1", 3.0, is_global=True)
    asyncio.run(limiter.acquire("webhook:1", bot=False))
    assert clock.slept == []
    asyncio.run(limiter.acquire("dm:2", bot=True))
    assert sum(clock.slept) >= 3.0


def test_bot_global_rate_is_held_proactively() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock.time, sleep=clock.sleep, global_per_second=5)
    for i in range(12):
        asyncio.run(limiter.acquire(f"dm:{i}", bot=True))
    assert clock.now - 1000.0 >= 2.0  # 12 sends at 5/s need at least two full seconds


def test_claimed_state_replaces_stale_memory() -> None:
    limiter = RateLimiter()
    limiter.update("k", {"x-ratelimit-remaining": "4", "x-ratelimit-reset-after": "5"})
    limiter.load("k", BucketState(bucket="b", remaining=0, reset_at=1.0))
    assert limiter.state("k").remaining == 0


@given(st.text(max_size=80))
def test_webhook_url_parser_never_accepts_a_foreign_host(suffix: str) -> None:
    url = f"https://evil.example/api/webhooks/1/abc{suffix}"
    with pytest.raises(ValueError):
        parse_webhook_url(url, "https://discord.com/api/v10")


@given(st.from_regex(r"[0-9]{1,20}", fullmatch=True), st.from_regex(r"[A-Za-z0-9_-]{1,60}", fullmatch=True))
def test_webhook_url_parser_round_trips_ids_and_tokens(webhook_id: str, token: str) -> None:
    # The id comes back canonical: leading zeros do not make another webhook.
    assert parse_webhook_url(f"https://discord.com/api/webhooks/{webhook_id}/{token}",
                             "https://discord.com/api/v10") == (str(int(webhook_id)), token, None)
