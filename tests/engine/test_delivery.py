"""The delivery engine end to end: relay (real HTTP, real store) → Discord emulator (real HTTP)."""

from __future__ import annotations

import base64
import os
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import Relay, result_payload, wait_for
from tests.engine.helpers import body_seen, file_seen, sha, titles
from tests.fakes.discord import Limit, RateLimits

LONG_BODY = "\n\n".join(
    f"## Section {i}\n\n" + " ".join(f"word{i}-{j} ✅ naïve ß" for j in range(180)) + "\n\n```python\nprint('x')\n```"
    for i in range(4))


def _metric(relay: Relay, name: str) -> float:
    for line in relay.client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _status(relay: Relay, rid: str) -> dict:
    return relay.client.get(f"/v1/results/{rid}").json()


def _finished(relay: Relay, rid: str) -> dict | None:
    got = _status(relay, rid)
    return got if got["status"] in ("delivered", "undelivered") else None


def test_all_three_destination_types_deliver_the_content_losslessly(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = delivering_relay(max_attachment_bytes=1024 * 1024)
    wid, _, url = discord.add_webhook()
    token = "interaction-token-abc"
    discord.add_interaction("4242", token, datetime.now(UTC))
    blob = os.urandom(2_500_000)  # split into 1 MiB parts by the relay
    payload = result_payload(
        body=LONG_BODY, mode="all", level="success",
        attachments=[{"filename": "data.bin", "content_base64": base64.b64encode(blob).decode()}],
        route=[{"type": "interaction", "application_id": "4242", "token": token,
                "created_at": datetime.now(UTC).isoformat()},
               {"type": "webhook", "url": url},
               {"type": "dm", "user_id": "777"}])
    rid = relay.post_result(payload).json()["id"]
    got = wait_for(lambda: _finished(relay, rid), timeout=60, message="result finished")
    assert got["status"] == "delivered", got
    assert [d["status"] for d in got["deliveries"]] == ["delivered"] * 3
    per_kind = {
        "interaction": discord.messages(webhook_id="4242", kind="interaction"),
        "webhook": discord.messages(webhook_id=wid, kind="webhook"),
        "dm": discord.messages(channel_id=discord.dm_channel_id("777"), kind="channel"),
    }
    for kind, messages in per_kind.items():
        assert messages, kind
        assert body_seen(messages) == LONG_BODY, kind
        assert sha(file_seen(messages, "data.bin")) == sha(blob), kind
        assert all(m.original_payload.get("allowed_mentions") == {"parse": []} for m in messages), kind
        delivery = got["deliveries"][["interaction", "webhook", "dm"].index(kind)]
        assert delivery["message_ids"] == [m.id for m in messages], kind
    assert all(m.nonce for m in per_kind["dm"])
    assert discord.rejected == []


def test_fifty_results_to_one_webhook_without_429s(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    # The channel's cap too, on a short window so the test stays quick; the relay is told the same.
    discord.set_rate_limits(RateLimits(webhook=Limit(5, 0.5), webhook_message=Limit(5, 0.5),
                                       webhook_channel=Limit(30, 4.0)))
    relay: Relay = delivering_relay(channel_limit="30/4")
    wid, _, url = discord.add_webhook()
    ids = [relay.post_result(result_payload(title=f"result {i}", body=None, route=[{"type": "webhook", "url": url}]))
           .json()["id"] for i in range(50)]
    wait_for(lambda: len(discord.messages(webhook_id=wid)) >= 50, timeout=90, message="50 messages")
    wait_for(lambda: all(_status(relay, rid)["status"] == "delivered" for rid in ids), timeout=30)
    assert discord.count_429() == 0
    seen = titles(discord.messages(webhook_id=wid))
    assert len(seen) == 50 and len(set(seen)) == 50
    # Order of a destination's results holds: they arrive in the order they were accepted.
    assert [int(t.rsplit(" ", 1)[1]) for t in seen] == list(range(50))


def test_faults_everything_delivered_nothing_duplicated_but_lost_responses(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = delivering_relay(discord_timeout=1.0, http_retry_attempts=3)
    hooks = [discord.add_webhook() for _ in range(4)]
    rules = [discord.inject("http_error", probability=0.08, status=s, path="/webhooks/") for s in (500, 502, 503, 504)]
    rules += [discord.inject("reset", probability=0.05, path="/webhooks/"),
              discord.inject("drop_response", probability=0.04, path="/webhooks/"),
              discord.inject("delay", probability=0.03, seconds=1.5, path="/webhooks/"),
              discord.inject("rate_limit", probability=0.05, retry_after=0.2, path="/webhooks/")]
    ids = [relay.post_result(result_payload(title=f"chaos {i}", route=[{"type": "webhook", "url": hooks[i % 4][2]}]))
           .json()["id"] for i in range(40)]
    wait_for(lambda: all(_finished(relay, rid) for rid in ids), timeout=120, message="all finished")
    assert {_status(relay, rid)["status"] for rid in ids} == {"delivered"}
    counts = Counter(t for wid, _, _ in hooks for t in titles(discord.messages(webhook_id=wid)))
    assert set(counts) == {f"chaos {i}" for i in range(40)}
    duplicates = sum(n - 1 for n in counts.values())
    lost_responses = sum(r.fired for r in rules if r.kind in ("drop_response", "delay"))
    assert duplicates <= lost_responses
    assert sum(r.fired for r in rules) > 0


@pytest.mark.parametrize(("status", "code", "message"), [
    (403, 50013, "Missing Permissions"),
    (400, 50035, "Invalid Form Body"),
    (404, 10015, "Unknown Webhook"),
    (403, 50001, "Missing Access"),
])
def test_permanent_errors_are_tried_once_and_the_route_moves_on(  # type: ignore[no-untyped-def]
    delivering_relay, discord, status: int, code: int, message: str
) -> None:
    relay: Relay = delivering_relay()
    bad_id, _, bad_url = discord.add_webhook()
    good_id, _, good_url = discord.add_webhook()
    discord.refuse_webhook(bad_id, status=status, code=code, message=message)
    route = [{"type": "webhook", "url": bad_url}, {"type": "webhook", "url": good_url}]
    rid = relay.post_result(result_payload(route=route)).json()["id"]
    got = wait_for(lambda: _finished(relay, rid), message="finished")
    assert got["status"] == "delivered"
    failed, delivered = got["deliveries"]
    assert failed["status"] == "failed" and failed["attempts"] == 1
    assert failed["last_error"]["http_status"] == status and failed["last_error"]["discord_code"] == code
    assert delivered["status"] == "delivered" and len(discord.messages(webhook_id=good_id)) == 1
    assert len([r for r in discord.rejected if f"/webhooks/{bad_id}/" in r.path]) == 1
    if code == 10015:
        # The destination is disabled: the next result fails fast, without asking Discord again.
        again = relay.post_result(result_payload(route=[{"type": "webhook", "url": bad_url}])).json()["id"]
        got = wait_for(lambda: _finished(relay, again), message="second finished")
        assert got["status"] == "undelivered"
        assert "disabled" in got["deliveries"][0]["last_error"]["message"]
        assert len([r for r in discord.rejected if f"/webhooks/{bad_id}/" in r.path]) == 1
        listed = relay.client.get("/v1/results", params={"status": "undelivered"}).json()["items"]
        assert [i["id"] for i in listed] == [again]


def test_expired_interaction_falls_through_to_the_webhook(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = delivering_relay()
    wid, _, url = discord.add_webhook()
    created = datetime.now(UTC) - timedelta(minutes=20)
    discord.add_interaction("99", "old-token", created)
    route = [{"type": "interaction", "application_id": "99", "token": "old-token", "created_at": created.isoformat()},
             {"type": "webhook", "url": url}]
    rid = relay.post_result(result_payload(route=route)).json()["id"]
    got = wait_for(lambda: _finished(relay, rid), message="finished")
    assert got["status"] == "delivered"
    assert got["deliveries"][0]["status"] == "failed" and "expired" in got["deliveries"][0]["last_error"]["message"]
    assert discord.messages(kind="interaction") == [] and discord.rejected == []  # never sent on a dead token
    assert len(discord.messages(webhook_id=wid)) == 1


def test_interaction_refused_as_expired_by_discord_moves_on(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = delivering_relay()
    wid, _, url = discord.add_webhook()
    now = datetime.now(UTC)
    discord.add_interaction("98", "tok", now)
    discord.clock.advance(16 * 60)  # Discord's clock says the token is dead; the relay's does not yet
    route = [{"type": "interaction", "application_id": "98", "token": "tok", "created_at": now.isoformat()},
             {"type": "webhook", "url": url}]
    rid = relay.post_result(result_payload(route=route)).json()["id"]
    got = wait_for(lambda: _finished(relay, rid), message="finished")
    assert got["status"] == "delivered"
    assert got["deliveries"][0]["last_error"]["discord_code"] == 50027 and got["deliveries"][0]["attempts"] == 1


def test_closed_dms_move_on_to_the_next_destination(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = delivering_relay()
    wid, _, url = discord.add_webhook()
    discord.close_dms("555")
    rid = relay.post_result(result_payload(route=[{"type": "dm", "user_id": "555"},
                                                  {"type": "webhook", "url": url}])).json()["id"]
    got = wait_for(lambda: _finished(relay, rid), message="finished")
    assert got["status"] == "delivered"
    assert got["deliveries"][0]["last_error"]["discord_code"] == 50007
    assert len(discord.messages(webhook_id=wid)) == 1


def test_cloudflare_429_stops_all_sending_for_the_ban(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = delivering_relay(cloudflare_backoff=4.0)
    bans_before = _metric(relay, "relay_cloudflare_bans_total")
    wid, _, url = discord.add_webhook()
    discord.inject("cloudflare", times=1, path="/webhooks/")
    rid = relay.post_result(result_payload(route=[{"type": "webhook", "url": url}])).json()["id"]
    wait_for(lambda: discord.count_429("cloudflare") == 1, message="the ban")
    requests_at_ban = discord.counters().requests
    relay.post_result(result_payload(title="during the ban", route=[{"type": "webhook", "url": url}]))
    import time

    time.sleep(2.0)  # inside the 4 s ban: nothing may reach Discord
    assert discord.counters().requests == requests_at_ban
    assert _status(relay, rid)["deliveries"][0]["last_error"]["http_status"] == 429
    assert _metric(relay, "relay_cloudflare_bans_total") == bans_before + 1  # (the registry is per process)
    wait_for(lambda: len(discord.messages(webhook_id=wid)) == 2, timeout=30, message="delivered after the ban")
    assert discord.count_429("cloudflare") == 1


def test_a_failed_third_message_never_resends_the_first_two(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    discord.set_rate_limits(RateLimits(webhook=Limit(2, 3.0), webhook_message=Limit(2, 3.0)))
    relay: Relay = delivering_relay(max_body_messages=10, http_retry_attempts=2)
    wid, _, url = discord.add_webhook()
    body = "\n\n".join("x" * 3000 + f" paragraph {i}" for i in range(9))  # 5 messages of embeds

    def break_third() -> None:
        wait_for(lambda: len(discord.messages(webhook_id=wid)) >= 2, timeout=30)
        discord.inject("http_error", times=2, status=503, path=f"/webhooks/{wid}/")

    watcher = threading.Thread(target=break_third)
    watcher.start()
    rid = relay.post_result(result_payload(body=body, route=[{"type": "webhook", "url": url}])).json()["id"]
    watcher.join()
    got = wait_for(lambda: _finished(relay, rid), timeout=60, message="finished")
    messages = discord.messages(webhook_id=wid)
    assert got["status"] == "delivered" and got["deliveries"][0]["attempts"] == 2
    assert len(messages) == len(got["deliveries"][0]["message_ids"]) == 5
    assert body_seen(messages) == body
    assert len({m.id for m in messages}) == 5 and len({str(m.original_payload) for m in messages}) == 5


def test_413_rerenders_smaller_instead_of_resending(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    from tests.fakes.discord import DiscordLimits

    discord.set_limits(DiscordLimits(max_file_bytes=1024 * 1024))
    relay: Relay = delivering_relay()
    wid, _, url = discord.add_webhook()
    blob = os.urandom(3 * 1024 * 1024)
    rid = relay.post_result(result_payload(route=[{"type": "webhook", "url": url}], attachments=[
        {"filename": "big.bin", "content_base64": base64.b64encode(blob).decode()}])).json()["id"]
    got = wait_for(lambda: _finished(relay, rid), timeout=60, message="finished")
    assert got["status"] == "delivered"
    messages = discord.messages(webhook_id=wid)
    assert sha(file_seen(messages, "big.bin")) == sha(blob)
    too_large = [r for r in discord.rejected if r.status == 413]
    assert 1 <= len(too_large) <= 3  # 8 MiB → 4 → 2 → 1: each size tried once, never the same request twice


def test_undelivered_then_redelivered_after_the_webhook_is_fixed(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = delivering_relay()
    wid, _, url = discord.add_webhook()
    discord.refuse_webhook(wid, status=403, code=50013, message="Missing Permissions")
    rid = relay.post_result(result_payload(route=[{"type": "webhook", "url": url}])).json()["id"]
    assert wait_for(lambda: _finished(relay, rid))["status"] == "undelivered"
    discord.accept_webhook(wid)
    assert relay.client.post(f"/v1/results/{rid}/redeliver").status_code == 202
    got = wait_for(lambda: _finished(relay, rid), message="redelivered")
    assert got["status"] == "delivered" and len(discord.messages(webhook_id=wid)) == 1
    other_id, _, other_url = discord.add_webhook()
    relay.client.post(f"/v1/results/{rid}/redeliver", json={"route": [{"type": "webhook", "url": other_url}]})
    wait_for(lambda: len(discord.messages(webhook_id=other_id)) == 1, message="new route")
    wait_for(lambda: _status(relay, rid)["status"] == "delivered")


def test_mode_all_reports_which_destinations_made_it(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = delivering_relay()
    ok_id, _, ok_url = discord.add_webhook()
    bad_id, _, bad_url = discord.add_webhook()
    discord.remove_webhook(bad_id)
    rid = relay.post_result(result_payload(mode="all", route=[{"type": "webhook", "url": bad_url},
                                                              {"type": "webhook", "url": ok_url}])).json()["id"]
    got = wait_for(lambda: _finished(relay, rid), message="finished")
    assert got["status"] == "undelivered"
    assert [d["status"] for d in got["deliveries"]] == ["failed", "delivered"]
    assert got["deliveries"][0]["last_error"] == {"http_status": 404, "discord_code": 10015,
                                                  "message": "Unknown Webhook"}


def test_a_disabled_destination_is_re_enabled_through_the_api(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = delivering_relay()
    wid, token, url = discord.add_webhook()
    discord.remove_webhook(wid)
    first = relay.post_result(result_payload(route=[{"type": "webhook", "url": url}])).json()["id"]
    assert wait_for(lambda: _finished(relay, first))["status"] == "undelivered"
    [disabled] = relay.client.get("/v1/destinations", params={"disabled": "true"}).json()["items"]
    assert disabled["key"] == f"webhook:{wid}" and "10015" in disabled["disabled_reason"]
    assert token not in relay.client.get("/v1/destinations").text
    discord.add_webhook(wid, token)  # the channel owner re-created it
    enabled = relay.client.post(f"/v1/destinations/webhook:{wid}/enable")
    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    assert relay.client.post("/v1/destinations/webhook:999/enable").status_code == 404
    assert relay.client.post(f"/v1/results/{first}/redeliver").status_code == 202
    assert wait_for(lambda: _finished(relay, first))["status"] == "delivered"
    assert len(discord.messages(webhook_id=wid)) == 1
