"""Discord's hidden per-channel limit: every webhook of a channel paced under one shared pacer.

Real HTTP against the emulator, on SQLite and PostgreSQL; the channel's window is short (a few
seconds, the same number told to emulator and relay) so the tests stay quick. Nothing here
asserts a duration: only counts, states and what Discord saw.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from schemas.work import PaceLimit
from store.channels import ChannelStore, next_slot, reserve
from tests.conftest import Relay, result_payload, wait_for
from tests.engine.helpers import titles
from tests.fakes.discord import Limit, RateLimits

CHANNEL = "730000000000000001"


def _statuses(relay: Relay, ids: list[str]) -> list[str]:
    return [relay.client.get(f"/v1/results/{rid}").json()["status"] for rid in ids]


def _deliveries(relay: Relay, ids: list[str]) -> list[dict[str, Any]]:
    return [d for rid in ids for d in relay.client.get(f"/v1/results/{rid}").json()["deliveries"]]


def test_three_webhooks_of_one_channel_two_replicas_share_one_pacer(make_relay: Any, discord: Any) -> None:
    discord.set_rate_limits(RateLimits(webhook=Limit(5, 1.0), webhook_channel=Limit(6, 3.0)))
    timings = {"run_workers": True, "discord_api_base": discord.api_base, "poll_interval": 0.2,
               "retry_schedule": "0.3,0.6,1.0", "retry_jitter": 0.1, "lease_seconds": 5, "channel_limit": "6/3"}
    one, two = make_relay(**timings), make_relay(**timings)
    hooks = [discord.add_webhook(channel_id=CHANNEL) for _ in range(3)]
    ids = [(one if i % 2 else two).post_result(result_payload(
        title=f"r{i}", body=None, route=[{"type": "webhook", "url": hooks[i % 3][2]}])).json()["id"]
        for i in range(24)]
    wait_for(lambda: _statuses(one, ids).count("delivered") == 24, timeout=120, interval=0.3, message="all 24")
    seen = [t for wid, _, _ in hooks for t in titles(discord.messages(webhook_id=wid))]
    assert sorted(seen) == sorted(f"r{i}" for i in range(24))  # every one, none twice
    # Before it knows the channel the relay sends each webhook's first message unpaced; at most one
    # 429 can come of that, and none once the channel is known.
    assert discord.count_429() == discord.count_429("shared") <= 1
    assert all(d["attempts"] == 1 for d in _deliveries(one, ids))  # a channel wait never spends a retry
    store = ChannelStore(one.runtime.db)
    assert store.destinations_in_channel(CHANNEL) == sorted(f"webhook:{wid}" for wid, _, _ in hooks)


def test_a_shared_429_is_a_wait_for_the_whole_channel_not_a_failure(delivering_relay: Any, discord: Any) -> None:
    # The relay believes the channel takes 30 per 3 s; Discord allows 4: it must learn from the 429s.
    discord.set_rate_limits(RateLimits(webhook=Limit(5, 1.0), webhook_channel=Limit(4, 3.0)))
    relay: Relay = delivering_relay(channel_limit="30/3")
    hooks = [discord.add_webhook(channel_id=CHANNEL) for _ in range(2)]
    ids = [relay.post_result(result_payload(title=f"s{i}", body=None,
                                            route=[{"type": "webhook", "url": hooks[i % 2][2]}])).json()["id"]
           for i in range(12)]
    wait_for(lambda: _statuses(relay, ids).count("delivered") == 12, timeout=120, interval=0.3, message="all 12")
    assert discord.count_429("shared") >= 1 and discord.count_429("user") == 0
    assert all(d["attempts"] == 1 for d in _deliveries(relay, ids))
    limited = [r for r in discord.rejected if r.status == 429]
    assert limited and all(r.body["retry_after"] > 0 and r.body["global"] is False for r in limited)
    events = relay.client.get(f"/v1/results/{ids[-1]}").json()
    assert events["status"] == "delivered"


def test_a_busy_channel_does_not_slow_a_burst_into_twenty_others(delivering_relay: Any, discord: Any) -> None:
    # The busy channel takes 2 posts per 30 s: its 10 results wait for minutes, the burst must not.
    discord.set_rate_limits(RateLimits(webhook=Limit(5, 1.0), webhook_channel=Limit(2, 30.0)))
    relay: Relay = delivering_relay(channel_limit="2/30", worker_concurrency=4)
    busy = [discord.add_webhook(channel_id=CHANNEL) for _ in range(4)]
    waiting = [relay.post_result(result_payload(title=f"busy{i}", body=None,
                                                route=[{"type": "webhook", "url": busy[i % 4][2]}])).json()["id"]
               for i in range(10)]
    wait_for(lambda: sum(len(discord.messages(webhook_id=w)) for w, _, _ in busy) >= 2, message="busy channel full")
    burst_hooks = [discord.add_webhook() for _ in range(20)]  # twenty channels of their own
    burst = [relay.post_result(result_payload(title=f"burst{i}", body=None,
                                              route=[{"type": "webhook", "url": url}])).json()["id"]
             for i, (_, _, url) in enumerate(burst_hooks)]
    wait_for(lambda: _statuses(relay, burst).count("delivered") == 20, timeout=60, interval=0.2,
             message="the burst")
    # The busy channel is still waiting for its window (30 s): the burst went past it.
    assert _statuses(relay, waiting).count("delivered") <= 4
    # Each busy webhook's first post went before its channel was known: at most one 429 each.
    assert discord.count_429("shared") <= len(busy) and discord.count_429("user") == 0


# --------------------------------------------------------------------------- the pacer, pure


@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=80),
       st.integers(min_value=1, max_value=8), st.floats(min_value=0.5, max_value=10, allow_nan=False))
def test_reserved_slots_never_put_more_than_count_sends_in_any_window(gaps: list[float], count: int,
                                                                      per: float) -> None:
    limit = PaceLimit(count=count, per=per, margin=0.0)
    slots: list[float] = []
    history: list[float] = []
    now = 1000.0
    for gap in gaps:
        now += gap
        slot, slots = reserve(slots, now=now, limit=limit)
        assert slot.reserved and slot.at >= now and (not history or slot.at >= history[-1])
        history.append(slot.at)
        assert len(slots) <= count
    for i in range(len(history) - count):
        assert history[i + count] - history[i] >= per - 1e-9  # count+1 sends span at least one window


@given(st.integers(min_value=1, max_value=10), st.floats(min_value=1, max_value=60, allow_nan=False))
def test_a_burst_goes_at_once_up_to_the_count(count: int, per: float) -> None:
    limit = PaceLimit(count=count, per=per, margin=0.0)
    slots: list[float] = []
    for _ in range(count):
        slot, slots = reserve(slots, now=0.0, limit=limit)
        assert slot.at == 0.0
    assert next_slot(slots, now=0.0, limit=limit) == per


def test_a_far_slot_is_not_reserved_and_a_block_holds_the_channel() -> None:
    limit = PaceLimit(count=1, per=60.0, margin=0.0)
    slot, slots = reserve([], now=0.0, limit=limit)
    far, kept = reserve(slots, now=1.0, limit=limit, max_wait=5.0)
    assert (far.at, far.reserved, kept) == (60.0, False, slots)
    assert next_slot([], now=0.0, limit=limit, blocked_until=42.0) == 42.0


def test_new_progress_messages_take_slots_of_the_channel_too(delivering_relay: Any, discord: Any) -> None:
    discord.set_rate_limits(RateLimits(webhook=Limit(20, 1.0), webhook_channel=Limit(3, 4.0)))
    relay: Relay = delivering_relay(channel_limit="3/4")
    wid, _, url = discord.add_webhook(channel_id=CHANNEL)
    route = [{"type": "webhook", "url": url}]
    first = relay.post_result(result_payload(title="first", body=None, route=route)).json()["id"]
    wait_for(lambda: _statuses(relay, [first]) == ["delivered"], message="the channel learned")
    wait_for(lambda: ChannelStore(relay.runtime.db).channel(f"webhook:{wid}").channel_id, message="learned")
    for n in range(3):
        resp = relay.client.post("/v1/progress", json={"workflow_id": f"wf_p{n}", "route": route, "stage": "Working",
                                                       "current": 1, "total": 2})
        assert resp.status_code == 202, resp.text
    wait_for(lambda: len(discord.messages(webhook_id=wid)) == 4, timeout=60, message="three progress messages")
    assert discord.count_429() == 0  # the third progress post waited for the channel's next window


def _spy(store: Any, name: str) -> list[tuple[str, bool]]:
    """Record the thread (and whether an event loop runs in it) of every call of ``store.name``."""
    import asyncio
    import threading

    calls: list[tuple[str, bool]] = []
    original = getattr(store, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append((threading.current_thread().name, asyncio._get_running_loop() is not None))
        return original(*args, **kwargs)

    setattr(store, name, spy)
    return calls


def test_pacer_and_progress_writes_queue_on_the_workers_store_runner(delivering_relay: Any, discord: Any,
                                                                     database_url: str) -> None:
    """On SQLite the pacer's slot and the progress loop's claims are written on the delivery worker's
    one store thread, never beside it, where they would wait in SQLite's busy handler (it sleeps up to
    100 ms a try); on PostgreSQL they run on the thread pool. Never on the event loop."""
    discord.set_rate_limits(RateLimits(webhook=Limit(5, 1.0), webhook_channel=Limit(30, 3.0)))
    relay: Relay = delivering_relay(channel_limit="30/3")
    slots = _spy(relay.runtime.channels, "reserve_slot")
    progress = _spy(relay.runtime.progress_queue, "claim")
    hook = discord.add_webhook(channel_id=CHANNEL)
    ids = [relay.post_result(result_payload(title=f"t{i}", body=None, route=[{"type": "webhook", "url": hook[2]}]))
           .json()["id"] for i in range(6)]
    wait_for(lambda: _statuses(relay, ids).count("delivered") == 6, timeout=60, interval=0.2, message="all 6")
    wait_for(lambda: len(progress) >= 2, timeout=30, message="progress passes")
    assert len(slots) >= 5  # every message after the first (sent before the channel was known) and that one
    for thread, in_loop in slots + progress:
        assert not in_loop, thread
        if database_url.startswith("sqlite"):
            assert thread.startswith("delivery-store"), thread
