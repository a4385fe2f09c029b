"""The discord.py adapter with real ``discord.Embed`` objects and a real ``discord.Interaction``
built from an interaction payload, delivered whole through the live relay and the emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import discord
import pytest
from relay_client import RelayClient
from relay_client import discord as relay_discord

from tests.client.conftest import LiveRelay
from tests.conftest import wait_for
from tests.engine.helpers import body_seen

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


def test_embeds_map_onto_the_result_without_loss() -> None:
    result = relay_discord.result_for(_interaction("t", datetime.now(UTC)), embeds=_embeds(), content="done")
    assert (result["title"], result["url"], result["color"], result["summary"]) == (
        "Analysis: a video", "https://youtube.com/watch?v=abc", 0x57F287, "Mostly positive.")
    assert result["fields"] == [{"name": "Sentiment", "value": "mixed", "inline": True}]
    for piece in ("done", "model v3", "Details", "Minute 3: applause.", "**Speakers**: 2"):
        assert piece in result["body"]
    assert result["workflow_id"].startswith("analyze:")


@pytest.mark.parametrize("age_minutes, kind", [(0, "interaction"), (20, "webhook")])
def test_delivered_whole_through_follow_up_or_webhook(live: LiveRelay, age_minutes: int, kind: str) -> None:
    hook_id, url = live.new_webhook()
    created = datetime.now(UTC) - timedelta(minutes=age_minutes)
    token = f"tok-{age_minutes}-{hook_id}"
    live.discord.add_interaction(APP_ID, token, created)
    interaction = _interaction(token, created)
    with RelayClient(live.url, live.key) as relay:
        receipt = relay_discord.send(relay, interaction, embeds=_embeds(), webhook=url, dm=False)
        assert receipt.id
        assert relay.wait(receipt.id, 30).status == "delivered"
    where = APP_ID if kind == "interaction" else hook_id
    messages = wait_for(lambda: live.discord.messages(where, kind=kind), message=f"the {kind} message")
    messages = [m for m in messages if m.payload["embeds"][0].get("title", "").endswith("Analysis: a video")]
    assert messages
    seen = body_seen(messages)
    assert "Minute 3: applause." in seen and "model v3" in seen
    assert {"name": "Sentiment", "value": "mixed", "inline": True} in [
        f for m in messages for e in m.payload["embeds"] for f in e.get("fields", [])]
