"""Fault injection: each kind of failure the relay must survive, and what it leaves behind."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.fakes.discord import DiscordEmulator, Limit, RateLimits


def _wait_for(predicate: object, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 524])
def test_server_errors_store_nothing(discord: DiscordEmulator, client: httpx.Client, status: int) -> None:
    _id, _token, url = discord.add_webhook()
    discord.inject("http_error", status=status, times=2)
    assert [client.post(url, json={"content": "x"}).status_code for _ in range(3)] == [status, status, 204]
    assert len(discord.messages()) == 1
    assert [r.reason for r in discord.rejected] == ["fault", "fault"]


def test_connection_reset_stores_nothing(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    discord.inject("reset")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(url, json={"content": "x"})
    assert discord.messages() == []
    assert client.post(url, json={"content": "x"}).status_code == 204  # the server survives it
    assert discord.counters().resets == 1
    assert discord.rejected[0].reason == "reset"


def test_drop_response_stores_then_hangs_up(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    discord.inject("drop_response")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(url, params={"wait": "true"}, json={"content": "x"})
    client.post(url, params={"wait": "true"}, json={"content": "x"})  # the sender's retry
    messages = discord.messages()
    assert [m.response_dropped for m in messages] == [True, False]
    assert discord.counters().dropped_responses == 1


def test_slow_answer_past_the_client_timeout_still_posts(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    discord.inject("delay", seconds=0.4)
    with pytest.raises(httpx.ReadTimeout):
        client.post(url, json={"content": "slow"}, timeout=0.1)
    _wait_for(lambda: len(discord.messages()) == 1)
    assert discord.messages()[0].content == "slow"


def test_slow_answer_within_the_timeout(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    discord.inject("delay", seconds=0.2)
    started = time.monotonic()
    assert client.post(url, json={"content": "x"}).status_code == 204
    assert time.monotonic() - started >= 0.2


def test_429_storm(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    discord.inject("rate_limit", times=3, retry_after=2.5)
    responses = [client.post(url, json={"content": "x"}) for _ in range(4)]
    assert [r.status_code for r in responses] == [429, 429, 429, 204]
    first = responses[0]
    assert first.json() == {"message": "You are being rate limited.", "retry_after": 2.5, "global": False}
    assert first.headers["retry-after"] == "3"
    assert first.headers["via"] == "1.1 google"
    assert first.headers["x-ratelimit-scope"] == "user"
    assert discord.count_429("user") == 3


def test_injected_global_429(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    discord.inject("rate_limit", scope="global", retry_after=0.25)
    response = client.post(url, json={"content": "x"})
    assert response.json()["global"] is True
    assert response.headers["x-ratelimit-global"] == "true"
    assert response.headers["retry-after"] == "1"


def test_cloudflare_ban_has_no_json_and_no_via(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    discord.inject("cloudflare", retry_after=600)
    response = client.post(url, json={"content": "x"})
    assert response.status_code == 429
    assert response.headers["content-type"].startswith("text/html")
    assert "via" not in response.headers
    assert not any(h.startswith("x-ratelimit") for h in response.headers)
    with pytest.raises(ValueError):
        response.json()
    assert "1015" in response.text
    assert discord.count_429("cloudflare") == 1
    assert discord.rejected[0].reason == "cloudflare"
    assert discord.messages() == []


def test_faults_target_a_path_and_method(discord: DiscordEmulator, client: httpx.Client) -> None:
    _a, _ta, url_a = discord.add_webhook()
    webhook_b, _tb, url_b = discord.add_webhook()
    discord.inject("http_error", status=503, times=5, path=f"/webhooks/{webhook_b}/", method="POST")
    assert client.post(url_a, json={"content": "x"}).status_code == 204
    assert client.post(url_b, json={"content": "x"}).status_code == 503


def test_probabilistic_faults_are_reproducible(discord: DiscordEmulator, client: httpx.Client) -> None:
    def run() -> list[int]:
        discord.reset()
        _id, _token, url = discord.add_webhook()
        discord.set_rate_limits(RateLimits(webhook=Limit(100, 1.0)))
        discord.inject("http_error", status=502, probability=0.5)
        return [client.post(url, json={"content": "x"}).status_code for _ in range(20)]

    first, second = run(), run()
    assert first == second
    assert 502 in first
    assert 204 in first


def test_faults_over_http(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    control = f"{discord.base_url}/_emulator/faults"
    created = client.post(control, json={"kind": "http_error", "status": 504, "times": 1})
    assert created.status_code == 201
    assert client.get(control).json()["faults"][0]["kind"] == "http_error"
    assert client.post(url, json={"content": "x"}).status_code == 504
    client.post(control, json={"kind": "http_error", "status": 500, "probability": 1.0})
    assert client.post(url, json={"content": "x"}).status_code == 500
    assert client.delete(control).status_code == 204
    assert client.post(url, json={"content": "x"}).status_code == 204
    assert client.post(control, json={"kind": "nonsense"}).status_code == 400
