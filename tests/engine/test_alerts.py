"""Operator alerts: coalesced digests to RELAY_ALERT_WEBHOOK, over real HTTP, on both stores.

The window is configured short (``alert_window``) so the tests need not wait a minute; they check
the spacing of the digests Discord recorded against that window, and that every result is named.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from delivery.alerts import DESCRIPTION_LIMIT, digest
from schemas.work import PendingAlert
from tests.conftest import Relay, result_payload, wait_for

WINDOW = 1.5


def _metric(relay: Relay, name: str) -> float:
    text = relay.client.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def _statuses(relay: Relay, ids: list[str]) -> list[str]:
    return [relay.client.get(f"/v1/results/{rid}").json()["status"] for rid in ids]


def test_fifty_undelivered_results_come_as_coalesced_digests_naming_each(delivering_relay: Any,
                                                                          discord: Any) -> None:
    alert_wid, _, alert_url = discord.add_webhook(channel_id="740000000000000001")
    relay: Relay = delivering_relay(alert_webhook=alert_url, alert_window=WINDOW,
                                    public_url="https://relay.example.com")
    gone, _, gone_url = discord.add_webhook()
    discord.remove_webhook(gone)
    ids = [relay.post_result(result_payload(title=f"lost {i}", body=None,
                                            route=[{"type": "webhook", "url": gone_url}])).json()["id"]
           for i in range(50)]
    wait_for(lambda: _statuses(relay, ids).count("undelivered") == 50, timeout=60, message="50 undelivered")

    def named() -> set[str]:
        text = "\n".join(e.get("description", "") for m in discord.messages(webhook_id=alert_wid) for e in m.embeds)
        return set(re.findall(r"res_[0-9A-Za-z]+", text))

    wait_for(lambda: set(ids) <= named(), timeout=60, message="every result named in a digest")
    digests = discord.messages(webhook_id=alert_wid)
    gaps = [b.created_at - a.created_at for a, b in zip(digests, digests[1:], strict=False)]
    assert all(gap >= WINDOW - 0.05 for gap in gaps), gaps  # at most one message per window
    text = "\n".join(e["description"] for m in digests for e in m.embeds)
    assert f"destination disabled: webhook {gone}" in text
    headers = re.findall(r"\*\*(\d+) results? undelivered to ([^*]*)\*\*", text)
    assert {where for _, where in headers} == {f"webhook {gone}: webhook deleted (10015)"}
    assert sum(int(n) for n, _ in headers) == 50
    assert f"https://relay.example.com/admin/results/{ids[0]}" in text and "tenant default" in text
    assert all(m.original_payload["allowed_mentions"] == {"parse": []} for m in digests)
    assert len(digests) < 50  # coalesced, not one per result
    # The counter moves once the digest's events are marked told, just after Discord answered.
    wait_for(lambda: _metric(relay, "relay_alert_events_sent_total") >= 51, message="51 alert events counted")


def test_an_alert_webhook_that_is_gone_is_counted_and_never_blocks_deliveries(delivering_relay: Any,
                                                                              discord: Any) -> None:
    alert_wid, _, alert_url = discord.add_webhook()
    discord.remove_webhook(alert_wid)
    relay: Relay = delivering_relay(alert_webhook=alert_url, alert_window=0.5)
    failed_before = _metric(relay, "relay_alerts_failed_total")
    gone, _, gone_url = discord.add_webhook()
    discord.remove_webhook(gone)
    good, _, good_url = discord.add_webhook()
    bad = [relay.post_result(result_payload(title=f"bad {i}", body=None,
                                            route=[{"type": "webhook", "url": gone_url}])).json()["id"]
           for i in range(3)]
    wait_for(lambda: _statuses(relay, bad).count("undelivered") == 3, message="undelivered")
    wait_for(lambda: _metric(relay, "relay_alerts_failed_total") > failed_before, message="alert failure counted")
    ok = relay.post_result(result_payload(title="fine", body=None, route=[{"type": "webhook", "url": good_url}]))
    wait_for(lambda: _statuses(relay, [ok.json()["id"]]) == ["delivered"], message="a later result delivered")
    # The failure was not alerted about (nowhere to say it, and never an alert about an alert), and the
    # alert webhook was not disabled as if it were a destination.
    assert discord.messages(webhook_id=alert_wid) == []
    assert relay.client.get("/metrics").status_code == 200
    alert_posts = [r for r in discord.rejected if f"/webhooks/{alert_wid}/" in r.path]
    assert alert_posts and all(r.status == 404 for r in alert_posts)
    assert len(alert_posts) <= 3  # dropped after the refusal, not retried in a loop


def test_a_cloudflare_ban_is_told_when_it_starts_and_when_it_ends(delivering_relay: Any, discord: Any) -> None:
    alert_wid, _, alert_url = discord.add_webhook()
    relay: Relay = delivering_relay(alert_webhook=alert_url, alert_window=0.5, cloudflare_backoff=1.0)
    wid, _, url = discord.add_webhook()
    discord.inject("cloudflare", times=1, path=f"/webhooks/{wid}/")
    rid = relay.post_result(result_payload(route=[{"type": "webhook", "url": url}])).json()["id"]
    wait_for(lambda: _statuses(relay, [rid]) == ["delivered"], message="delivered after the ban")

    def told() -> str:
        return "\n".join(e["description"] for m in discord.messages(webhook_id=alert_wid) for e in m.embeds)

    wait_for(lambda: "Cloudflare ban over" in told(), message="the end of the ban told")
    assert "Cloudflare ban: Discord refuses this relay's address" in told()


def test_without_an_alert_webhook_nothing_is_recorded(delivering_relay: Any, discord: Any) -> None:
    relay: Relay = delivering_relay()
    gone, _, gone_url = discord.add_webhook()
    discord.remove_webhook(gone)
    rid = relay.post_result(result_payload(route=[{"type": "webhook", "url": gone_url}])).json()["id"]
    wait_for(lambda: _statuses(relay, [rid]) == ["undelivered"], message="undelivered")
    with relay.runtime.db.engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT count(*) FROM alert_events")).scalar() == 0


_events = st.lists(st.tuples(st.sampled_from(["undelivered", "disabled", "ban_started"]),
                             st.sampled_from(["to webhook 1: gone (10015)", "to dm 2: closed (50007)", "x"]),
                             st.text(min_size=1, max_size=300)), max_size=120)


@given(_events)
def test_a_digest_fits_one_message_and_loses_nothing(raw: list[tuple[str, str, str]]) -> None:
    events = [PendingAlert(id=i, kind=k, group_key=g, text=f"{t} · `res_{i}`") for i, (k, g, t) in enumerate(raw)]
    payload, carried = digest(events, admin_url="https://r.example")
    [embed] = payload["embeds"]
    assert len(embed["description"]) <= 4096 and len(embed["title"]) <= 256
    assert carried == sorted(carried) and set(carried) <= {e.id for e in events}
    if events:
        assert carried, "a digest always carries something"
    left = len(events) - len(carried)
    assert (f"and {left} more" in embed["description"]) == bool(left)
    assert len(embed["description"]) <= DESCRIPTION_LIMIT + 60


def test_one_window_is_taken_by_one_replica_only(database_url: str) -> None:
    from sqlalchemy import create_engine

    from store.alerts import AlertStore
    from store.engine import migrate
    from store.session import Database

    engines = [create_engine(database_url) for _ in range(2)]
    try:
        migrate(engines[0])
        one, two = (AlertStore(Database(e)) for e in engines)
        assert one.take_window(60.0) is True
        assert two.take_window(60.0) is False and one.take_window(60.0) is False
        assert 0 < two.window_left(60.0) <= 60.0
        assert two.take_window(0.000001) is True  # a window that has passed goes to whoever asks first
        one.add("ban_started", "Cloudflare ban", "paused")
        [event] = two.pending()
        two.mark([event.id])
        assert one.pending() == []
    finally:
        for engine in engines:
            engine.dispose()


def test_the_next_window_counts_from_when_the_digest_landed(database_url: str) -> None:
    """A digest whose send was slow must not bring the next one closer than the window at Discord."""
    import time

    from sqlalchemy import create_engine

    from store.alerts import AlertStore
    from store.engine import migrate
    from store.session import Database

    engine = create_engine(database_url)
    try:
        migrate(engine)
        store = AlertStore(Database(engine))
        assert store.take_window(0.5) is True
        time.sleep(0.3)  # the digest's send takes this long
        store.add("ban_started", "Cloudflare ban", "paused")
        store.mark([e.id for e in store.pending()])  # dropped, not landed: the window stays where it was
        assert store.window_left(0.5) < 0.25
        store.add("ban_ended", "Cloudflare ban over", "resumed")
        store.mark([e.id for e in store.pending()], restart_window=True)  # landed now
        assert store.window_left(0.5) > 0.4
        assert store.take_window(0.5) is False
    finally:
        engine.dispose()


def test_an_alert_webhook_that_is_not_a_webhook_refuses_to_start() -> None:
    import pytest
    from pydantic import ValidationError

    from app.settings import Settings

    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, alert_webhook="https://example.com/api/webhooks/1/secret-token")
    assert "RELAY_ALERT_WEBHOOK must be a Discord webhook URL" in str(caught.value)
    assert "secret-token" not in str(caught.value)
