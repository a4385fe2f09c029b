"""Real speech through the real relay and the real model to the Discord emulator.

The relays run their workers (delivery and transcription) against the emulator; the model is the
bundled tiny.en. Heavy, so marked ``transcription``, and run on PostgreSQL only where the claim's
SQL differs (the restart test).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from schemas.clock import utcnow
from schemas.tables import Result, Transcription
from tests.conftest import Relay, wait_for
from tests.engine.helpers import body_seen
from tests.transcriptions_api.conftest import LONG_WORDS, SHORT_WORDS, Speech, payload, upload, words_found

pytestmark = pytest.mark.transcription

SRT_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2}),(\d{3}) --> (\d{2}):(\d{2}):(\d{2}),(\d{3})$")
VTT_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})\.(\d{3}) --> (\d{2}):(\d{2}):(\d{2})\.(\d{3})$")


def _ms(h: str, m: str, s: str, ms: str) -> int:
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(ms)


def cue_times(text: str, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """Every cue's (start, end) in milliseconds, after checking the block structure around it."""
    times = []
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            g = match.groups()
            times.append((_ms(*g[:4]), _ms(*g[4:])))
    return times


def view(relay: Relay, tr_id: str) -> dict[str, Any]:
    """The job as the API shows it."""
    return relay.client.get(f"/v1/transcriptions/{tr_id}").json()


def finished(relay: Relay, tr_id: str) -> dict[str, Any] | None:
    """The job once it is done or failed."""
    got = view(relay, tr_id)
    return got if got["status"] in ("done", "failed") else None


def delivered(relay: Relay, result_id: str) -> dict[str, Any] | None:
    """The result once delivery finished."""
    got = relay.client.get(f"/v1/results/{result_id}").json()
    return got if got["status"] in ("delivered", "undelivered") else None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_transcript_reaches_discord_with_text_and_subtitles(  # type: ignore[no-untyped-def]
    delivering_relay, discord, speech: Speech
) -> None:
    relay: Relay = delivering_relay()
    wid, _, url = discord.add_webhook()
    accepted = upload(relay, speech.long.read_bytes(), payload(route=[{"type": "webhook", "url": url}]),
                      filename="standup.wav")
    assert accepted.status_code == 202, accepted.text
    tr_id = accepted.json()["id"]

    processed: list[float] = []
    health: list[int] = []

    def poll() -> dict[str, Any] | None:
        got = view(relay, tr_id)
        processed.append(got["processed"])
        if got["status"] == "running":
            health.append(relay.client.get("/healthz").status_code)
        return got if got["status"] in ("done", "failed") else None

    job = wait_for(poll, timeout=120, interval=0.1, message="transcription finished")
    assert job["status"] == "done", job
    assert job["language"] == "en" and job["error"] is None and job["attempts"] == 1
    assert job["processed"] == job["duration"] and job["progress"] == 1.0
    assert processed == sorted(processed), "progress never goes backwards"
    assert sum(b > a for a, b in zip(processed, processed[1:], strict=False)) >= 1, "progress moved"
    assert health and set(health) == {200}, "healthz answered while the job ran"

    result = wait_for(lambda: delivered(relay, job["result_id"]), timeout=60, message="result delivered")
    assert result["status"] == "delivered" and job["links"]["result"] == f"/v1/results/{job['result_id']}"
    messages = discord.messages(webhook_id=wid)
    embed = messages[0].original_payload["embeds"][0]
    assert embed["title"].endswith("Transcript: standup.wav")  # after the level icon
    assert "Duration" in embed["description"] and "Language" in embed["description"]
    assert len(words_found(body_seen(messages), LONG_WORDS)) >= 4

    files = {f.filename: f.data.decode() for m in messages for f in m.files}
    assert {"standup.txt", "standup.srt", "standup.vtt"} <= set(files)
    assert len(words_found(files["standup.txt"], LONG_WORDS)) >= 4
    srt = cue_times(files["standup.srt"], SRT_TIME)
    vtt = cue_times(files["standup.vtt"], VTT_TIME)
    assert files["standup.vtt"].startswith("WEBVTT\n") and len(srt) == len(vtt) >= 2
    for cues in (srt, vtt):
        assert all(start < end for start, end in cues)
        assert all(prev[1] <= nxt[0] for prev, nxt in zip(cues, cues[1:], strict=False))
    indexes = [int(b.split("\n", 1)[0]) for b in files["standup.srt"].strip().split("\n\n")]
    assert indexes == list(range(1, len(srt) + 1))

    with relay.runtime.db.session() as session:
        assert session.scalar(select(Transcription.audio).where(Transcription.id == tr_id)) is None


def test_job_interrupted_by_a_crash_completes_after_restart(  # type: ignore[no-untyped-def]
    make_relay, delivering_relay, discord, speech: Speech
) -> None:
    wid, _, url = discord.add_webhook()
    api_only: Relay = make_relay(discord_api_base=discord.api_base)  # accepts jobs, runs none
    tr_id = upload(api_only, speech.short.read_bytes(), payload(route=[{"type": "webhook", "url": url}])).json()["id"]
    # What a relay killed mid-job leaves behind: running, leased to a dead worker, the lease expired.
    with api_only.runtime.db.session(write=True) as session:
        session.execute(update(Transcription).where(Transcription.id == tr_id).values(
            status="running", attempts=1, processed=2.0, lease_owner="tr-dead-worker",
            lease_expires_at=utcnow() - timedelta(seconds=5)))

    worker: Relay = delivering_relay()
    job = wait_for(lambda: finished(worker, tr_id), timeout=90, message="resumed job finished")
    assert job["status"] == "done" and job["attempts"] == 2, job
    wait_for(lambda: delivered(worker, job["result_id"]), timeout=60, message="result delivered")
    assert len(words_found(body_seen(discord.messages(webhook_id=wid)), SHORT_WORDS)) >= 3
    with worker.runtime.db.session() as session:
        produced = session.scalar(select(func.count()).select_from(Result)
                                  .where(Result.idempotency_key == f"transcription:{tr_id}"))
    assert produced == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_job_cut_off_by_a_stop_goes_back_to_the_queue_and_finishes_later(  # type: ignore[no-untyped-def]
    delivering_relay, discord, speech: Speech
) -> None:
    _, _, url = discord.add_webhook()
    first: Relay = delivering_relay()
    tr_id = upload(first, speech.short.read_bytes(), payload(route=[{"type": "webhook", "url": url}])).json()["id"]
    wait_for(lambda: view(first, tr_id)["status"] != "queued", timeout=30, interval=0.01, message="job claimed")
    first.server.stop()  # the lifespan stops the service; the model is still loading or running
    with first.runtime.db.session() as session:
        row = session.execute(select(Transcription.status, Transcription.attempts, Transcription.lease_owner)
                              .where(Transcription.id == tr_id)).one()
    if row.status != "done":  # on a very fast machine the job may finish first; then nothing was cut off
        assert (row.status, row.attempts, row.lease_owner) == ("queued", 0, None)

    second: Relay = delivering_relay()
    job = wait_for(lambda: finished(second, tr_id), timeout=90, message="job finished after the restart")
    assert job["status"] == "done" and job["result_id"], job
