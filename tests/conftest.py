"""Shared fixtures: the store on SQLite and PostgreSQL, a live relay over real HTTP, producer keys.

Every store-touching test runs on both backends through the ``database_url`` fixture. PostgreSQL
gets one fresh database per test run (dropped at the end), emptied between tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from app.main import create_app
from app.runtime import Runtime
from app.settings import Settings
from store.engine import migrate
from tests.support.db import fresh_pg_database, pg_url, truncate_all
from tests.support.server import LiveServer


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One migrated PostgreSQL database for the whole run."""
    with fresh_pg_database() as name:
        engine = create_engine(pg_url(name))
        migrate(engine)
        engine.dispose()
        yield name


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """The store URL for this test: a SQLite file, or the run's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/relay.db"
    url = pg_url(request.getfixturevalue("pg_database"))
    truncate_all(url)
    return url


@pytest.fixture
def runtime(database_url: str) -> Iterator[Runtime]:
    """A migrated store on this test's backend, no server (store-level tests)."""
    rt = Runtime.build(Settings(_env_file=None, database_url=database_url, run_workers=False))
    rt.db.migrate()
    yield rt
    rt.close()


@pytest.fixture
def fresh_reader(database_url: str) -> Iterator[Runtime]:
    """A second, independent engine: what it reads was committed, not merely written in a transaction."""
    rt = Runtime.build(Settings(_env_file=None, database_url=database_url, run_workers=False))
    yield rt
    rt.close()


@dataclass
class Relay:
    """A relay running over real HTTP, with a producer key and a client that sends it."""

    server: LiveServer
    runtime: Runtime
    key: str
    client: httpx.Client

    @property
    def url(self) -> str:
        """Base URL of the relay."""
        return self.server.url

    @property
    def settings(self) -> Settings:
        """The settings it runs with."""
        return self.runtime.settings

    def post_result(self, payload: dict, **kwargs: Any) -> httpx.Response:
        """POST a JSON result."""
        return self.client.post("/v1/results", json=payload, **kwargs)


@pytest.fixture
def make_relay(database_url: str, tmp_path: Any) -> Iterator[Callable[..., Relay]]:
    """Factory: start a relay on this test's store with settings overrides; stopped at teardown."""
    started: list[Relay] = []

    def factory(**overrides: Any) -> Relay:
        values: dict[str, Any] = {"database_url": database_url, "run_workers": False,
                                  "discord_api_base": "http://127.0.0.1:9/api/v10"}
        values.update(overrides)
        settings = Settings(_env_file=None, **values)
        runtime = Runtime.build(settings)
        server = LiveServer(create_app(runtime=runtime), **settings.proxy_options()).start()
        _, key = runtime.keys.create(name="test")
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        relay = Relay(server=server, runtime=runtime, key=key, client=client)
        started.append(relay)
        return relay

    yield factory
    for relay in started:
        relay.client.close()
        relay.server.stop()
        relay.runtime.close()


@pytest.fixture
def relay(make_relay: Callable[..., Relay]) -> Relay:
    """A relay with default settings."""
    return make_relay()


WEBHOOK_URL = "https://discord.com/api/webhooks/123456789012345678/secret-webhook-token_ABC"


def result_payload(**overrides: Any) -> dict:
    """A valid result with one webhook destination; override any field."""
    payload: dict[str, Any] = {
        "workflow_id": "wf_1",
        "title": "Analysis: a video",
        "summary": "Short summary",
        "body": "Long body\n\nwith paragraphs",
        "fields": [{"name": "Sentiment", "value": "mixed", "inline": True}],
        "route": [{"type": "webhook", "url": WEBHOOK_URL}],
    }
    payload.update(overrides)
    return payload


@pytest.fixture
def discord() -> Iterator[Any]:
    """A Discord emulator on a free port of 127.0.0.1, stopped after the test."""
    from tests.fakes.discord import DiscordEmulator

    emulator = DiscordEmulator(bot_token="bot-token-for-tests").start()
    yield emulator
    emulator.stop()


@pytest.fixture
def delivering_relay(make_relay: Callable[..., Relay], discord: Any) -> Callable[..., Relay]:
    """Factory: a relay with workers, pointed at the emulator, on quick test timings."""

    def factory(**overrides: Any) -> Relay:
        values: dict[str, Any] = {
            "run_workers": True, "discord_api_base": discord.api_base, "discord_bot_token": "bot-token-for-tests",
            "poll_interval": 0.2, "retry_schedule": "0.3,0.6,1.0", "retry_jitter": 0.1, "lease_seconds": 5,
        }
        values.update(overrides)
        return make_relay(**values)

    return factory


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05,
             message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy (bounded; never a timing assertion)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)
