"""Progress messages edited in place and coalesced; hand-off notices before an interaction expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import Relay, result_payload, wait_for
from tests.fakes.discord import Limit, RateLimits


def _progress(relay: Relay, route: list[dict], **state: object) -> dict:
    resp = relay.client.post("/v1/progress", json={"workflow_id": "wf_p", "route": route, **state})
    assert resp.status_code == 202, resp.text
    return resp.json()


def test_progress_message_created_once_edited_in_place_coalesced_then_done(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    discord.set_rate_limits(RateLimits(webhook_message=Limit(1, 1.5)))  # edits are scarce: they must coalesce
    relay: Relay = delivering_relay()
    wid, _, url = discord.add_webhook()
    route = [{"type": "webhook", "url": url}, {"type": "dm", "user_id": "1"}]
    first = _progress(relay, route, stage="Downloading", current=0, total=20)
    assert first["destinations"] == 1 and "DMs" in first["skipped"][0]
    wait_for(lambda: len(discord.messages(webhook_id=wid)) == 1, message="progress message created")
    for i in range(1, 21):
        _progress(relay, route, stage="Analysing", current=i, total=20, message=f"segment {i}")
    def shows_last() -> bool:
        [m] = discord.messages(webhook_id=wid)
        return "20/20" in m.payload["embeds"][0]["description"]
    wait_for(shows_last, timeout=30, message="newest state shown")
    [message] = discord.messages(webhook_id=wid)
    assert 1 <= len(message.edits) < 20  # coalesced: far fewer edits than updates
    assert discord.count_429() == 0
    rid = relay.post_result(result_payload(workflow_id="wf_p", route=[{"type": "webhook", "url": url}])).json()["id"]
    wait_for(lambda: relay.client.get(f"/v1/results/{rid}").json()["status"] == "delivered")
    wait_for(lambda: discord.messages(webhook_id=wid)[0].payload["embeds"][0]["title"] == "✅ Done",
             timeout=30, message="progress shows done")
    assert len(discord.messages(webhook_id=wid)) == 2  # the progress message and the result


def test_handoff_notice_when_the_interaction_is_about_to_expire(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = delivering_relay(interaction_margin=60)
    wid, _, url = discord.add_webhook()
    created = datetime.now(UTC) - timedelta(minutes=14, seconds=10)  # 50 s left: inside the 60 s margin
    discord.add_interaction("31", "tok-31", created)
    route = [{"type": "interaction", "application_id": "31", "token": "tok-31", "created_at": created.isoformat()},
             {"type": "webhook", "url": url}]
    _progress(relay, route, stage="Transcribing", current=3, total=10)
    notice = wait_for(lambda: [m for m in discord.messages(kind="interaction") if "Still working" in m.content],
                      timeout=30, message="hand-off notice")
    assert len(notice) == 1 and "posted in this channel by webhook" in notice[0].content
    # The late result goes to the webhook; the dead token is not used again, and no second notice.
    rid = relay.post_result(result_payload(workflow_id="wf_p", route=route)).json()["id"]
    got = wait_for(lambda: (r := relay.client.get(f"/v1/results/{rid}").json())["status"] == "delivered" and r)
    assert got["deliveries"][0]["status"] == "failed" and got["deliveries"][1]["status"] == "delivered"
    assert len([m for m in discord.messages(kind="interaction") if "Still working" in m.content]) == 1


def test_late_result_on_expiring_interaction_sends_notice_then_webhook(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = delivering_relay(interaction_margin=60)
    wid, _, url = discord.add_webhook()
    created = datetime.now(UTC) - timedelta(minutes=14, seconds=20)
    discord.add_interaction("32", "tok-32", created)
    route = [{"type": "interaction", "application_id": "32", "token": "tok-32", "created_at": created.isoformat()},
             {"type": "dm", "user_id": "8"}]
    rid = relay.post_result(result_payload(route=route)).json()["id"]
    wait_for(lambda: relay.client.get(f"/v1/results/{rid}").json()["status"] == "delivered")
    [notice] = discord.messages(kind="interaction")
    assert "sent to you by DM" in notice.content
    assert len(discord.messages(kind="channel")) == 1
