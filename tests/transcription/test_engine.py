"""The engine, end to end with the real tiny.en model on espeak-ng speech."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from transcription import (
    EngineClosed,
    InvalidAudio,
    ModelLoadError,
    TranscribeOptions,
    TranscriptionCrashed,
    TranscriptionEngine,
    to_srt,
    to_vtt,
)

from .conftest import LONG_WORDS, SHORT_WORDS, Speech, words_found

pytestmark = pytest.mark.transcription

MakeEngine = Callable[..., TranscriptionEngine]


async def test_transcript_contains_the_spoken_words(shared_engine: TranscriptionEngine, speech: Speech) -> None:
    transcript = await shared_engine.transcribe(speech.short)
    assert len(words_found(transcript.text, SHORT_WORDS)) >= 3, transcript.text
    assert transcript.language == "en"
    assert transcript.duration == pytest.approx(5.1, abs=1.0)
    assert transcript.segments and all(s.start < s.end for s in transcript.segments)


async def test_subtitles_from_a_real_transcript_are_well_formed(
    shared_engine: TranscriptionEngine, speech: Speech
) -> None:
    transcript = await shared_engine.transcribe(speech.long, TranscribeOptions(word_timestamps=True))
    assert len(words_found(transcript.text, LONG_WORDS)) >= 4, transcript.text
    assert all(segment.words for segment in transcript.segments)

    srt = to_srt(transcript.segments)
    blocks = srt.strip().split("\n\n")
    assert len(blocks) >= 3
    stamp = r"(\d\d):(\d\d):(\d\d)[,.](\d{3})"
    previous_end = -1
    for number, block in enumerate(blocks, start=1):
        index, timing, text = block.split("\n")
        assert index == str(number) and text
        start, end = (
            ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(ms) for h, m, s, ms in re.findall(stamp, timing)
        )
        assert previous_end <= start < end
        previous_end = end

    vtt = to_vtt(transcript.segments)
    assert vtt.startswith("WEBVTT\n\n")
    timings = re.findall(rf"^{stamp} --> {stamp}$", vtt, flags=re.MULTILINE)
    assert len(timings) == len(blocks)


async def test_progress_moves_forward_to_the_duration(shared_engine: TranscriptionEngine, speech: Speech) -> None:
    reports: list[tuple[float, float]] = []

    async def on_progress(done: float, total: float) -> None:
        reports.append((done, total))

    transcript = await shared_engine.transcribe(speech.long, on_progress=on_progress)
    done = [seconds for seconds, _ in reports]
    assert len(reports) >= 3
    assert done[0] == 0.0
    assert done == sorted(done)
    assert done[-1] == pytest.approx(transcript.duration)
    assert {total for _, total in reports} == {transcript.duration}


async def test_event_loop_keeps_running_during_a_transcription(
    shared_engine: TranscriptionEngine, speech: Speech
) -> None:
    ticks = 0
    progress_calls = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    def count_progress(done: float, total: float) -> None:
        nonlocal progress_calls
        progress_calls += 1

    ticking = asyncio.create_task(ticker())
    try:
        await shared_engine.transcribe(speech.long, on_progress=count_progress)
    finally:
        ticking.cancel()
    # A blocked loop would tick once or twice in all; a free one ticks every 10 ms.
    assert ticks >= 20
    assert progress_calls >= 3


@pytest.mark.parametrize("name", ["ogg-opus", "mp3", "m4a-aac", "webm-opus", "flac"])
async def test_other_formats_transcribe(
    name: str, shared_engine: TranscriptionEngine, speech: Speech, tmp_path: Path
) -> None:
    from .media import encode_audio

    transcript = await shared_engine.transcribe(encode_audio(speech.short, tmp_path, name))
    assert len(words_found(transcript.text, SHORT_WORDS)) >= 3, transcript.text


async def test_two_workers_run_jobs_side_by_side(make_engine: MakeEngine, speech: Speech) -> None:
    engine = make_engine(workers=2)
    await engine.start()
    assert len(engine.worker_pids()) == 2
    first, second = await asyncio.gather(engine.transcribe(speech.short), engine.transcribe(speech.short))
    assert first.text == second.text


async def test_invalid_audio_is_rejected_before_using_a_worker(make_engine: MakeEngine, tmp_path: Path) -> None:
    engine = make_engine()  # never started: the probe runs in the parent
    text_file = tmp_path / "minutes.mp3"
    text_file.write_text("these are the minutes, not a recording\n" * 10)
    noise = tmp_path / "noise.wav"
    noise.write_bytes(bytes(range(256)) * 64)
    for bad in (text_file, noise):
        with pytest.raises(InvalidAudio):
            await engine.transcribe(bad)
    assert engine.worker_pids() == []


async def test_a_killed_worker_fails_its_job_and_the_engine_recovers(make_engine: MakeEngine, speech: Speech) -> None:
    engine = make_engine()
    await engine.start()
    [victim] = engine.worker_pids()
    reports = 0

    def kill_on_second_report(done: float, total: float) -> None:
        # The second report comes after the first 30 s window, long after the
        # queued job below was submitted; killing then catches both cases.
        nonlocal reports
        reports += 1
        if reports == 2:
            os.kill(victim, signal.SIGKILL)

    running = asyncio.create_task(engine.transcribe(speech.long, on_progress=kill_on_second_report))
    queued = asyncio.create_task(engine.transcribe(speech.short))

    with pytest.raises(TranscriptionCrashed):
        await running
    # The queued job had not reached a worker, so it ran again on the new pool.
    assert len(words_found((await queued).text, SHORT_WORDS)) >= 3

    after = await engine.transcribe(speech.short)
    assert len(words_found(after.text, SHORT_WORDS)) >= 3
    assert victim not in engine.worker_pids()


async def test_a_worker_killed_while_idle_does_not_fail_the_next_job(make_engine: MakeEngine, speech: Speech) -> None:
    engine = make_engine()
    await engine.start()
    [victim] = engine.worker_pids()
    os.kill(victim, signal.SIGKILL)
    transcript = await engine.transcribe(speech.short)
    assert len(words_found(transcript.text, SHORT_WORDS)) >= 3


async def test_close_abandons_a_running_job(make_engine: MakeEngine, speech: Speech) -> None:
    engine = make_engine()
    started = asyncio.Event()
    job = asyncio.create_task(engine.transcribe(speech.long, on_progress=lambda done, total: started.set()))
    await started.wait()
    await engine.close()
    with pytest.raises(EngineClosed):
        await job
    with pytest.raises(EngineClosed):
        await engine.transcribe(speech.short)


async def test_a_model_that_cannot_load_reports_why(make_engine: MakeEngine, tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"not a CTranslate2 model")
    (broken / "config.json").write_text("{}")
    engine = make_engine(str(broken))
    with pytest.raises(ModelLoadError) as info:
        await engine.start()
    assert "broken-model" in str(info.value)
