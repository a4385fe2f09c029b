"""Quick measurement of the transcription engine on this machine.

Usage: ``.venv/bin/python bench/transcription_engine.py [--model tiny.en] [--workers 1] [--seconds 60]``

Synthesises about ``--seconds`` of varied speech with espeak-ng,
then reports: model load time in-process, engine start time (spawn + import +
load), real-time factor of one transcription through the engine, and how late
an asyncio ticker ran while the transcription was in progress (the event loop
must stay free: the lag should be a few milliseconds, not seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

# Varied sentences, not one paragraph repeated: Whisper treats repeated text as
# a hallucination loop (compression-ratio fallback), which would time the
# fallback path instead of normal decoding.
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
_TEAMS = ("platform", "finance", "security", "design", "support", "research", "sales")
_VERBS = ("reviewed", "finished", "postponed", "approved", "rebuilt", "tested", "shipped")
_THINGS = ("migration", "dashboard", "budget", "release", "checklist", "contract", "website", "report")
_CITIES = ("Paris", "Berlin", "Madrid", "Lisbon", "Vienna", "Oslo", "Dublin", "Prague")


def speech_text(seconds: float, seed: int = 0) -> str:
    """About ``seconds`` of varied meeting-style sentences (espeak says roughly 2.5 words a second)."""
    rng = random.Random(seed)
    sentences = []
    for number in range(1, max(1, round(seconds / 3.5)) + 1):
        sentences.append(
            f"Item {number}: on {rng.choice(_DAYS)} the {rng.choice(_TEAMS)} team "
            f"{rng.choice(_VERBS)} the {rng.choice(_THINGS)} in {rng.choice(_CITIES)}."
        )
    return " ".join(sentences)


def synthesise(directory: Path, seconds: float) -> Path:
    """Write a WAV of roughly ``seconds`` of speech."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is not installed: apt-get install -y espeak-ng")
    path = directory / "speech.wav"
    subprocess.run([espeak, "-w", str(path), speech_text(seconds)], check=True)
    return path


def load_in_process(model: str) -> float:
    """Seconds to construct a WhisperModel in this process (the figure a worker pays once)."""
    from faster_whisper import WhisperModel

    from transcription import resolve_model

    spec = resolve_model(model)
    started = time.perf_counter()
    WhisperModel(spec.path, device=spec.device, compute_type=spec.compute_type)
    return time.perf_counter() - started


async def through_engine(model: str, workers: int, audio: Path) -> None:
    """Start the engine, transcribe once while ticking, print the numbers."""
    from transcription import TranscriptionEngine, probe_audio

    duration = probe_audio(audio).duration
    engine = TranscriptionEngine(model, workers=workers)
    print(f"engine: {engine!r}, cpu_threads per worker: {engine.cpu_threads}")
    started = time.perf_counter()
    await engine.start()
    print(f"engine start (spawn, import, load): {time.perf_counter() - started:.2f} s")

    lags: list[float] = []
    interval = 0.01

    async def ticker() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(interval)
            lags.append(time.perf_counter() - before - interval)

    progress: list[float] = []
    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    try:
        transcript = await engine.transcribe(audio, on_progress=lambda done, total: progress.append(done))
    finally:
        ticking.cancel()
    elapsed = time.perf_counter() - started
    await engine.close()

    print(f"audio: {duration:.1f} s, transcription: {elapsed:.2f} s, real-time factor: {elapsed / duration:.3f}")
    print(f"progress reports: {len(progress)}, segments: {len(transcript.segments)}")
    mean_lag = sum(lags) / len(lags)
    print(f"event-loop ticks: {len(lags)}, lag max {max(lags) * 1000:.1f} ms, mean {mean_lag * 1000:.2f} ms")
    print(f"text starts: {transcript.text[:100]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        audio = synthesise(Path(directory), args.seconds)
        print(f"model load in-process: {load_in_process(args.model):.2f} s")
        asyncio.run(through_engine(args.model, args.workers, audio))


if __name__ == "__main__":
    main()
