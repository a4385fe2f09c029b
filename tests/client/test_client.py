"""Every method of ``RelayClient`` and ``AsyncRelayClient`` against a live relay and the emulator."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from relay_client import (
    AsyncRelayClient,
    Backoff,
    InvalidRequest,
    NotFound,
    RelayClient,
    RelayUnavailable,
    SpoolFull,
    dm,
    interaction,
    webhook,
)

from tests.client.conftest import LiveRelay
from tests.conftest import wait_for

QUICK = Backoff(base=0.01, cap=0.05)


def _client(live: LiveRelay, **kwargs: object) -> RelayClient:
    return RelayClient(live.url, live.key, backoff=QUICK, **kwargs)  # type: ignore[arg-type]


def test_send_then_wait_until_delivered(live: LiveRelay) -> None:
    hook_id, url = live.new_webhook()
    with _client(live) as relay:
        receipt = relay.send({"title": "hello", "body": "world", "route": [webhook(url)]})
        assert receipt.id and receipt.id.startswith("res_") and not receipt.spooled
        info = relay.wait(receipt.id, 30)
    assert info.status == "delivered"
    assert info.deliveries[0].status == "delivered" and info.deliveries[0].message_ids
    assert [m.payload["embeds"][0]["title"] for m in live.discord.messages(hook_id)] == ["hello"]


def test_files_as_paths_bytes_and_file_objects(live: LiveRelay, tmp_path: Path) -> None:
    hook_id, url = live.new_webhook()
    path = tmp_path / "report.json"
    path.write_bytes(b'{"ok": true}')
    with _client(live) as relay:
        receipt = relay.send({"title": "files", "route": [webhook(url)]},
                             files=[path, ("notes.txt", b"plain", "text/plain"),
                                    ("blob.bin", io.BytesIO(b"\x00\x01"), None)])
        assert receipt.id
        info = relay.wait(receipt.id, 30)
    assert [(a.filename, a.size) for a in info.attachments] == [("report.json", 12), ("notes.txt", 5),
                                                                ("blob.bin", 2)]
    seen = {f.filename: f.data for m in live.discord.messages(hook_id) for f in m.files}
    assert seen == {"report.json": b'{"ok": true}', "notes.txt": b"plain", "blob.bin": b"\x00\x01"}


def test_one_key_one_result_however_often_sent(live: LiveRelay) -> None:
    _, url = live.new_webhook()
    with _client(live) as relay:
        first = relay.send({"title": "once", "route": [webhook(url)]}, idempotency_key="k-once")
        again = relay.send({"title": "once", "route": [webhook(url)]}, idempotency_key="k-once")
    assert first.id == again.id and again.replayed and first.idempotency_key == "k-once"


def test_invalid_result_raises_with_the_field_and_is_never_spooled(live: LiveRelay, tmp_path: Path) -> None:
    with _client(live, spool=tmp_path / "spool.db") as relay:
        with pytest.raises(InvalidRequest) as caught:
            relay.send({"title": "bad", "route": [webhook("https://example.com/not-discord")]})
        stats = relay.stats()
    assert caught.value.status == 422 and caught.value.code == "invalid_request"
    assert caught.value.field == "route.0.url"
    assert stats is not None and stats.pending == 0


def test_get_list_ack_and_redeliver(live: LiveRelay) -> None:
    hook_id, url = live.new_webhook()
    workflow = f"wf_list_{time.monotonic_ns()}"
    with _client(live) as relay:
        ids = [relay.send({"title": f"r{i}", "workflow_id": workflow, "route": [webhook(url)]}).id for i in range(5)]
        listed = [r.id for r in relay.list(workflow_id=workflow, page_size=2)]
        assert listed == list(reversed(ids))  # newest first, across three pages
        for rid in ids:
            assert rid is not None
            relay.wait(rid, 30)
        assert ids[0] is not None
        assert relay.ack(ids[0]).status == "picked_up"
        again = relay.redeliver(ids[1], route=[webhook(url)])
        assert again.id == ids[1]
        assert relay.wait(ids[1], 30).status == "delivered"
        with pytest.raises(NotFound):
            relay.get("res_does_not_exist")
    wait_for(lambda: len(live.discord.messages(hook_id)) == 6, message="five results and one redelivery")


def test_progress(live: LiveRelay) -> None:
    hook_id, url = live.new_webhook()
    with _client(live) as relay:
        answer = relay.progress("wf_progress", [webhook(url)], "Transcribing", current=3, total=10)
    assert answer.destinations == 1 and answer.skipped == []
    wait_for(lambda: live.discord.messages(hook_id), message="the progress message")


def test_route_helpers() -> None:
    from datetime import datetime

    assert webhook("u", thread_id=5) == {"type": "webhook", "url": "u", "thread_id": "5"}
    assert dm(42) == {"type": "dm", "user_id": "42"}
    route = interaction(1, "tok", datetime(2026, 11, 23, 10, 0))
    assert route["created_at"] == "2026-11-23T10:00:00+00:00" and route["application_id"] == "1"


def _flaky(live: LiveRelay, status: int, failures: int, seen: list[httpx.Request]) -> httpx.MockTransport:
    """Answers ``status`` + ``Retry-After`` to the first ``failures`` requests, then forwards to the relay."""
    upstream = httpx.Client(base_url=live.url)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= failures:
            return httpx.Response(status, headers={"Retry-After": "0.3"},
                                  json={"error": {"code": "busy", "message": "later"}})
        answer = upstream.send(upstream.build_request(request.method, request.url.path, headers=request.headers,
                                                      content=request.read()))
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return httpx.MockTransport(handle)


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_honoured_with_the_same_key(live: LiveRelay, status: int) -> None:
    _, url = live.new_webhook()
    seen: list[httpx.Request] = []
    with _client(live, transport=_flaky(live, status, 2, seen)) as relay:
        started = time.monotonic()
        receipt = relay.send({"title": f"after {status}", "route": [webhook(url)]})
        took = time.monotonic() - started
    assert receipt.id and not receipt.spooled
    assert len(seen) == 3 and took >= 0.6  # two waits of Retry-After: 0.3, not the 10 ms schedule
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1


def test_unavailable_without_a_spool_raises(dead_url: str) -> None:
    with RelayClient(dead_url, "k", max_retries=1, backoff=QUICK) as relay, pytest.raises(RelayUnavailable):
        relay.send({"title": "x", "route": [dm(1)]})


def test_spooled_while_unreachable_then_flushed_on_open(live: LiveRelay, dead_url: str, tmp_path: Path) -> None:
    hook_id, url = live.new_webhook()
    spool = tmp_path / "spool.db"
    attachment = tmp_path / "a.txt"
    attachment.write_bytes(b"attached")
    with RelayClient(dead_url, live.key, spool=spool, max_retries=1, backoff=QUICK) as down:
        receipts = [down.send({"title": f"spooled {i}", "route": [webhook(url)]}, files=[attachment])
                    for i in range(3)]
        assert all(r.spooled and r.id is None for r in receipts)
        stats = down.stats()
        assert stats is not None and stats.pending == 3
    attachment.unlink()  # copied into the spool: the caller may delete its files
    with _client(live, spool=spool, flush_interval=0.1) as up:  # opening on a non-empty spool flushes it
        wait_for(lambda: (s := up.stats()) is not None and s.pending == 0, message="the flusher")
    wait_for(lambda: len(live.discord.messages(hook_id)) == 3, message="three deliveries")
    titles = [m.payload["embeds"][0]["title"] for m in live.discord.messages(hook_id)]
    assert sorted(titles) == ["spooled 0", "spooled 1", "spooled 2"]
    assert all(f.data == b"attached" for m in live.discord.messages(hook_id) for f in m.files)


def test_flush_returns_how_many_went(live: LiveRelay, dead_url: str, tmp_path: Path) -> None:
    _, url = live.new_webhook()
    spool = tmp_path / "spool.db"
    with RelayClient(dead_url, live.key, spool=spool, max_retries=0) as down:
        for i in range(4):
            down.send({"title": f"f{i}", "route": [webhook(url)]})
        assert down.flush(0.5) == 0
    with _client(live, spool=spool, flush_interval=3600) as up:
        went = up.flush(30)  # the flusher thread that opening started may have sent some of them
        stats = up.stats()
    assert stats is not None and stats.pending == 0 and stats.sent == 4 and went <= 4


def test_full_spool_raises_instead_of_dropping(dead_url: str, tmp_path: Path) -> None:
    with RelayClient(dead_url, "k", spool=tmp_path / "s.db", max_retries=0, spool_max_bytes=4000) as relay:
        relay.send({"title": "fits", "route": [dm(1)]})
        with pytest.raises(SpoolFull, match="spool_max_bytes"):
            relay.send({"title": "too big", "body": "x" * 5000, "route": [dm(1)]})
        stats = relay.stats()
    assert stats is not None and stats.pending == 1


def test_expired_entries_are_reported_not_lost(live: LiveRelay, dead_url: str, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    spool = tmp_path / "s.db"
    with RelayClient(dead_url, "k", spool=spool, max_retries=0, spool_max_age=0.2) as relay:
        relay.send({"title": "old", "route": [dm(1)]})
    time.sleep(0.3)
    with _client(live, spool=spool, spool_max_age=0.2, flush_interval=3600) as relay:
        assert relay.flush(5) == 0
        stats = relay.stats()
        assert relay.spool is not None
        reported = relay.spool.reported()
    assert stats is not None and stats.expired == 1 and stats.pending == 0
    assert [(r.state, r.payload["title"]) for r in reported] == [("expired", "old")]
    assert "expired unsent" in caplog.text


async def test_async_client(live: LiveRelay, dead_url: str, tmp_path: Path) -> None:
    hook_id, url = live.new_webhook()
    async with AsyncRelayClient(live.url, live.key, backoff=QUICK) as relay:
        receipt = await relay.send({"title": "async", "route": [webhook(url)]}, files=[("a.txt", b"a", "text/plain")])
        assert receipt.id
        assert (await relay.wait(receipt.id, 30)).status == "delivered"
        assert [r.id async for r in relay.list(workflow_id="nope")] == []
        assert (await relay.ack(receipt.id)).status == "picked_up"
    spool = tmp_path / "spool.db"
    async with AsyncRelayClient(dead_url, live.key, spool=spool, max_retries=0) as down:
        assert (await down.send({"title": "async spooled", "route": [webhook(url)]})).spooled
    async with AsyncRelayClient(live.url, live.key, spool=spool, flush_interval=0.1) as up:
        for _ in range(300):
            stats = await up.stats()
            if stats is not None and stats.pending == 0:
                break
            await asyncio.sleep(0.1)
    wait_for(lambda: len(live.discord.messages(hook_id)) == 2, message="both async results")


def test_backoff_is_jittered_exponential_and_capped() -> None:
    backoff = Backoff(base=1, cap=4)
    delays: Callable[[int], list[float]] = lambda n: [backoff.delay(n) for _ in range(200)]  # noqa: E731
    assert max(delays(0)) <= 1 and max(delays(5)) <= 4 and len(set(delays(3))) > 100
    assert backoff.delay(0, retry_after=2.5) == 2.5 and Backoff(max_retry_after=3).delay(0, retry_after=99) == 3


def test_webhook_route_helper_builds_forum_and_silent_destinations() -> None:
    from relay_client import webhook as make_webhook

    assert make_webhook("https://discord.com/api/webhooks/1/t", thread_name="Run 7", applied_tags=[11, "12"],
                        silent=True) == {"type": "webhook", "url": "https://discord.com/api/webhooks/1/t",
                                         "thread_name": "Run 7", "applied_tags": ["11", "12"], "silent": True}
    assert make_webhook("https://discord.com/api/webhooks/1/t", 5) == {
        "type": "webhook", "url": "https://discord.com/api/webhooks/1/t", "thread_id": "5"}
