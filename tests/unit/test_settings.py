"""Settings invariants: a value nothing in the relay could work with is refused at start, by name."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.settings import DEFAULT_RETRY_SCHEDULE, Settings


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize(("name", "value"), [
    ("lease_seconds", 0), ("lease_seconds", -1), ("poll_interval", 0), ("worker_concurrency", 0),
    ("http_retry_attempts", 0), ("max_delivery_crashes", 0), ("max_body_messages", 0),
    ("max_attachment_bytes", 0), ("max_result_bytes", -5), ("max_audio_bytes", 0), ("transcription_workers", 0),
    ("retry_jitter", -0.1), ("retry_jitter", 1.5), ("discord_timeout", 0), ("shutdown_grace", -1),
    ("interaction_margin", -1), ("interaction_margin", 900), ("max_delivery_age", 0), ("retention_delivered", 0),
    ("retention_undelivered", -1), ("purge_interval", 0), ("cloudflare_backoff", -1), ("loop_stall_seconds", 0),
    ("worker_health_port", 0), ("worker_health_port", 70000), ("database_url", ""), ("whisper_model", ""),
    ("discord_api_base", "discord.com/api/v10"), ("discord_api_base", "https://"), ("log_level", "LOUD"),
    ("retry_schedule", []), ("retry_schedule", "5,-1"), ("retry_schedule", ""),
])
def test_an_unusable_value_is_refused_naming_the_setting(name: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(**{name: value})
    assert {error["loc"][0] for error in caught.value.errors()} == {name}


def test_defaults_and_edge_values_are_accepted() -> None:
    settings = _settings()
    assert settings.retry_schedule == list(DEFAULT_RETRY_SCHEDULE) and settings.log_level == "INFO"
    edge = _settings(retry_schedule="0,0.5", retry_jitter=0, interaction_margin=0, shutdown_grace=0,
                     log_level=" debug ", discord_api_base="http://127.0.0.1:9/api/v10", http_retry_attempts=1)
    assert edge.retry_schedule == [0.0, 0.5] and edge.log_level == "DEBUG"


def test_environment_values_are_validated_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_WORKER_CONCURRENCY", "0")
    with pytest.raises(ValidationError, match="worker_concurrency"):
        Settings(_env_file=None)
