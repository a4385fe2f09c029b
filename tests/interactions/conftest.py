"""A relay answering Discord interactions, pointed at the emulator that plays Discord."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Relay, result_payload, wait_for


@pytest.fixture
def pickup_relay(delivering_relay: Callable[..., Relay], discord: Any) -> Callable[..., Relay]:
    """Factory: a delivering relay with the emulator's application id and public key configured."""

    def factory(**overrides: Any) -> Relay:
        values: dict[str, Any] = {"discord_application_id": discord.interactions.application_id,
                                  "discord_public_key": discord.interactions.public_key}
        values.update(overrides)
        return delivering_relay(**values)

    return factory


def endpoint(relay: Relay) -> str:
    """The relay's Interactions Endpoint URL."""
    return f"{relay.url}/discord/interactions"


def status_of(relay: Relay, rid: str) -> dict:
    """``GET /v1/results/{id}``."""
    return relay.client.get(f"/v1/results/{rid}").json()


def undelivered_result(relay: Relay, discord: Any, *, user_id: str, title: str = "Analysis: a video",
                       **overrides: Any) -> str:
    """A result that could not be delivered: its interaction expired, its webhook was deleted."""
    wid, _, url = discord.add_webhook()
    discord.remove_webhook(wid)
    expired = datetime.now(UTC) - timedelta(minutes=20)
    payload = result_payload(title=title, route=[
        {"type": "interaction", "application_id": discord.interactions.application_id,
         "token": f"expired-{secrets.token_hex(8)}", "created_at": expired.isoformat(),
         "user_id": user_id},
        {"type": "webhook", "url": url}])
    payload.update(overrides)
    response = relay.post_result(payload)
    assert response.status_code == 202, response.text
    rid = response.json()["id"]
    wait_for(lambda: status_of(relay, rid)["status"] == "undelivered", timeout=60, message=f"{rid} undelivered")
    return rid
