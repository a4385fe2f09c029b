"""The discord.py adapter with real ``discord.Embed`` objects and a real ``discord.Interaction``
built from an interaction payload, delivered whole through the live relay and the emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import discord
import pytest
from relay_client import RelayClient
from relay_client import discord as relay_discord

from delivery.split import decode_piece
from tests.client.conftest import LiveRelay
from tests.conftest import wait_for

APP_ID = "1200000000000000002"
USER_ID = "1500000000000000005"


def _interaction(token: str, created: datetime) -> discord.Interaction:
    """An ``/analyze`` slash command as Discord sends it, parsed by discord.py itself."""
    client = discord.Client(intents=discord.Intents.none())
    state = client._connection
    state.user = discord.ClientUser(state=state, data={"id": APP_ID, "username": "relaybot", "discriminator": "0",
                                                       "avatar": None, "bot": True})
    payload: dict[str, Any] = {
        "id": str(discord.utils.time_snowflake(created)), "application_id": APP_ID, "type": 2, "token": token,
        "version": 1, "guild_id": "1400000000000000004",
        "channel": {"id": "1300000000000000003", "type": 0, "guild_id": "1400000000000000004", "name": "general",
                    "position": 0, "permission_overwrites": []},
        "member": {"user": {"id": USER_ID, "username": "ana", "discriminator": "0", "avatar": None,
                            "global_name": "Ana"}, "roles": [], "joined_at": "2026-01-01T00:00:00+00:00",
                   "deaf": False, "mute": False, "flags": 0, "permissions": "0"},
        "data": {"id": "1600000000000000006", "name": "analyze", "type": 1},
        "app_permissions": "0", "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
        "authorizing_integration_owners": {}, "context": 0, "attachment_size_limit": 8 * 1024 * 1024,
    }
    return discord.Interaction(data=payload, state=state)


def _embeds() -> list[discord.Embed]:
    main = discord.Embed(title="Analysis: a video", description="Mostly positive.", color=0x57F287,
                         url="https://youtube.com/watch?v=abc")
    main.add_field(name="Sentiment", value="mixed", inline=True).set_footer(text="model v3")
    details = discord.Embed(title="Details", description="Minute 3: applause.")
    details.add_field(name="Speakers", value="2")
    return [main, details]


def test_route_for_orders_follow_up_webhook_dm() -> None:
    fresh = _interaction("tok-fresh", datetime.now(UTC))
    route = relay_discord.route_for(fresh, webhook="https://discord.com/api/webhooks/1/x")
    assert [d["type"] for d in route] == ["interaction", "webhook", "dm"]
    # The invoking user rides along: they may fetch the result with /results if it never reaches them.
    assert route[0] == {"type": "interaction", "application_id": APP_ID, "token": "tok-fresh",
                        "created_at": fresh.created_at.isoformat(), "user_id": USER_ID}
    assert route[2] == {"type": "dm", "user_id": USER_ID}
    expired = _interaction("tok-old", datetime.now(UTC) - timedelta(minutes=20))
    assert [d["type"] for d in relay_discord.route_for(expired, webhook="https://discord.com/api/webhooks/1/x",
                                                       dm=False)] == ["webhook"]
    with pytest.raises(ValueError, match="no destination"):
        relay_discord.route_for(expired, dm=False)


def test_embeds_go_as_discord_native_embeds() -> None:
    embeds = _embeds()
    result = relay_discord.result_for(_interaction("t", datetime.now(UTC)), embeds=embeds, content="done")
    assert result["content"] == "done"
    assert result["embeds"] == [e.to_dict() for e in embeds]
    assert not {"title", "summary", "body", "fields"} & result.keys()
    assert result["workflow_id"].startswith("analyze:")


def _sent(embed: discord.Embed) -> dict[str, Any]:
    """An embed as Discord receives it from the relay: to_dict() without the keys only Discord sets."""
    data = dict(embed.to_dict())
    data.pop("flags", None)
    return data


@pytest.mark.parametrize("age_minutes, kind", [(0, "interaction"), (20, "webhook")])
def test_delivered_whole_through_follow_up_or_webhook(live: LiveRelay, age_minutes: int, kind: str) -> None:
    hook_id, url = live.new_webhook()
    created = datetime.now(UTC) - timedelta(minutes=age_minutes)
    token = f"tok-{age_minutes}-{hook_id}"
    live.discord.add_interaction(APP_ID, token, created)
    interaction = _interaction(token, created)
    embeds = _embeds()
    with RelayClient(live.url, live.key) as relay:
        receipt = relay_discord.send(relay, interaction, embeds=embeds, content="Your analysis is ready",
                                     webhook=url, dm=False)
        assert receipt.id
        assert relay.wait(receipt.id, 30).status == "delivered"
    where = APP_ID if kind == "interaction" else hook_id
    messages = wait_for(lambda: live.discord.messages(where, kind=kind), message=f"the {kind} message")
    [message] = [m for m in messages if m.payload.get("content") == "Your analysis is ready"]
    assert message.payload["embeds"] == [_sent(e) for e in embeds]


def test_many_embeds_with_an_attached_chart_arrive_in_order(live: LiveRelay, tmp_path: Path) -> None:
    hook_id, url = live.new_webhook()
    chart = tmp_path / "chart.png"
    chart.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    embeds = [discord.Embed(title=f"Scene {i}", description=f"What happens in scene {i}.", color=0x5865F2)
              for i in range(12)]
    embeds[0].description = "A long summary. " * 400  # 6,400 characters: more than one embed can hold
    embeds[5].set_image(url="attachment://chart.png")
    with RelayClient(live.url, live.key) as relay:
        receipt = relay_discord.send(relay, route=[{"type": "webhook", "url": url}], embeds=embeds, files=[chart])
        assert receipt.id and relay.wait(receipt.id, 30).status == "delivered"
    messages = live.discord.messages(hook_id, kind="webhook")
    parts = [e for m in messages for e in m.payload["embeds"]]
    assert [e["title"] for e in parts if "title" in e] == [f"Scene {i}" for i in range(12)]
    scene1 = next(i for i, e in enumerate(parts) if e.get("title") == "Scene 1")
    assert scene1 >= 2 and "".join(decode_piece(e["description"]) for e in parts[:scene1]) == (
        embeds[0].description or "").strip()
    [with_chart] = [m for m in messages if any("image" in e for e in m.payload["embeds"])]
    assert [(f.filename, f.data) for f in with_chart.files] == [("chart.png", chart.read_bytes())]
