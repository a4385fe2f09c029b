"""Fixtures for the transcription API tests: espeak-ng speech, and a helper that uploads it.

Speech is synthesised once per session (espeak-ng takes a fraction of a second); relays come from
the shared ``make_relay`` / ``delivering_relay`` factories, so every store-touching test here runs
on SQLite and, where marked cheap enough, on PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import WEBHOOK_URL, Relay

# The recordings are the engine tests' own (one espeak-ng fixture for both suites).
from tests.transcription.conftest import LONG_WORDS, SHORT_WORDS, Speech, speech  # noqa: E402, F401


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
