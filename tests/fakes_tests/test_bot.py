"""DMs through the bot: auth, the DM channel, closed DMs, unknown channels, nonce idempotency."""

from __future__ import annotations

import httpx

from tests.fakes.discord import DiscordEmulator


def _open_dm(discord: DiscordEmulator, client: httpx.Client, bot: dict[str, str], user_id: str) -> str:
    response = client.post(f"{discord.api_base}/users/@me/channels", headers=bot, json={"recipient_id": user_id})
    assert response.status_code == 200, response.text
    assert response.json()["type"] == 1
    return str(response.json()["id"])


def test_same_dm_channel_for_the_same_user(discord: DiscordEmulator, client: httpx.Client, bot: dict[str, str]) -> None:
    first = _open_dm(discord, client, bot, "789")
    assert _open_dm(discord, client, bot, "789") == first
    assert _open_dm(discord, client, bot, "790") != first
    assert discord.dm_channel_id("789") == first


def test_dm_message(discord: DiscordEmulator, client: httpx.Client, bot: dict[str, str]) -> None:
    channel = _open_dm(discord, client, bot, "789")
    response = client.post(f"{discord.api_base}/channels/{channel}/messages", headers=bot, json={"content": "hi"})
    assert response.status_code == 200
    assert response.json()["author"]["bot"] is True
    [message] = discord.messages(channel_id=channel)
    assert (message.kind, message.content) == ("channel", "hi")


def test_bad_bot_token(discord: DiscordEmulator, client: httpx.Client) -> None:
    for headers in ({"Authorization": "Bot wrong"}, {"Authorization": "Bearer bot-token"}, {}):
        response = client.post(f"{discord.api_base}/users/@me/channels", headers=headers, json={"recipient_id": "1"})
        assert (response.status_code, response.json()) == (401, {"code": 0, "message": "401: Unauthorized"})
    assert discord.invalid_requests == 3


def test_dms_closed(discord: DiscordEmulator, client: httpx.Client, bot: dict[str, str]) -> None:
    discord.close_dms("789")
    channel = _open_dm(discord, client, bot, "789")  # opening works on Discord too; sending fails
    response = client.post(f"{discord.api_base}/channels/{channel}/messages", headers=bot, json={"content": "x"})
    assert (response.status_code, response.json()) == (
        403,
        {"code": 50007, "message": "Cannot send messages to this user"},
    )
    discord.open_dms("789")
    assert client.post(f"{discord.api_base}/channels/{channel}/messages", headers=bot, json={"content": "x"}).is_success


def test_unknown_channel(discord: DiscordEmulator, client: httpx.Client, bot: dict[str, str]) -> None:
    response = client.post(f"{discord.api_base}/channels/555/messages", headers=bot, json={"content": "x"})
    assert (response.status_code, response.json()) == (404, {"code": 10003, "message": "Unknown Channel"})
    channel = discord.add_channel("555")
    assert client.post(f"{discord.api_base}/channels/{channel}/messages", headers=bot, json={"content": "x"}).is_success


def test_missing_recipient(discord: DiscordEmulator, client: httpx.Client, bot: dict[str, str]) -> None:
    response = client.post(f"{discord.api_base}/users/@me/channels", headers=bot, json={})
    assert response.json()["errors"]["recipient_id"]["_errors"][0]["code"] == "BASE_TYPE_REQUIRED"


def test_enforced_nonce_returns_the_existing_message(
    discord: DiscordEmulator, client: httpx.Client, bot: dict[str, str]
) -> None:
    channel = _open_dm(discord, client, bot, "789")
    url = f"{discord.api_base}/channels/{channel}/messages"
    body = {"content": "result 1/2", "nonce": "res_1:0", "enforce_nonce": True}
    first = client.post(url, headers=bot, json=body).json()
    again = client.post(url, headers=bot, json=body).json()
    assert again["id"] == first["id"]
    assert again["nonce"] == "res_1:0"
    assert len(discord.messages(channel_id=channel)) == 1
    assert discord.counters().nonce_replays == 1
    # Without enforce_nonce Discord does not deduplicate.
    client.post(url, headers=bot, json={**body, "enforce_nonce": False})
    assert len(discord.messages(channel_id=channel)) == 2


def test_nonce_is_forgotten_after_the_window(
    discord: DiscordEmulator, client: httpx.Client, bot: dict[str, str]
) -> None:
    channel = _open_dm(discord, client, bot, "789")
    url = f"{discord.api_base}/channels/{channel}/messages"
    body = {"content": "x", "nonce": "n1", "enforce_nonce": True}
    first = client.post(url, headers=bot, json=body).json()
    discord.clock.advance(discord.nonce_window + 1)
    assert client.post(url, headers=bot, json=body).json()["id"] != first["id"]


def test_channel_message_validation(discord: DiscordEmulator, client: httpx.Client, bot: dict[str, str]) -> None:
    channel = _open_dm(discord, client, bot, "789")
    url = f"{discord.api_base}/channels/{channel}/messages"
    response = client.post(url, headers=bot, json={"content": "x" * 2001})
    assert response.json()["errors"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    response = client.post(url, headers=bot, json={"content": "x", "nonce": "n" * 26, "enforce_nonce": True})
    assert "nonce" in response.json()["errors"]
