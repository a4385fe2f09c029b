"""Fixtures for the transcription tests: real speech from espeak-ng, and engines.

Speech is synthesised once per session; engines load the bundled tiny.en model
(no downloads). The shared engine is started and closed with ``asyncio.run``
because the engine is not bound to an event loop, while pytest-asyncio gives
every test a fresh one.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

SHORT_TEXT = "The weather in Paris is sunny today. Please deliver the quarterly report to the finance team."
SHORT_WORDS = ("weather", "paris", "deliver", "quarterly", "report")
LONG_TEXT = (
    "Good morning everyone. This is the weekly status meeting for the platform team. "
    "First, the database migration finished on Tuesday without any downtime. "
    "Second, the new monitoring dashboards are live, and alerts now go to the on call channel. "
    "Third, we need volunteers to review the security checklist before Friday. "
    "The budget for the next quarter has been approved by finance. "
    "Please remember to update your tickets before the end of the day. "
    "We will discuss the hiring plan next week. Thank you all for joining, and see you on Monday."
)
LONG_WORDS = ("meeting", "migration", "volunteers", "security", "budget", "hiring")


@dataclass(frozen=True)
class Speech:
    """Synthesised test recordings: ``short`` is about 5 s, ``long`` about 30 s (two Whisper windows)."""

    short: Path
    long: Path


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    """WAV files of real (synthetic) speech made by espeak-ng."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is not installed; install it with `apt-get install -y espeak-ng` (CI does)")
    directory = tmp_path_factory.mktemp("speech")
    recordings = {}
    for name, text in (("short", SHORT_TEXT), ("long", LONG_TEXT)):
        path = directory / f"{name}.wav"
        subprocess.run([espeak, "-w", str(path), text], check=True, capture_output=True, timeout=60)
        recordings[name] = path
    return Speech(**recordings)


@pytest.fixture(scope="session")
def shared_engine() -> Iterator[object]:
    """One started tiny.en engine for the tests that only transcribe."""
    pytest.importorskip("faster_whisper", reason="the [transcription] extra is not installed")
    from transcription import TranscriptionEngine

    engine = TranscriptionEngine("tiny.en", device="cpu", workers=1)
    asyncio.run(engine.start())
    yield engine
    asyncio.run(engine.close())


@pytest_asyncio.fixture
async def make_engine() -> AsyncIterator[Callable[..., object]]:
    """Factory for engines a test may break or close; every one made is closed afterwards."""
    pytest.importorskip("faster_whisper", reason="the [transcription] extra is not installed")
    from transcription import TranscriptionEngine

    engines: list[TranscriptionEngine] = []

    def make(model: str = "tiny.en", **overrides: object) -> TranscriptionEngine:
        options: dict[str, object] = {"device": "cpu", "workers": 1} | overrides
        engine = TranscriptionEngine(model, **options)  # type: ignore[arg-type]
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()


def words_found(text: str, expected: tuple[str, ...]) -> list[str]:
    """The expected words that occur in ``text``, ignoring case and punctuation."""
    spoken = {word.strip(".,!?;:'\"").lower() for word in text.split()}
    return [word for word in expected if word in spoken]
