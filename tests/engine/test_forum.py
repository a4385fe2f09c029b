"""Forum and media channels, silent messages: over real HTTP against the emulator, on both stores."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from tests.conftest import Relay, result_payload, wait_for
from tests.engine.helpers import body_seen, file_seen, sha
from tests.fakes.discord import Limit, RateLimits

SUPPRESS = 1 << 12
BODY = "\n\n".join("z" * 2900 + f" paragraph {i}" for i in range(5))  # three messages of embeds


def _finished(relay: Relay, rid: str) -> dict | None:
    got = relay.client.get(f"/v1/results/{rid}").json()
    return got if got["status"] in ("delivered", "undelivered") else None


def _forum_route(url: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"type": "webhook", "url": url, "thread_name": "Nightly analysis", **extra}]


def test_a_result_opens_one_forum_post_and_every_message_goes_into_it(delivering_relay: Any, discord: Any) -> None:
    # One request per second: continuations really are separate sends, each needing the thread id.
    discord.set_rate_limits(RateLimits(webhook=Limit(1, 0.3)))
    relay: Relay = delivering_relay()
    forum = "710000000000000001"
    wid, _, url = discord.add_webhook(channel_id=forum, forum=True)
    blob = b"attachment bytes " * 100
    rid = relay.post_result(result_payload(body=BODY, route=_forum_route(url, applied_tags=["11", "12"]),
                                           attachments=[{"filename": "data.bin", "content_base64":
                                                         base64.b64encode(blob).decode()}])).json()["id"]
    got = wait_for(lambda: _finished(relay, rid), message="finished")
    assert got["status"] == "delivered", got
    messages = discord.messages(webhook_id=wid)
    [thread] = discord.threads(forum)
    assert (thread.name, thread.applied_tags, thread.id) == ("Nightly analysis", ("11", "12"), messages[0].id)
    assert len(messages) == 3 and {m.channel_id for m in messages} == {thread.id}
    assert "thread_name" in messages[0].original_payload
    assert all("thread_name" not in m.original_payload for m in messages[1:])  # later ones post into it
    assert body_seen(messages) == BODY and sha(file_seen(messages, "data.bin")) == sha(blob)
    assert got["deliveries"][0]["message_ids"] == [m.id for m in messages]
    assert got["deliveries"][0]["destination"]["thread_name"] == "Nightly analysis"
    assert discord.rejected == []


def test_the_post_and_the_message_that_opened_it_are_recorded_in_one_transaction(
        delivering_relay: Any, discord: Any) -> None:
    """A crash between storing the new post and storing message 1's id would send message 1 again,
    into the post it had just opened: both are one commit, and every message is marked sent once."""
    from sqlalchemy import text

    discord.set_rate_limits(RateLimits(webhook=Limit(1, 0.3)))
    relay: Relay = delivering_relay()
    forum = "710000000000000009"
    wid, _, url = discord.add_webhook(channel_id=forum, forum=True)
    rid = relay.post_result(result_payload(body=BODY, route=_forum_route(url))).json()["id"]
    got = wait_for(lambda: _finished(relay, rid), message="finished")
    assert got["status"] == "delivered", got
    messages = discord.messages(webhook_id=wid)
    assert len(messages) == 3
    with relay.runtime.db.engine.connect() as conn:
        events = conn.execute(text(
            "SELECT e.outcome, e.message, e.at FROM delivery_events e JOIN deliveries d ON d.id = e.delivery_id "
            "WHERE d.result_id = :r ORDER BY e.id"), {"r": rid}).all()
        sent_at = conn.execute(text(
            "SELECT p.message_id, p.sent_at FROM planned_messages p JOIN deliveries d ON d.id = p.delivery_id "
            "WHERE d.result_id = :r ORDER BY p.seq"), {"r": rid}).all()
    assert [e.message for e in events if e.outcome == "sent"] == [f"message {m.id}" for m in messages]
    [created] = [e for e in events if e.outcome == "thread_created"]
    assert created.message == f"forum post {messages[0].id}"
    # One transaction, one clock reading: the post's event and message 1's mark carry the same instant.
    assert [r.message_id for r in sent_at] == [m.id for m in messages]
    assert str(sent_at[0].sent_at)[:26] == str(created.at)[:26]


def test_a_retry_after_message_one_stays_in_the_same_post(delivering_relay: Any, discord: Any) -> None:
    discord.set_rate_limits(RateLimits(webhook=Limit(1, 0.3)))
    relay: Relay = delivering_relay(http_retry_attempts=1)
    forum = "710000000000000002"
    wid, _, url = discord.add_webhook(channel_id=forum, forum=True)
    rid = relay.post_result(result_payload(body=BODY, route=_forum_route(url))).json()["id"]
    wait_for(lambda: len(discord.messages(webhook_id=wid)) >= 1, message="first message")
    discord.inject("http_error", times=1, status=503, method="POST", path=f"/webhooks/{wid}/")
    got = wait_for(lambda: _finished(relay, rid), message="finished")
    assert got["status"] == "delivered" and got["deliveries"][0]["attempts"] >= 1
    assert len(discord.threads(forum)) == 1
    assert {m.channel_id for m in discord.messages(webhook_id=wid)} == {discord.threads(forum)[0].id}


def test_progress_opens_the_post_and_the_result_follows_it(delivering_relay: Any, discord: Any) -> None:
    relay: Relay = delivering_relay()
    forum = "710000000000000003"
    wid, _, url = discord.add_webhook(channel_id=forum, forum=True)
    route = _forum_route(url)
    resp = relay.client.post("/v1/progress", json={"workflow_id": "wf_forum", "route": route, "stage": "Crunching",
                                                   "current": 1, "total": 4})
    assert resp.status_code == 202, resp.text
    [progress] = wait_for(lambda: discord.messages(webhook_id=wid), message="progress message")
    rid = relay.post_result(result_payload(workflow_id="wf_forum", body=BODY, route=route)).json()["id"]
    got = wait_for(lambda: _finished(relay, rid), message="finished")
    assert got["status"] == "delivered"
    [thread] = discord.threads(forum)
    messages = discord.messages(webhook_id=wid)
    assert thread.id == progress.id and {m.channel_id for m in messages} == {thread.id} and len(messages) == 4
    # The progress message turns into "done" by an edit, which must name the thread to find it.
    wait_for(lambda: (discord.message(progress.id).edits or None), message="progress edited to done")
    assert discord.message(progress.id).embeds[0]["title"].endswith("Done")


def test_a_forum_webhook_without_a_thread_name_fails_with_a_reason(delivering_relay: Any, discord: Any) -> None:
    relay: Relay = delivering_relay()
    _, _, url = discord.add_webhook(forum=True)
    rid = relay.post_result(result_payload(route=[{"type": "webhook", "url": url}])).json()["id"]
    got = wait_for(lambda: _finished(relay, rid), message="finished")
    error = got["deliveries"][0]["last_error"]
    assert got["status"] == "undelivered" and got["deliveries"][0]["attempts"] == 1
    assert (error["http_status"], error["discord_code"]) == (400, 220001)
    assert "forum channel: give a thread_name or thread_id" in error["message"]


def test_a_thread_name_on_a_text_channel_webhook_fails_with_a_reason(delivering_relay: Any, discord: Any) -> None:
    relay: Relay = delivering_relay()
    _, _, url = discord.add_webhook()
    rid = relay.post_result(result_payload(route=_forum_route(url))).json()["id"]
    got = wait_for(lambda: _finished(relay, rid), message="finished")
    error = got["deliveries"][0]["last_error"]
    assert (got["status"], error["discord_code"]) == ("undelivered", 220003)
    assert "only works in forum or media channels" in error["message"]


def test_thread_fields_that_cannot_work_are_refused_with_422(relay: Relay) -> None:
    url = "https://discord.com/api/webhooks/123456789012345678/tok"
    cases = {
        "both": [{"type": "webhook", "url": url, "thread_name": "x", "thread_id": "5"}],
        "both_in_url": [{"type": "webhook", "url": url + "?thread_id=5", "thread_name": "x"}],
        "six_tags": _forum_route(url, applied_tags=[str(i) for i in range(1, 7)]),
        "tags_alone": [{"type": "webhook", "url": url, "applied_tags": ["1"]}],
        "blank_name": [{"type": "webhook", "url": url, "thread_name": "   "}],
        "long_name": [{"type": "webhook", "url": url, "thread_name": "n" * 101}],
        "silent_string": [{"type": "webhook", "url": url, "silent": "yes"}],
    }
    for name, route in cases.items():
        resp = relay.post_result(result_payload(route=route))
        assert resp.status_code == 422, (name, resp.text)
        error = resp.json()["error"]
        assert error["details"] and "route.0" in str(error["details"]), (name, error)


def test_silent_results_and_destinations_carry_suppress_notifications(delivering_relay: Any, discord: Any) -> None:
    relay: Relay = delivering_relay()
    wid_a, _, url_a = discord.add_webhook()
    wid_b, _, url_b = discord.add_webhook()
    wid_c, _, url_c = discord.add_webhook()
    ids = [
        relay.post_result(result_payload(title="a", body=BODY, silent=True,
                                         route=[{"type": "webhook", "url": url_a}])).json()["id"],
        relay.post_result(result_payload(title="b", route=[{"type": "webhook", "url": url_b, "silent": True}])
                          ).json()["id"],
        relay.post_result(result_payload(title="c", route=[{"type": "webhook", "url": url_c}])).json()["id"],
    ]
    for rid in ids:
        assert wait_for(lambda rid=rid: _finished(relay, rid), message="finished")["status"] == "delivered"
    loud = discord.messages(webhook_id=wid_c)
    assert len(loud) == 1 and not (loud[0].original_payload.get("flags") or 0) & SUPPRESS
    for wid in (wid_a, wid_b):
        messages = discord.messages(webhook_id=wid)
        assert messages and all(m.original_payload["flags"] & SUPPRESS for m in messages), wid
    assert len(discord.messages(webhook_id=wid_a)) == 3
    content = relay.client.get(f"/v1/results/{ids[0]}/content").json()
    assert content["silent"] is True
    assert relay.client.get(f"/v1/results/{ids[2]}/content").json()["silent"] is False


def test_emulator_forum_rules(discord: Any) -> None:
    discord.set_rate_limits(RateLimits(webhook=Limit(50, 1.0), webhook_message=Limit(50, 1.0)))
    wid, token, url = discord.add_webhook(channel_id="720000000000000001", forum=True)
    embed = {"embeds": [{"description": "hi"}]}
    answers = [httpx.post(url, params={"wait": "true"}, json=body) for body in (
        embed, {**embed, "thread_name": "a"}, {**embed, "thread_name": "a"})]
    assert answers[0].status_code == 400 and answers[0].json()["code"] == 220001
    post = answers[1].json()
    assert post["channel_id"] == post["id"] and discord.thread(post["id"]).parent_id == "720000000000000001"
    both = httpx.post(url, params={"wait": "true", "thread_id": post["id"]}, json={**embed, "thread_name": "b"})
    assert both.json()["code"] == 220002
    elsewhere = httpx.post(url, params={"wait": "true", "thread_id": "42"}, json=embed)
    assert (elsewhere.status_code, elsewhere.json()["code"]) == (404, 10003)
    inside = httpx.post(url, params={"wait": "true", "thread_id": post["id"]}, json=embed).json()
    assert inside["channel_id"] == post["id"]
    edit = f"{url}/messages/{inside['id']}"
    assert httpx.patch(edit, json={"content": "x"}).status_code == 404  # a thread message needs ?thread_id=
    assert httpx.patch(edit, params={"thread_id": post["id"]}, json={"content": "x"}).status_code == 200
    _, _, text_url = discord.add_webhook()
    assert httpx.post(text_url, json={**embed, "thread_name": "a"}).json()["code"] == 220003
    too_many = httpx.post(url, json={**embed, "thread_name": "a", "applied_tags": [str(i) for i in range(6)]})
    assert too_many.status_code == 400 and too_many.json()["code"] == 50035
    assert len(discord.threads("720000000000000001")) == 2
