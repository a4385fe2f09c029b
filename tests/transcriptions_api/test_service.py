"""The job loop's policies with a fake engine: crash retries, one Result per job, interrupted jobs.

The fake stands in for ``TranscriptionEngine`` (the service takes an engine factory) so a crash or
a result is decided by the test, on the real store, on both backends, in milliseconds.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest_asyncio
from sqlalchemy import func, select, update

from app.ingest import build_targets
from app.runtime import Runtime
from app.settings import Settings
from app.transcription_jobs import request_json
from app.transcriptions import TranscriptionService
from schemas.api import TranscriptionIn
from schemas.clock import utcnow
from schemas.tables import Result, Transcription
from store.transcriptions import NewTranscription, TranscriptionStore, TranscriptionView
from store.views import NewResult
from tests.conftest import WEBHOOK_URL
from transcription import Segment, TranscribeOptions, Transcript, TranscriptionCrashed

TRANSCRIPT = Transcript(segments=(Segment(0.0, 1.5, " Hello there."), Segment(1.5, 3.0, " Second line.")),
                        language="en", language_probability=0.98, duration=3.0, text="Hello there. Second line.")


class FakeEngine:
    """Plays a script: each call pops ``"crash"`` or ``"ok"``; records the options it was given."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.calls: list[TranscribeOptions | None] = []
        self.closed = False

    async def transcribe(self, audio_path: str | os.PathLike[str], options: TranscribeOptions | None = None,
                         on_progress: Any = None) -> Transcript:
        """Report progress, then crash or answer as scripted."""
        assert (await asyncio.to_thread(os.path.getsize, audio_path)) > 0
        self.calls.append(options)
        for done in (0.0, 1.5, 3.0):
            on_progress(done, 3.0)
            await asyncio.sleep(0)
        if self.script.pop(0) == "crash":
            raise TranscriptionCrashed()
        return TRANSCRIPT

    async def close(self) -> None:
        """Nothing to stop."""
        self.closed = True


@pytest_asyncio.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    """A migrated store, no HTTP."""
    settings = Settings(_env_file=None, database_url=database_url, poll_interval=0.05, lease_seconds=5)
    rt = Runtime.build(settings)
    await asyncio.to_thread(rt.db.ensure_schema)
    yield rt
    rt.close()


def _webhook_targets(runtime: Runtime) -> list[Any]:
    body = TranscriptionIn.model_validate({"route": [{"type": "webhook", "url": WEBHOOK_URL}]})
    return build_targets(body.route, runtime.settings, runtime.cipher)


def add_job(runtime: Runtime, **options: Any) -> str:
    """Store a job as the API would (the bytes need not be audio for the fake engine)."""
    body = TranscriptionIn.model_validate({"route": [{"type": "webhook", "url": WEBHOOK_URL}], **options})
    targets = build_targets(body.route, runtime.settings, runtime.cipher)
    new = NewTranscription(key_id="key_test", tenant="default", filename="call.ogg", content_type="audio/ogg",
                           audio=b"fake audio",
                           duration=3.0, options=body.model_dump(include={"language", "task", "vad_filter",
                                                                          "word_timestamps"}),
                           request=request_json(targets=targets, mode=body.mode, workflow_id="wf_s",
                                                title=body.title, metadata={}))
    return TranscriptionStore(runtime.db).create(new)


async def run_until(runtime: Runtime, engine: FakeEngine, done: Callable[[], bool]) -> None:
    """Run a service until ``done()`` holds (bounded), then stop it."""
    service = TranscriptionService(runtime, engine_factory=lambda: engine)
    await service.start()
    try:
        for _ in range(400):
            if await asyncio.to_thread(done):
                return
            await asyncio.sleep(0.025)
        raise AssertionError("the service did not finish the jobs")
    finally:
        await service.stop()


def job(runtime: Runtime, tr_id: str) -> TranscriptionView:
    """The job's state."""
    return TranscriptionStore(runtime.db).get(tr_id)


def results_for(runtime: Runtime, tr_id: str) -> list[Result]:
    """Every Result created for a job (there must be one at most)."""
    with runtime.db.session() as session:
        return list(session.scalars(select(Result).where(Result.idempotency_key == f"transcription:{tr_id}")))


async def test_a_crash_is_retried_once_then_the_job_fails_and_the_service_keeps_serving(runtime: Runtime) -> None:
    doomed, lucky, healthy = add_job(runtime), add_job(runtime), add_job(runtime, language="en", task="translate")
    engine = FakeEngine(["crash", "crash", "crash", "ok", "ok"])
    await run_until(runtime, engine, lambda: all(
        job(runtime, t).status in ("done", "failed") for t in (doomed, lucky, healthy)))

    failed = job(runtime, doomed)
    assert failed.status == "failed" and failed.attempts == 2
    assert "crashed 2 times" in (failed.error or "")
    [notice] = results_for(runtime, doomed)
    assert failed.result_id == notice.id and notice.level == "error"
    assert notice.title == "Transcription failed: call.ogg" and "crashed" in (notice.summary or "")

    retried = job(runtime, lucky)
    assert retried.status == "done" and retried.attempts == 2 and retried.error is None
    finished = job(runtime, healthy)
    assert finished.status == "done" and finished.language == "en" and finished.processed == 3.0
    [result] = results_for(runtime, healthy)
    assert result.title == "Transcript: call.ogg" and result.body == "Hello there.\nSecond line.\n"
    assert "> Hello there." in (result.summary or "") and "0:03" in (result.summary or "")
    assert TranscribeOptions(language="en", task="translate") in engine.calls
    with runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Transcription)
                              .where(Transcription.audio.is_not(None))) == 0


async def test_a_result_stored_by_an_earlier_attempt_is_never_made_twice(runtime: Runtime) -> None:
    tr_id = add_job(runtime)
    # An earlier attempt stored its Result, then died before marking the job done.
    runtime.results.create(NewResult(
        key_id="key_test", tenant="default", idempotency_key=f"transcription:{tr_id}", request_hash="x",
        workflow_id=None,
        title="Transcript: call.ogg", summary=None, body="earlier", fields=[], url=None, color=None, level=None,
        metadata={}, mode="first_success", targets=_webhook_targets(runtime)))
    engine = FakeEngine(["ok"])
    await run_until(runtime, engine, lambda: job(runtime, tr_id).status == "done")
    [only] = results_for(runtime, tr_id)
    assert job(runtime, tr_id).result_id == only.id and only.body == "earlier"
    assert engine.calls == []


async def test_a_job_interrupted_too_often_fails_instead_of_looping(runtime: Runtime) -> None:
    tr_id = add_job(runtime)
    with runtime.db.session(write=True) as session:
        session.execute(update(Transcription).where(Transcription.id == tr_id).values(
            status="running", attempts=2, lease_owner="tr-gone", lease_expires_at=utcnow() - timedelta(seconds=1)))
    engine = FakeEngine([])
    await run_until(runtime, engine, lambda: job(runtime, tr_id).status == "failed")
    assert "interrupted 2 times" in (job(runtime, tr_id).error or "")
    assert engine.calls == [] and len(results_for(runtime, tr_id)) == 1


async def test_keep_audio_keeps_the_recording(database_url: str) -> None:
    settings = Settings(_env_file=None, database_url=database_url, poll_interval=0.05, keep_audio=True)
    rt = Runtime.build(settings)
    try:
        await asyncio.to_thread(rt.db.ensure_schema)
        tr_id = add_job(rt)
        await run_until(rt, FakeEngine(["ok"]), lambda: job(rt, tr_id).status == "done")
        with rt.db.session() as session:
            assert session.scalar(select(Transcription.audio).where(Transcription.id == tr_id)) == b"fake audio"
    finally:
        rt.close()


class SilentEngine(FakeEngine):
    """A recording with no speech in it: faster-whisper finds no segment at all."""

    async def transcribe(self, audio_path: str | os.PathLike[str], options: TranscribeOptions | None = None,
                         on_progress: Any = None) -> Transcript:
        """No segments, empty text."""
        self.calls.append(options)
        return Transcript(segments=(), language="en", language_probability=0.5, duration=3.0, text="")


async def test_a_silent_recording_becomes_a_short_no_speech_result_without_empty_files(runtime: Runtime) -> None:
    silent = add_job(runtime)
    await run_until(runtime, SilentEngine([]), lambda: job(runtime, silent).status in ("done", "failed"))
    assert job(runtime, silent).status == "done"
    [result] = results_for(runtime, silent)
    assert result.title == "Transcript: call.ogg — no speech detected"
    assert "No speech detected" in (result.summary or "") and result.body is None
    with runtime.db.session() as session:
        from schemas.tables import Attachment

        assert session.scalar(select(func.count()).select_from(Attachment)
                              .where(Attachment.result_id == result.id)) == 0
