"""Who a result belongs to: stored with the result (and each new route), backfilled by the migration,
kept to the tenants mapped to the application, named in the hand-off notice's ``/results``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from alembic import command
from pydantic import ValidationError
from sqlalchemy import select, text

from app.settings import Settings
from schemas.tables import ResultViewer
from store.engine import alembic_config
from tests.conftest import Relay, result_payload, wait_for
from tests.interactions.conftest import endpoint, status_of
from tests.support.db import database_at

OWNER, FRIEND, STRANGER = "700000000000000011", "700000000000000012", "700000000000000013"


def _viewers(relay: Relay, rid: str) -> set[str]:
    with relay.runtime.db.session() as session:
        return set(session.scalars(select(ResultViewer.user_id).where(ResultViewer.result_id == rid)))


def test_owners_come_from_dm_and_interaction_users_and_discord_user_ids(relay: Relay) -> None:
    now = datetime.now(UTC).isoformat()
    rid = relay.post_result(result_payload(discord_user_ids=[FRIEND], route=[
        {"type": "interaction", "application_id": "42", "token": "tok", "created_at": now, "user_id": OWNER},
        {"type": "webhook", "url": "https://discord.com/api/webhooks/1/abc"}])).json()["id"]
    assert _viewers(relay, rid) == {OWNER, FRIEND}
    got = status_of(relay, rid)
    assert got["deliveries"][0]["destination"]["user_id"] == OWNER  # not a secret: shown, unlike the token
    # A new route adds its users; nobody is removed.
    relay.client.post(f"/v1/results/{rid}/redeliver", json={"route": [{"type": "webhook",
                                                                        "url": "https://discord.com/api/webhooks/2/x"}]})
    assert _viewers(relay, rid) == {OWNER, FRIEND}
    relay.client.delete(f"/v1/results/{rid}")
    assert _viewers(relay, rid) == set()


@pytest.mark.parametrize("bad", [["12a"], ["1" * 21], [""], [1] * 51])
def test_discord_user_ids_are_snowflakes(relay: Relay, bad: list[Any]) -> None:
    response = relay.post_result(result_payload(discord_user_ids=bad))
    assert response.status_code == 422, response.text
    assert "discord_user_ids" in response.text


def test_interaction_user_id_is_a_snowflake(relay: Relay) -> None:
    response = relay.post_result(result_payload(route=[{
        "type": "interaction", "application_id": "42", "token": "tok", "created_at": datetime.now(UTC).isoformat(),
        "user_id": "me"}]))
    assert response.status_code == 422 and "route.0.user_id" in response.text


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migration_gives_old_results_their_dm_users(backend: str, tmp_path: Any) -> None:
    with database_at("0003", backend=backend, tmp_path=tmp_path, prefix="relay_viewers") as engine:
        now = datetime.now(UTC)
        with engine.begin() as conn:
            for rid, tenant in (("res_a", "default"), ("res_b", "acme")):
                conn.execute(text(
                    "INSERT INTO results (id, tenant, key_id, request_hash, fields_json, metadata_json, mode, status,"
                    " generation, created_at, updated_at) VALUES (:r, :t, 'k', 'h', '[]', '{}', 'all',"
                    " 'undelivered', 1, :n, :n)"), {"r": rid, "t": tenant, "n": now})
            rows = [("res_a", "dm:111", "dm"), ("res_a", "webhook:5", "webhook"), ("res_b", "acme/dm:222", "dm"),
                    ("res_b", "acme/dm:222", "dm")]
            for i, (rid, key, kind) in enumerate(rows):
                conn.execute(text(
                    "INSERT INTO deliveries (result_id, generation, position, destination_key, kind, target_json,"
                    " status, attempts, render_scale, created_at, updated_at) VALUES (:r, 1, :p, :k, :kind, '{}',"
                    " 'failed', 1, 0, :n, :n)"), {"r": rid, "p": i, "k": key, "kind": kind, "n": now})
        command.upgrade(alembic_config(engine), "head")
        with engine.connect() as conn:
            got = sorted(tuple(r) for r in conn.execute(text("SELECT result_id, user_id FROM result_viewers")))
        assert got == [("res_a", "111"), ("res_b", "222")]
        command.downgrade(alembic_config(engine), "0003")
        command.upgrade(alembic_config(engine), "head")


@pytest.mark.parametrize("values, field", [
    ({"discord_application_id": "1"}, "RELAY_DISCORD_PUBLIC_KEY"),
    ({"discord_public_key": "ab" * 32}, "RELAY_DISCORD_APPLICATION_ID"),
    ({"discord_application_id": "x1", "discord_public_key": "ab" * 32}, "discord_application_id"),
    ({"discord_application_id": "1", "discord_public_key": "ab" * 31}, "64 hex characters"),
    ({"discord_tenants": "default,Bad Name"}, "invalid tenant"),
])
def test_settings_are_validated(values: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(_env_file=None, **values)


def test_settings_read_the_tenant_list() -> None:
    settings = Settings(_env_file=None, discord_application_id="1", discord_public_key=" " + "AB" * 32,
                        discord_tenants="default, acme")
    assert settings.interactions_enabled and settings.discord_tenants == ["default", "acme"]
    assert settings.discord_public_key == "ab" * 32


def test_an_application_serves_only_its_tenants(pickup_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = pickup_relay(discord_tenants="default")
    _, acme_key = relay.runtime.keys.create(name="acme", tenant="acme")
    mine = relay.post_result({"title": "default tenant", "discord_user_ids": [OWNER],
                              "route": [{"type": "dm", "user_id": "799999999999999999"}]}).json()["id"]
    with httpx.Client(base_url=relay.url, headers={"Authorization": f"Bearer {acme_key}"}) as acme:
        theirs = acme.post("/v1/results", json={"title": "acme tenant", "discord_user_ids": [OWNER],
                                                "route": [{"type": "dm", "user_id": "799999999999999999"}]}
                           ).json()["id"]
    url = endpoint(relay)
    page = discord.interactions.command(url, user_id=OWNER, subcommand="list", options={"status": "all"}
                                        ).wait_original()
    assert mine in page.content and theirs not in page.content
    opened = discord.interactions.command(url, user_id=OWNER, subcommand="show", options={"id": theirs}
                                          ).wait_original()
    assert "You have no result" in opened.content
    assert [c["value"] for c in discord.interactions.autocomplete(
        url, user_id=OWNER, subcommand="show", option="id", typed="").choices] == [mine]


def test_the_handoff_notice_names_the_pickup_command(pickup_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = pickup_relay(interaction_margin=60)
    created = datetime.now(UTC) - timedelta(minutes=14, seconds=20)
    discord.add_interaction("33", "tok-33", created)
    route = [{"type": "interaction", "application_id": "33", "token": "tok-33", "created_at": created.isoformat(),
              "user_id": OWNER}, {"type": "dm", "user_id": OWNER}]
    rid = relay.post_result(result_payload(route=route)).json()["id"]
    wait_for(lambda: status_of(relay, rid)["status"] == "delivered")
    [notice] = discord.messages(kind="interaction")
    assert "sent to you by DM" in notice.content and "or run `/results` later" in notice.content


def test_without_the_command_the_notice_does_not_mention_it(delivering_relay, discord) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = delivering_relay(interaction_margin=60)
    created = datetime.now(UTC) - timedelta(minutes=14, seconds=20)
    discord.add_interaction("34", "tok-34", created)
    route = [{"type": "interaction", "application_id": "34", "token": "tok-34", "created_at": created.isoformat()},
             {"type": "dm", "user_id": STRANGER}]
    rid = relay.post_result(result_payload(route=route)).json()["id"]
    wait_for(lambda: status_of(relay, rid)["status"] == "delivered")
    [notice] = discord.messages(kind="interaction")
    assert "/results" not in notice.content
