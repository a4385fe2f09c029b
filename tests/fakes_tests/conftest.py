"""Fixtures for the emulator's own tests: one server per session, reset before each test.

Starting uvicorn costs a few hundred milliseconds; ``reset()`` returns the emulator to its
just-constructed state, so sharing one server keeps the directory fast without leaking state
between tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.discord import DiscordEmulator


@pytest.fixture(scope="session")
def _emulator_server() -> Iterator[DiscordEmulator]:
    with DiscordEmulator(bot_token="bot-token") as emulator:
        yield emulator


@pytest.fixture
def discord(_emulator_server: DiscordEmulator) -> Iterator[DiscordEmulator]:
    """The running emulator, freshly reset (bot token ``bot-token``)."""
    _emulator_server.reset()
    yield _emulator_server
    _emulator_server.reset()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """A plain HTTP client, closed after the test."""
    with httpx.Client(timeout=5.0) as http:
        yield http


@pytest.fixture
def bot() -> dict[str, str]:
    """The Authorization header of the emulator's bot."""
    return {"Authorization": "Bot bot-token"}
