"""The client against a real ``relay serve`` subprocess and the Discord emulator, over real HTTP."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.discord import DiscordEmulator
from tests.support.procs import RelayProcess

FAST = {"poll_interval": 0.2, "retry_schedule": "0.3,0.6,1", "retry_jitter": 0.1, "log_format": "console"}


@dataclass
class LiveRelay:
    """A relay subprocess, its emulator, a producer key and a webhook on the emulator."""

    proc: RelayProcess
    discord: DiscordEmulator
    key: str
    hook_id: str
    hook_url: str

    @property
    def url(self) -> str:
        """The relay's base URL."""
        return self.proc.url

    def new_webhook(self) -> tuple[str, str]:
        """Another webhook: ``(id, url)``, so a test reads back only its own messages."""
        hook_id, _, url = self.discord.add_webhook()
        return hook_id, url


def start_relay(tmp: Path, discord: DiscordEmulator, **settings: object) -> LiveRelay:
    """``relay serve`` on a SQLite file in ``tmp`` (it migrates itself), pointed at the emulator."""
    key = "rk_client_" + secrets.token_urlsafe(16)
    values: dict[str, object] = {"database_url": f"sqlite:///{tmp}/relay.db", "discord_api_base": discord.api_base,
                                 "discord_bot_token": "bot", "api_keys": key, **FAST}
    values.update(settings)
    proc = RelayProcess("serve", tmp / "relay.log", **values).start()
    hook_id, _, hook_url = discord.add_webhook()
    return LiveRelay(proc, discord, key, hook_id, hook_url)


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRelay]:
    """One relay and emulator for the client's tests (each test uses its own webhook, so none sees another's)."""
    with DiscordEmulator(bot_token="bot") as discord:
        relay = start_relay(tmp_path_factory.mktemp("relay"), discord)
        try:
            yield relay
        finally:
            relay.proc.stop()


@pytest.fixture
def dead_url() -> str:
    """A URL where nothing listens."""
    from tests.support.procs import free_port

    return f"http://127.0.0.1:{free_port()}"
