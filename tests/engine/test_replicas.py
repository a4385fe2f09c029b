"""The Kubernetes shape without a cluster: two ``relay serve`` replicas and a ``relay worker`` on one
PostgreSQL database, results through both APIs, one replica drained with SIGTERM mid-flow."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest
from sqlalchemy import create_engine

from store.engine import migrate
from tests.conftest import result_payload, wait_for
from tests.engine.helpers import titles
from tests.engine.test_processes import FAST, _key, _statuses
from tests.fakes.discord import DiscordEmulator
from tests.support.db import fresh_pg_database, pg_url
from tests.support.procs import RelayProcess

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_two_replicas_and_a_worker_deliver_exactly_once_and_survive_a_drain(tmp_path) -> None:  # type: ignore[no-untyped-def]
    procs: list[RelayProcess] = []
    with DiscordEmulator(bot_token="bot") as discord, fresh_pg_database("relay_replicas") as name:
        url = pg_url(name)
        engine = create_engine(url)
        migrate(engine)  # the Helm chart's pre-install hook
        engine.dispose()
        try:
            common = dict(FAST, database_url=url, discord_api_base=discord.api_base, shutdown_grace=5)
            api_a = RelayProcess("serve", tmp_path / "a.log", **common).start()
            api_b = RelayProcess("serve", tmp_path / "b.log", **common).start()
            worker = RelayProcess("worker", tmp_path / "w.log", **common).start()
            procs += [api_a, api_b, worker]
            key = _key(url)
            hooks = [discord.add_webhook() for _ in range(10)]
            ids: list[str] = []
            lock = threading.Lock()

            def produce(base: str, start: int) -> None:
                with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
                    for i in range(start, start + 100):
                        resp = c.post("/v1/results", json=result_payload(
                            title=f"r{i}", body=None, route=[{"type": "webhook", "url": hooks[i % 10][2]}]))
                        assert resp.status_code == 202, resp.text
                        with lock:
                            ids.append(resp.json()["id"])

            producers = [threading.Thread(target=produce, args=(api_a.url, 0)),
                         threading.Thread(target=produce, args=(api_b.url, 100))]
            for t in producers:
                t.start()
            for t in producers:
                t.join()
            # Drain replica A while its workers hold leases and messages are in flight.
            wait_for(lambda: sum(len(discord.messages(webhook_id=h[0])) for h in hooks) >= 30, message="flowing")
            code, _ = api_a.terminate(timeout=30)
            assert code == 0
            wait_for(lambda: _statuses(api_b.url, key, ids)["delivered"] == 200, timeout=180, interval=1,
                     message="200 delivered")
            seen = Counter(t for h in hooks for t in titles(discord.messages(webhook_id=h[0])))
            assert set(seen) == {f"r{i}" for i in range(200)}
            assert sum(seen.values()) - 200 <= 1  # only a message whose response the drain cut off may repeat
            limited = [(r.path.split("/")[4], r.at, r.reason) for r in discord.rejected if r.status == 429]
            assert discord.count_429() == 0, (limited, [(m.webhook_id, m.created_at) for m in discord.messages()
                                                        if limited and m.webhook_id == limited[0][0]])
            # Order per webhook holds across replicas for results accepted by the same API.
            for wid, _, _ in hooks:
                from_a = [int(t[1:]) for t in titles(discord.messages(webhook_id=wid)) if int(t[1:]) < 100]
                assert from_a == sorted(from_a)
            for p in (api_b, worker):
                assert p.terminate(timeout=30)[0] == 0
        finally:
            for p in procs:
                p.stop()
