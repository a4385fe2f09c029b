"""Fixtures for the transcription API tests: espeak-ng speech, and a helper that uploads it.

Speech is synthesised once per session (espeak-ng takes a fraction of a second); relays come from
the shared ``make_relay`` / ``delivering_relay`` factories, so every store-touching test here runs
on SQLite and, where marked cheap enough, on PostgreSQL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import WEBHOOK_URL, Relay

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
    """Recordings of real (synthetic) speech: ``short`` about 5 s, ``long`` about 30 s."""

    short: Path
    long: Path


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    """WAV files made by espeak-ng."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is not installed; install it with `apt-get install -y espeak-ng` (CI does)")
    directory = tmp_path_factory.mktemp("speech")
    paths = {}
    for name, text in (("short", SHORT_TEXT), ("long", LONG_TEXT)):
        path = directory / f"{name}.wav"
        subprocess.run([espeak, "-w", str(path), text], check=True, capture_output=True, timeout=60)
        paths[name] = path
    return Speech(**paths)


def payload(**overrides: Any) -> dict[str, Any]:
    """A valid ``payload_json`` with one webhook destination; override any field."""
    body: dict[str, Any] = {"route": [{"type": "webhook", "url": WEBHOOK_URL}], "workflow_id": "wf_tr"}
    body.update(overrides)
    return body


def upload(relay: Relay, data: bytes | None, body: dict[str, Any] | None = None, *, filename: str = "speech.wav",
           content_type: str = "audio/wav", **kwargs: Any) -> httpx.Response:
    """``POST /v1/transcriptions`` as multipart: ``payload_json`` and, unless ``data`` is None, a ``file`` part."""
    # A (None, value) tuple is a plain form field; httpx still sends multipart when it is the only part.
    parts: dict[str, Any] = {"payload_json": (None, json.dumps(payload() if body is None else body))}
    if data is not None:
        parts["file"] = (filename, data, content_type)
    return relay.client.post("/v1/transcriptions", files=parts, **kwargs)


def words_found(text: str, expected: tuple[str, ...]) -> list[str]:
    """The expected words that occur in ``text``, ignoring case and punctuation."""
    spoken = {word.strip(".,!?;:'\"").lower() for word in text.split()}
    return [word for word in expected if word in spoken]
