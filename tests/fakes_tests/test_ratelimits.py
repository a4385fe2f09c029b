"""Rate limits: Discord's headers on every answer, fixed windows, 429 shapes and scopes."""

from __future__ import annotations

import math
import time

import httpx

from tests.fakes.discord import DiscordEmulator, Limit, RateLimits


def test_headers_count_down_then_429(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    remaining = []
    for _ in range(5):
        response = client.post(url, json={"content": "x"})
        assert response.status_code == 204
        remaining.append(int(response.headers["x-ratelimit-remaining"]))
        assert response.headers["x-ratelimit-limit"] == "5"
        assert 0 < float(response.headers["x-ratelimit-reset-after"]) <= 2.0
        assert float(response.headers["x-ratelimit-reset"]) > time.time()
    assert remaining == [4, 3, 2, 1, 0]
    limited = client.post(url, json={"content": "x"})
    assert limited.status_code == 429
    body = limited.json()
    assert body["message"] == "You are being rate limited."
    assert body["global"] is False
    assert isinstance(body["retry_after"], float)
    assert 0 < body["retry_after"] <= 2.0
    assert limited.headers["retry-after"] == str(math.ceil(body["retry_after"]))
    assert limited.headers["x-ratelimit-scope"] == "user"
    assert limited.headers["via"] == "1.1 google"
    assert "x-ratelimit-global" not in limited.headers
    assert len(discord.messages()) == 5
    assert discord.count_429("user") == 1
    assert discord.invalid_requests == 1


def test_bucket_is_per_webhook_and_stable(discord: DiscordEmulator, client: httpx.Client) -> None:
    _a, _ta, url_a = discord.add_webhook()
    _b, _tb, url_b = discord.add_webhook()
    first = client.post(url_a, json={"content": "x"}).headers["x-ratelimit-bucket"]
    assert client.post(url_a, json={"content": "x"}).headers["x-ratelimit-bucket"] == first
    other = client.post(url_b, json={"content": "x"})
    assert other.headers["x-ratelimit-bucket"] != first
    assert other.headers["x-ratelimit-remaining"] == "4"


def test_window_resets(discord: DiscordEmulator, client: httpx.Client) -> None:
    discord.set_rate_limits(RateLimits(webhook=Limit(2, 0.5)))
    _id, _token, url = discord.add_webhook()
    assert [client.post(url, json={"content": "x"}).status_code for _ in range(3)] == [204, 204, 429]
    time.sleep(0.55)
    response = client.post(url, json={"content": "x"})
    assert response.status_code == 204
    assert response.headers["x-ratelimit-remaining"] == "1"


def test_headers_on_errors_too(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    response = client.post(url, json={"content": ""})
    assert response.status_code == 400
    assert response.headers["x-ratelimit-remaining"] == "4"


def test_global_limit_per_bot_token(discord: DiscordEmulator, client: httpx.Client, bot: dict[str, str]) -> None:
    discord.set_rate_limits(RateLimits(global_per_bot=Limit(3, 1.0)))
    statuses = [
        client.post(f"{discord.api_base}/users/@me/channels", headers=bot, json={"recipient_id": str(i)})
        for i in range(4)
    ]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    limited = statuses[-1]
    assert limited.json()["global"] is True
    assert isinstance(limited.json()["retry_after"], float)
    assert limited.headers["x-ratelimit-global"] == "true"
    assert limited.headers["x-ratelimit-scope"] == "global"
    assert limited.headers["via"] == "1.1 google"
    assert discord.count_429("global") == 1


def test_channel_message_limit(discord: DiscordEmulator, client: httpx.Client, bot: dict[str, str]) -> None:
    discord.set_rate_limits(RateLimits(channel_messages=Limit(2, 60.0)))
    channel = discord.add_channel()
    url = f"{discord.api_base}/channels/{channel}/messages"
    statuses = [client.post(url, headers=bot, json={"content": "x"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_shared_channel_limit_for_webhooks(discord: DiscordEmulator, client: httpx.Client) -> None:
    discord.set_rate_limits(RateLimits(webhook_channel=Limit(2, 60.0)))
    _a, _ta, url_a = discord.add_webhook(channel_id="1")
    _b, _tb, url_b = discord.add_webhook(channel_id="1")
    assert client.post(url_a, json={"content": "x"}).status_code == 204
    assert client.post(url_b, json={"content": "x"}).status_code == 204
    limited = client.post(url_a, json={"content": "x"})
    assert limited.status_code == 429
    assert limited.headers["x-ratelimit-scope"] == "shared"
    assert discord.count_429("shared") == 1
    # As Discord: the webhook's own bucket still shows requests left; only the scope and the long
    # retry_after say that the channel, shared by every webhook in it, is full.
    assert int(limited.headers["x-ratelimit-remaining"]) >= 1
    assert limited.headers["x-ratelimit-limit"] == "5" and "x-ratelimit-bucket" in limited.headers
    body = limited.json()
    assert body["global"] is False and 40 < body["retry_after"] <= 60
    assert int(limited.headers["retry-after"]) == math.ceil(body["retry_after"])
    assert limited.headers["via"] == "1.1 google" and "x-ratelimit-global" not in limited.headers


def test_the_channel_limit_is_on_by_default_at_thirty_a_minute(discord: DiscordEmulator,
                                                                client: httpx.Client) -> None:
    assert RateLimits().webhook_channel == Limit(30, 60.0)
    discord.set_rate_limits(RateLimits(webhook=Limit(100, 1.0)))  # only the channel's cap left
    hooks = [discord.add_webhook(channel_id="2")[2] for _ in range(3)]
    statuses = [client.post(hooks[i % 3], json={"content": "x"}).status_code for i in range(31)]
    assert statuses == [204] * 30 + [429]
    _, _, elsewhere = discord.add_webhook(channel_id="3")
    assert client.post(elsewhere, json={"content": "x"}).status_code == 204  # per channel, not global


def test_rate_limits_over_http(discord: DiscordEmulator, client: httpx.Client) -> None:
    response = client.put(f"{discord.base_url}/_emulator/rate_limits", json={"webhook": {"requests": 1, "per": 5}})
    assert response.json()["webhook"] == {"requests": 1, "per": 5}
    _id, _token, url = discord.add_webhook()
    assert [client.post(url, json={"content": "x"}).status_code for _ in range(2)] == [204, 429]
