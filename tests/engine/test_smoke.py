"""Smoke: a result reaches the emulator's webhook."""

from __future__ import annotations

from tests.conftest import result_payload, wait_for


def test_webhook_delivery(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay = delivering_relay()
    wid, token, url = discord.add_webhook()
    rid = relay.post_result(result_payload(route=[{"type": "webhook", "url": url}])).json()["id"]
    got = wait_for(lambda: (r := relay.client.get(f"/v1/results/{rid}").json())["status"] == "delivered" and r,
                   message="delivered")
    assert got["deliveries"][0]["status"] == "delivered"
    msgs = discord.messages(webhook_id=wid)
    assert len(msgs) == 1 and got["deliveries"][0]["message_ids"] == [msgs[0].id]
