"""``/results`` end to end: the emulator signs and sends interactions to a live relay (real HTTP,
real store on SQLite and PostgreSQL), and the relay answers, defers, edits @original and delivers."""

from __future__ import annotations

import base64
import os

from schemas.tables import Destination
from tests.conftest import Relay, wait_for
from tests.engine.helpers import body_seen, file_seen, sha
from tests.interactions.conftest import endpoint, status_of, undelivered_result

OWNER, OTHER = "700000000000000001", "700000000000000002"
LONG_BODY = "\n\n".join(f"## Part {i}\n\n" + " ".join(f"w{i}-{j}" for j in range(700)) for i in range(3))


def _contents(message) -> str:  # type: ignore[no-untyped-def]
    return message.content


def test_ping_is_answered_with_pong(pickup_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = pickup_relay()
    call = discord.interactions.ping(endpoint(relay))
    assert (call.status, call.body, call.failure) == (200, {"type": 1}, None)


def test_bad_or_missing_signatures_get_401_and_touch_nothing(pickup_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = pickup_relay()
    rid = undelivered_result(relay, discord, user_id=OWNER)
    url = endpoint(relay)
    sender = discord.interactions
    forged = "ab" * 64
    refused_before = _metric(relay, 'relay_discord_interactions_total{outcome="bad_signature",type="unknown"}')
    calls = [
        sender.ping(url, signature=forged),  # Discord's own probe: a well-formed, wrong signature
        sender.ping(url, sign=False),
        sender.ping(url, signature="not hex"),
        sender.command(url, user_id=OWNER, subcommand="list", signature=forged),
        # A genuine signature over a stale timestamp: a replayed capture.
        sender.ping(url, timestamp=str(int(discord.clock.now()) - 3600)),
        sender.ping(url, timestamp=str(int(discord.clock.now()) + 3600)),
    ]
    for call in calls:
        assert call.status == 401, call
        assert call.body["error"]["code"] == "invalid_signature"
    # Nothing was deferred or edited, and the result is as it was.
    assert [m for m in discord.messages(kind="interaction")] == []
    assert status_of(relay, rid)["status"] == "undelivered"
    # Every refusal is counted.
    after = _metric(relay, 'relay_discord_interactions_total{outcome="bad_signature",type="unknown"}')
    assert after - refused_before == len(calls)


def _metric(relay: Relay, series: str) -> float:
    for line in relay.client.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return 0.0


def test_the_endpoint_is_off_without_its_settings(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = delivering_relay()
    call = discord.interactions.ping(endpoint(relay))
    assert call.status == 404
    assert "RELAY_DISCORD_PUBLIC_KEY" in call.body["error"]["message"]


def test_list_show_and_send_here_deliver_the_whole_result_through_the_new_token(  # type: ignore[no-untyped-def]
        pickup_relay, discord) -> None:
    relay: Relay = pickup_relay(max_attachment_bytes=1024 * 1024)
    blob = os.urandom(2_200_000)  # sent as 1 MiB parts, as any delivery would
    rid = undelivered_result(relay, discord, user_id=OWNER, title="Quarterly report", body=LONG_BODY,
                             attachments=[{"filename": "data.bin",
                                           "content_base64": base64.b64encode(blob).decode()}])
    url = endpoint(relay)
    channel = "910000000000000001"

    listing = discord.interactions.command(url, user_id=OWNER, subcommand="list", channel_id=channel)
    assert listing.status == 200 and listing.body == {"type": 5, "data": {"flags": 64}}
    page = listing.wait_original()
    assert page.payload["flags"] & 64  # ephemeral: only the user sees it
    assert rid in page.content and "Quarterly report" in page.content
    assert "command follow-up: the command had expired" in page.content
    assert "channel webhook: the webhook was deleted" in page.content

    shown = discord.interactions.command(url, user_id=OWNER, subcommand="show", options={"id": rid},
                                         channel_id=channel)
    view = shown.wait_original()
    assert view.payload["embeds"][0]["title"].endswith("Quarterly report")
    assert "data.bin" in view.content
    labels = [b["label"] for row in view.payload["components"] for b in row["components"]]
    assert labels == ["Send here", "DM me", "Dismiss"]
    send_id = view.payload["components"][0]["components"][0]["custom_id"]
    assert send_id == f"rr:send:{rid}"

    click = discord.interactions.click(url, message=view, custom_id=send_id, user_id=OWNER)
    assert click.status == 200 and click.body == {"type": 6}
    got = wait_for(lambda: (s := status_of(relay, rid))["status"] == "delivered" and s, timeout=60,
                   message="delivered through the click's token")
    [delivery] = got["deliveries"]
    assert delivery["destination"]["type"] == "interaction"
    arrived = [m for m in discord.messages(kind="interaction", channel_id=channel) if m.id in delivery["message_ids"]]
    assert [m.id for m in arrived] == delivery["message_ids"]
    assert all(not (m.payload.get("flags") or 0) & 64 for m in arrived)  # posted for the channel to see
    assert body_seen(arrived) == LONG_BODY
    assert sha(file_seen(arrived, "data.bin")) == sha(blob)
    # The token used is the click's own, fresh one; the expired one was never used.
    assert all(discord.interactions.record_for_token(m.webhook_id, click.token) for m in arrived)
    assert not [r for r in discord.rejected if r.status == 401]


def test_dm_me_delivers_by_dm_and_dismiss_marks_it_picked_up(pickup_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = pickup_relay()
    rid = undelivered_result(relay, discord, user_id=OWNER, title="DM me please")
    url = endpoint(relay)
    view = discord.interactions.command(url, user_id=OWNER, subcommand="show", options={"id": rid}).wait_original()
    discord.interactions.click(url, message=view, custom_id=f"rr:dm:{rid}", user_id=OWNER)
    got = wait_for(lambda: (s := status_of(relay, rid))["status"] == "delivered" and s, timeout=60,
                   message="delivered by DM")
    assert got["deliveries"][0]["destination"] == {"type": "dm", "user_id": OWNER}
    dms = discord.messages(channel_id=discord.dm_channel_id(OWNER), kind="channel")
    assert dms and dms[0].embeds[0]["title"].endswith("DM me please")

    other = undelivered_result(relay, discord, user_id=OWNER, title="Not needed")
    view = discord.interactions.command(url, user_id=OWNER, subcommand="show", options={"id": other}).wait_original()
    click = discord.interactions.click(url, message=view, custom_id=f"rr:dismiss:{other}", user_id=OWNER)
    wait_for(lambda: status_of(relay, other)["status"] == "picked_up", message="dismissed")
    edited = click.wait_original(lambda m: "Dismissed" in m.content)
    assert edited.payload["components"] == []


def test_another_user_neither_lists_nor_opens_nor_clicks_it(pickup_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = pickup_relay()
    rid = undelivered_result(relay, discord, user_id=OWNER, title="Private analysis")
    url = endpoint(relay)
    sender = discord.interactions

    page = sender.command(url, user_id=OTHER, subcommand="list", options={"status": "all"}).wait_original()
    assert rid not in page.content and "no results" in page.content
    opened = sender.command(url, user_id=OTHER, subcommand="show", options={"id": rid}).wait_original()
    assert "You have no result" in opened.content and "Private analysis" not in opened.content
    assert opened.payload.get("embeds") == [] and opened.payload.get("components") == []
    choices = sender.autocomplete(url, user_id=OTHER, subcommand="show", option="id", typed="res_").choices
    assert choices == []

    # A forged click: the other user's own message, a custom id naming the owner's result.
    edits = len(opened.edits)
    for n, action in enumerate(("send", "dm", "dismiss"), start=1):
        click = sender.click(url, message=opened, custom_id=f"rr:{action}:{rid}", user_id=OTHER)
        assert click.status == 200
        # Each click ends in one more edit of the clicked message: wait for this click's own.
        answer = click.wait_original(lambda m, want=edits + n: len(m.edits) >= want)
        assert "You have no result" in answer.content
    got = status_of(relay, rid)
    assert got["status"] == "undelivered" and len(got["deliveries"]) == 2  # no new route was queued
    assert discord.dm_channel_id(OTHER) is None
    # A guild's Manage Server permission does not reach results not routed to that guild.
    managed = sender.command(url, user_id=OTHER, subcommand="list", options={"status": "all"},
                             guild_id="920000000000000001", permissions=1 << 5).wait_original()
    assert rid not in managed.content


def test_autocomplete_suggests_own_ids_and_workflows_by_prefix_at_most_25(pickup_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = pickup_relay()
    ids = [undelivered_result(relay, discord, user_id=OWNER, title=f"run {i}", workflow_id=f"wf-{i % 3}-x")
           for i in range(4)]
    for i in range(26):  # owned through discord_user_ids, still pending: autocomplete does not care
        relay.post_result({"title": f"bulk {i}", "workflow_id": f"bulk-{i}", "discord_user_ids": [OWNER],
                           "route": [{"type": "dm", "user_id": "799999999999999999"}]})
    url = endpoint(relay)
    sender = discord.interactions
    everything = sender.autocomplete(url, user_id=OWNER, subcommand="show", option="id", typed="")
    assert everything.callback_type == 8 and len(everything.choices) == 25
    by_id = sender.autocomplete(url, user_id=OWNER, subcommand="show", option="id", typed=ids[2][:-1]).choices
    assert [c["value"] for c in by_id] == [ids[2]]
    by_workflow = sender.autocomplete(url, user_id=OWNER, subcommand="show", option="id", typed="wf-1").choices
    assert [c["value"] for c in by_workflow] == [ids[1]]
    workflows = sender.autocomplete(url, user_id=OWNER, subcommand="list", option="workflow", typed="wf-").choices
    assert sorted(c["value"] for c in workflows) == ["wf-0-x", "wf-1-x", "wf-2-x"]
    # LIKE wildcards are the user's text, not patterns.
    assert sender.autocomplete(url, user_id=OWNER, subcommand="show", option="id", typed="%").choices == []


def test_pages_of_ten_with_previous_and_next(pickup_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = pickup_relay()
    for i in range(12):
        relay.post_result({"title": f"item {i:02d}", "discord_user_ids": [OWNER],
                           "route": [{"type": "dm", "user_id": "799999999999999999"}]})
    url = endpoint(relay)
    sender = discord.interactions
    first = sender.command(url, user_id=OWNER, subcommand="list", options={"status": "all"}).wait_original()
    shown = [line for line in first.content.splitlines() if line.startswith("•")]
    assert len(shown) == 10 and "item 11" in shown[0]  # newest first
    previous, following = first.payload["components"][0]["components"]
    assert previous["disabled"] and not following["disabled"]
    click = sender.click(url, message=first, custom_id=following["custom_id"], user_id=OWNER)
    second = click.wait_original(lambda m: "page 2" in m.content)
    assert [line for line in second.content.splitlines() if line.startswith("•")][-1].count("item 00") == 1
    assert second.payload["components"][0]["components"][1]["disabled"]


def test_a_guild_manager_sees_the_results_routed_to_their_guild(pickup_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = pickup_relay()
    guild, elsewhere = "940000000000000001", "940000000000000002"
    wid, _, url = discord.add_webhook(guild_id=guild)
    first = relay.post_result({"title": "reached the channel", "route": [{"type": "webhook", "url": url}]}).json()["id"]
    wait_for(lambda: status_of(relay, first)["status"] == "delivered", message="first delivered")
    # The relay learnt the webhook's guild; then the webhook lost its permission.
    wait_for(lambda: _guild_of(relay, wid) == guild, message="guild learnt")
    discord.refuse_webhook(wid, status=403, code=50013, message="Missing Permissions")
    lost = relay.post_result({"title": "lost in the channel", "route": [{"type": "webhook", "url": url}]}).json()["id"]
    wait_for(lambda: status_of(relay, lost)["status"] == "undelivered", message="second undelivered")
    endpoint_url = endpoint(relay)
    sender = discord.interactions
    manager = sender.command(endpoint_url, user_id=OTHER, subcommand="list", guild_id=guild,
                             permissions=1 << 5).wait_original()
    assert lost in manager.content and first not in manager.content  # undelivered only, by default
    assert "the relay lacks permission" in manager.content
    admin = sender.command(endpoint_url, user_id=OTHER, subcommand="list", options={"status": "all"},
                           guild_id=guild, permissions=1 << 3).wait_original()
    assert lost in admin.content and first in admin.content
    member = sender.command(endpoint_url, user_id=OTHER, subcommand="list", options={"status": "all"},
                            guild_id=guild, permissions=(1 << 10) | (1 << 11)).wait_original()
    assert lost not in member.content and first not in member.content
    other_guild = sender.command(endpoint_url, user_id=OTHER, subcommand="list", options={"status": "all"},
                                 guild_id=elsewhere, permissions=1 << 5).wait_original()
    assert lost not in other_guild.content
    # The manager may open it and have it sent; a plain member may not.
    view = sender.command(endpoint_url, user_id=OTHER, subcommand="show", options={"id": lost}, guild_id=guild,
                          permissions=1 << 5).wait_original()
    assert view.payload["components"]
    refused = sender.command(endpoint_url, user_id=OTHER, subcommand="show", options={"id": lost}, guild_id=guild,
                             permissions=0).wait_original()
    assert "You have no result" in refused.content


def _guild_of(relay: Relay, webhook_id: str) -> str | None:
    with relay.runtime.db.session() as session:
        row = session.get(Destination, f"webhook:{webhook_id}")
        return row.guild_id if row else None


def test_a_huge_unsigned_body_is_refused_before_it_is_read(pickup_relay) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = pickup_relay()
    response = relay.client.post("/discord/interactions", content=b"{" + b" " * 300_000 + b"}",
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"


def test_dm_me_without_a_bot_token_says_so_and_queues_nothing(pickup_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = pickup_relay(discord_bot_token=None)
    rid = undelivered_result(relay, discord, user_id=OWNER, title="No bot here")
    url = endpoint(relay)
    view = discord.interactions.command(url, user_id=OWNER, subcommand="show", options={"id": rid}).wait_original()
    click = discord.interactions.click(url, message=view, custom_id=f"rr:dm:{rid}", user_id=OWNER)
    answer = click.wait_original(lambda m: "cannot DM" in m.content)
    assert answer.payload["components"]  # the other buttons still work
    got = status_of(relay, rid)
    assert got["status"] == "undelivered" and len(got["deliveries"]) == 2
