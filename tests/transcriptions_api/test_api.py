"""``/v1/transcriptions`` as a producer sees it: acceptance, refusals that name the problem, auth, 501.

No model runs here (the relays have no workers), so every test is cheap and runs on both backends.
"""

from __future__ import annotations

import httpx
import pytest

import transcription
from tests.conftest import Relay
from tests.transcriptions_api.conftest import Speech, payload, upload


def test_accepted_job_is_stored_and_reported_queued(relay: Relay, speech: Speech) -> None:
    got = upload(relay, speech.short.read_bytes(), payload(title="Standup", language="en", task="transcribe",
                                                             vad_filter=True, word_timestamps=True))
    assert got.status_code == 202, got.text
    body = got.json()
    assert body["id"].startswith("tr_") and body["status"] == "queued"
    assert body["links"]["self"] == f"/v1/transcriptions/{body['id']}"
    view = relay.client.get(body["links"]["self"]).json()
    assert view["status"] == "queued" and view["filename"] == "speech.wav" and view["workflow_id"] == "wf_tr"
    assert view["size"] == speech.short.stat().st_size
    assert 3 < view["duration"] < 15 and view["processed"] == 0 and view["progress"] == 0
    assert view["result_id"] is None and view["error"] is None
    assert "secret-webhook-token" not in str(view)


@pytest.mark.parametrize(("data", "reason"), [
    (b"this is a text file, not a recording\n" * 20, "not a recognisable audio"),
    (bytes(range(256)) * 64, "not a recognisable audio"),
    (b"", "empty"),
])
def test_corrupt_audio_is_a_422_naming_file(relay: Relay, data: bytes, reason: str) -> None:
    got = upload(relay, data, filename="notes.mp3")
    assert got.status_code == 422, got.text
    error = got.json()["error"]
    assert error["message"].startswith("file: ") and reason in error["message"]
    assert error["details"][0]["field"] == "file"


def test_truncated_audio_is_refused(relay: Relay, speech: Speech) -> None:
    got = upload(relay, speech.short.read_bytes()[:44])  # the WAV header and no samples
    assert got.status_code == 422 and got.json()["error"]["details"][0]["field"] == "file"


def test_audio_over_the_limit_is_a_413(make_relay, speech: Speech) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = make_relay(max_audio_bytes=10_000)
    got = upload(relay, speech.short.read_bytes())
    assert got.status_code == 413
    assert "RELAY_MAX_AUDIO_BYTES" in got.json()["error"]["message"]
    # A body over the audio limit plus the form allowance is refused before it is read.
    big = upload(relay, b"\0" * (1024 * 1024 + 20_000))
    assert big.status_code == 413 and "RELAY_MAX_AUDIO_BYTES" in big.json()["error"]["message"]


def test_audio_limit_is_independent_of_the_result_limit(make_relay, speech: Speech) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = make_relay(max_result_bytes=20_000)
    assert speech.short.stat().st_size > 20_000
    assert upload(relay, speech.short.read_bytes()).status_code == 202
    got = relay.post_result({"route": payload()["route"], "body": "x" * 30_000})
    assert got.status_code == 413 and "RELAY_MAX_RESULT_BYTES" in got.json()["error"]["message"]


@pytest.mark.parametrize(("body", "status", "field"), [
    (payload(route=[{"type": "webhook", "url": "https://example.com/api/webhooks/1/abc"}]), 422, "route.0.url"),
    (payload(route=[]), 422, "route"),
    (payload(task="summarise"), 422, "task"),
    (payload(language="English"), 422, "language"),
    (payload(model="large-v3"), 422, "model"),
    (payload(colour="red"), 422, "colour"),
])
def test_invalid_payload_names_the_field(relay: Relay, speech: Speech, body: dict, status: int, field: str) -> None:
    got = upload(relay, speech.short.read_bytes(), body)
    assert got.status_code == status, got.text
    assert got.json()["error"]["details"][0]["field"] == field


def test_missing_parts_and_wrong_content_type(relay: Relay) -> None:
    no_file = upload(relay, None)
    assert no_file.status_code == 422 and no_file.json()["error"]["details"][0]["field"] == "file"
    no_payload = relay.client.post("/v1/transcriptions", files={"file": ("a.wav", b"RIFF", "audio/wav")})
    assert no_payload.status_code == 400 and "payload_json" in no_payload.json()["error"]["message"]
    bad_json = relay.client.post("/v1/transcriptions", files={"payload_json": (None, "{nope"),
                                                              "file": ("a.wav", b"RIFF", "audio/wav")})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    assert relay.client.post("/v1/transcriptions", json=payload()).status_code == 415


def test_auth_is_required(relay: Relay, speech: Speech) -> None:
    anonymous = httpx.Client(base_url=relay.url)
    files = {"payload_json": (None, "{}"), "file": ("a.wav", speech.short.read_bytes(), "audio/wav")}
    assert anonymous.post("/v1/transcriptions", files=files).status_code == 401
    assert anonymous.get("/v1/transcriptions/tr_x").status_code == 401
    wrong = anonymous.get("/v1/transcriptions/tr_x", headers={"Authorization": "Bearer rrk_nope.nope"})
    assert wrong.status_code == 401
    anonymous.close()


def test_unknown_job_is_a_404(relay: Relay) -> None:
    got = relay.client.get("/v1/transcriptions/tr_doesnotexist")
    assert got.status_code == 404 and "no such transcription" in got.json()["error"]["message"]


def test_without_the_extra_the_endpoint_answers_501(  # type: ignore[no-untyped-def]
    relay: Relay, speech: Speech, monkeypatch
) -> None:
    monkeypatch.setattr(transcription, "available", lambda: False)
    got = upload(relay, speech.short.read_bytes())
    assert got.status_code == 501
    assert "[transcription] extra" in got.json()["error"]["message"]
