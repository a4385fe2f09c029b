"""Learning a webhook's Discord channel and guild, over real HTTP against the emulator, on both stores."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import text

from store.channels import ChannelStore
from store.engine import alembic_config
from store.session import Database
from tests.conftest import Relay, result_payload, wait_for
from tests.support.db import database_at


def _delivered(relay: Relay, rid: str) -> bool:
    return relay.client.get(f"/v1/results/{rid}").json()["status"] == "delivered"


def test_the_relay_learns_channel_and_guild_of_a_webhook(delivering_relay: Any, discord: Any) -> None:
    relay: Relay = delivering_relay()
    wid, _, url = discord.add_webhook(channel_id="700000000000000001", guild_id="800000000000000001")
    rid = relay.post_result(result_payload(route=[{"type": "webhook", "url": url}])).json()["id"]
    wait_for(lambda: _delivered(relay, rid), message="delivered")
    store = ChannelStore(relay.runtime.db)
    learned = wait_for(lambda: (c := store.channel(f"webhook:{wid}")).guild_id and c, message="guild learned")
    assert (learned.channel_id, learned.guild_id) == ("700000000000000001", "800000000000000001")
    assert store.destinations_in_channel("700000000000000001") == [f"webhook:{wid}"]
    assert store.channels([f"webhook:{wid}", "webhook:404"]) == {f"webhook:{wid}": learned}
    from store.admin import AdminStore

    [view] = AdminStore(relay.runtime.db, None).destinations()  # type: ignore[arg-type]
    assert (view.channel_id, view.guild_id) == ("700000000000000001", "800000000000000001")


def test_a_thread_destination_learns_the_parent_channel_not_the_thread(delivering_relay: Any, discord: Any) -> None:
    relay: Relay = delivering_relay()
    wid, _, url = discord.add_webhook(channel_id="700000000000000002")
    rid = relay.post_result(result_payload(route=[{"type": "webhook", "url": url,
                                                   "thread_id": "900000000000000009"}])).json()["id"]
    wait_for(lambda: _delivered(relay, rid), message="delivered")
    [message] = discord.messages(webhook_id=wid)
    assert message.channel_id == "900000000000000009"
    store = ChannelStore(relay.runtime.db)
    learned = wait_for(lambda: (c := store.channel(f"webhook:{wid}")).channel_id and c, message="channel learned")
    assert (learned.channel_id, learned.guild_id) == ("700000000000000002", discord.guild_id)


def test_a_failed_lookup_does_not_fail_the_delivery(delivering_relay: Any, discord: Any) -> None:
    relay: Relay = delivering_relay()
    wid, _, url = discord.add_webhook(channel_id="700000000000000003")
    discord.inject("http_error", times=10, status=403, method="GET", path=f"/webhooks/{wid}/")
    rid = relay.post_result(result_payload(route=[{"type": "webhook", "url": url}])).json()["id"]
    wait_for(lambda: _delivered(relay, rid), message="delivered")
    learned = ChannelStore(relay.runtime.db).channel(f"webhook:{wid}")
    assert (learned.channel_id, learned.guild_id) == ("700000000000000003", None)  # from the message object


def test_emulator_get_webhook_names_channel_and_guild(discord: Any) -> None:
    wid, token, url = discord.add_webhook(channel_id="700000000000000004", guild_id="800000000000000004")
    body = httpx.get(url).json()
    assert (body["id"], body["channel_id"], body["guild_id"], body["token"], body["type"]) == (
        wid, "700000000000000004", "800000000000000004", token, 1)
    assert body["url"] == url and body["application_id"] is None


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migration_0005_upgrades_a_database_of_today(backend: str, tmp_path: Any) -> None:
    with database_at("0003", backend=backend, tmp_path=tmp_path, prefix="relay_channels") as engine:
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO destinations (key, tenant, kind, label, disabled, updated_at)"
                              " VALUES ('webhook:1', 'default', 'webhook', '', false, :n)"), {"n": now})
            conn.execute(text(
                "INSERT INTO results (id, tenant, key_id, request_hash, fields_json, metadata_json, mode, status,"
                " generation, created_at, updated_at) VALUES ('res_old', 'default', 'k', 'h', '[]', '{}', 'all',"
                " 'pending', 1, :n, :n)"), {"n": now})
        command.upgrade(alembic_config(engine), "head")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT channel_id, guild_id FROM destinations")).all() == [(None, None)]
            assert conn.execute(text("SELECT silent FROM results")).scalars().all() == [False]
            assert conn.execute(text("SELECT count(*) FROM channel_pacers")).scalar() == 0
            assert conn.execute(text("SELECT count(*) FROM alert_events")).scalar() == 0
        store = ChannelStore(Database(engine))
        store.learn_channel("webhook:1", channel_id="7", guild_id="8")
        store.learn_channel("webhook:1", channel_id=None, guild_id=None)  # nothing new: kept
        assert store.channel("webhook:1") == store.channels(["webhook:1"])["webhook:1"]
        assert (store.channel("webhook:1").channel_id, store.channel("webhook:1").guild_id) == ("7", "8")
        command.downgrade(alembic_config(engine), "0003")
        command.upgrade(alembic_config(engine), "head")
