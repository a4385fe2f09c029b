"""Configuration: one ``Settings`` class read from ``RELAY_*`` environment variables and ``.env``.

Every setting has a default, so ``relay serve`` starts with nothing configured on an embedded
SQLite database. The settings object is built once (in the CLI or the lifespan) and handed down;
nothing reads the environment at import time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.tables import TENANT_NAME

MiB = 1024 * 1024

DEFAULT_RETRY_SCHEDULE = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)


class Settings(BaseSettings):
    """Every knob of the relay, with the default a single-machine install wants.

    Invariants are checked here, once, at start (``Field(ge=…)``, ``min_length``): a value no part
    of the relay could work with (no attempts, a negative lease, an empty retry schedule) stops
    ``relay`` with the setting's name instead of being clamped somewhere downstream.
    """

    # hide_input_in_errors: a refused setting may hold a token (a webhook URL), never echoed in an error.
    model_config = SettingsConfigDict(env_prefix="RELAY_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    database_url: str = Field(default="sqlite:///./data/relay.db", min_length=1)
    discord_api_base: str = Field(default="https://discord.com/api/v10", pattern=r"^https?://[^/\s]+(/\S*)?$")
    discord_bot_token: SecretStr | None = None
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    admin_token: SecretStr | None = None
    secret_key: SecretStr | None = None
    metrics_token: SecretStr | None = None
    # Addresses (or CIDRs) of reverse proxies whose X-Forwarded-For is believed; none by default,
    # so the failed-login limit counts the peer address and a client cannot pick its own.
    trusted_proxies: str = ""

    max_result_bytes: int = Field(default=64 * MiB, ge=1)
    max_attachment_bytes: int = Field(default=8 * MiB, ge=1)
    max_body_messages: int = Field(default=3, ge=1)
    max_audio_bytes: int = Field(default=512 * MiB, ge=1)

    # Seconds before an interaction token dies (15 minutes) when the hand-off notice is posted.
    interaction_margin: float = Field(default=60.0, ge=0, lt=900)
    lease_seconds: float = Field(default=30.0, gt=0)
    worker_concurrency: int = Field(default=16, ge=1)
    poll_interval: float = Field(default=2.0, gt=0)
    # Above one Discord call (``discord_timeout``): a send on the wire when it ends is still awaited
    # (up to ``discord_timeout`` more), so terminationGracePeriodSeconds must exceed the sum.
    shutdown_grace: float = Field(default=30.0, ge=0)
    max_delivery_crashes: int = Field(default=3, ge=1)
    loop_stall_seconds: float = Field(default=300.0, gt=0)
    # ``relay worker`` answers /healthz and /readyz here when set (the chart sets it for its probes).
    worker_health_port: int | None = Field(default=None, ge=1, le=65535)
    worker_health_host: str = "0.0.0.0"  # noqa: S104 - a probe endpoint inside the pod
    run_workers: bool = True
    retry_schedule: Annotated[list[Annotated[float, Field(ge=0)]], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE), min_length=1)
    retry_jitter: float = Field(default=0.2, ge=0, le=1)
    max_delivery_age: float = Field(default=24 * 3600.0, gt=0)
    http_retry_attempts: int = Field(default=3, ge=1)
    discord_timeout: float = Field(default=20.0, gt=0)
    cloudflare_backoff: float = Field(default=600.0, ge=0)
    # Discord's undocumented cap on webhook posts per channel, shared by all webhooks of the channel:
    # "COUNT/SECONDS", or "off". The relay paces every destination of one channel under it.
    channel_limit: str = Field(default="30/60", pattern=r"^\s*(off|\d+\s*/\s*\d+(\.\d+)?)\s*$")
    # A channel slot further away than this reschedules the delivery instead of holding a worker for it.
    channel_wait_max: float = Field(default=5.0, ge=0)
    # Operator alerts: a Discord webhook of the operators' channel; digests at most once per window.
    alert_webhook: SecretStr | None = None
    alert_window: float = Field(default=60.0, gt=0)
    # Where operators open the relay (https://relay.example.com): alert digests link to admin pages.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")

    retention_delivered: float = Field(default=7 * 24 * 3600.0, gt=0)
    retention_undelivered: float = Field(default=30 * 24 * 3600.0, gt=0)
    purge_interval: float = Field(default=3600.0, gt=0)

    transcription_workers: int = Field(default=1, ge=1)
    whisper_model: str = Field(default="tiny.en", min_length=1)
    whisper_device: Literal["auto", "cpu", "cuda"] = "auto"
    keep_audio: bool = False

    # Discord's HTTP interactions (the ``/results`` pickup command): both set, or the endpoint is off.
    discord_application_id: str | None = Field(default=None, pattern=r"^[0-9]{1,20}$")
    discord_public_key: str | None = None
    # Tenants whose results the command serves; empty: every tenant.
    discord_tenants: Annotated[list[str], NoDecode] = Field(default_factory=list)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] = "console"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(part) for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _alert_webhook_is_a_webhook(self) -> Settings:
        # Checked at start, not at the first alert: an operator must learn of a typo before it matters.
        if self.alert_webhook is not None:
            from app.destinations import parse_webhook_url

            try:
                parse_webhook_url(self.alert_webhook.get_secret_value(), self.discord_api_base)
            except ValueError as exc:
                raise ValueError(f"RELAY_ALERT_WEBHOOK {exc}") from None
        return self

    @field_validator("discord_public_key", mode="before")
    @classmethod
    def _public_key(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower() or None
        if isinstance(value, str) and not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be the application's public key from the Developer Portal: 64 hex characters")
        return value

    @field_validator("discord_tenants", mode="before")
    @classmethod
    def _split_tenants(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for name in value:
                if not isinstance(name, str) or not TENANT_NAME.match(name):
                    raise ValueError(f"invalid tenant {name!r}: 1-40 characters of a-z, 0-9, '_' and '-'")
        return value

    @model_validator(mode="after")
    def _interactions_complete(self) -> Settings:
        if (self.discord_application_id is None) != (self.discord_public_key is None):
            raise ValueError("set RELAY_DISCORD_APPLICATION_ID and RELAY_DISCORD_PUBLIC_KEY together "
                             "(the interactions endpoint needs both)")
        return self

    @property
    def interactions_enabled(self) -> bool:
        """True when ``POST /discord/interactions`` answers (application id and public key set)."""
        return self.discord_application_id is not None and self.discord_public_key is not None

    def proxy_options(self) -> dict[str, object]:
        """uvicorn's proxy settings: ``X-Forwarded-*`` is read only from ``RELAY_TRUSTED_PROXIES``."""
        trusted = ",".join(p.strip() for p in self.trusted_proxies.split(",") if p.strip())
        return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or ""}

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded default, where the relay may create and migrate the file itself."""
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a SQLite URL, or None for in-memory and other backends."""
        if not self.is_sqlite:
            return None
        path = self.database_url.split(":///", 1)[-1].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)
