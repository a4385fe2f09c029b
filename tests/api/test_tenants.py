"""Tenant isolation over real HTTP, on SQLite and PostgreSQL: two tenants against every ``/v1`` route.

Tenant ``default`` (the fixture's key) owns a result, a destination and a transcription; a key of
tenant ``acme`` must find none of them, and each of its 404s must be the very answer an id that
does not exist gets.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import select, text, update

from schemas.tables import Destination, ProgressMessage, Result
from store.engine import alembic_config
from store.keys import KeyStore, Producer
from store.transcriptions import NewTranscription, TranscriptionStore
from tests.conftest import WEBHOOK_URL, Relay, result_payload
from tests.support.db import database_at

UNKNOWN_RESULT = "res_00000000000000000000000000"
ATTACHMENT = {"filename": "a.txt", "content_type": "text/plain", "content_base64": base64.b64encode(b"hi").decode()}


def _client(relay: Relay, key: str) -> httpx.Client:
    return httpx.Client(base_url=relay.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.fixture
def acme(relay: Relay) -> Iterator[httpx.Client]:
    """A client holding a key of tenant ``acme``, on the same relay as ``relay.client`` (tenant default)."""
    _, key = relay.runtime.keys.create(name="other", tenant="acme")
    with _client(relay, key) as client:
        yield client


def _same_as_unknown(send: Callable[[str], httpx.Response], foreign_id: str, unknown_id: str) -> None:
    """The other tenant's id and an unknown id get the same status and the same body (ids aside)."""
    foreign, unknown = send(foreign_id), send(unknown_id)
    assert foreign.status_code == unknown.status_code == 404, (foreign.text, unknown.text)
    assert foreign.text.replace(foreign_id, "ID") == unknown.text.replace(unknown_id, "ID")


def test_another_tenants_result_answers_like_an_unknown_id_on_every_route(relay: Relay, acme: httpx.Client) -> None:
    rid = relay.post_result(result_payload(attachments=[ATTACHMENT])).json()["id"]
    routes: list[Callable[[str], httpx.Response]] = [
        lambda i: acme.get(f"/v1/results/{i}"),
        lambda i: acme.get(f"/v1/results/{i}/content"),
        lambda i: acme.get(f"/v1/results/{i}/attachments/0"),
        lambda i: acme.post(f"/v1/results/{i}/ack"),
        lambda i: acme.post(f"/v1/results/{i}/redeliver"),
        lambda i: acme.post(f"/v1/results/{i}/redeliver", json={"route": [{"type": "webhook", "url": WEBHOOK_URL}]}),
        lambda i: acme.delete(f"/v1/results/{i}"),
    ]
    for send in routes:
        _same_as_unknown(send, rid, UNKNOWN_RESULT)
    # Nothing the other tenant tried touched the result: still pending, same route, not deleted.
    got = relay.client.get(f"/v1/results/{rid}").json()
    assert got["status"] == "pending" and len(got["deliveries"]) == 1
    assert relay.client.get(f"/v1/results/{rid}/attachments/0").content == b"hi"


def test_listing_and_bulk_redeliver_see_only_their_own_tenant(relay: Relay, acme: httpx.Client) -> None:
    mine = relay.post_result(result_payload()).json()["id"]
    theirs = acme.post("/v1/results", json=result_payload()).json()["id"]
    assert [r["id"] for r in relay.client.get("/v1/results").json()["items"]] == [mine]
    assert [r["id"] for r in acme.get("/v1/results").json()["items"]] == [theirs]
    with relay.runtime.db.session(write=True) as session:
        session.execute(update(Result).values(status="undelivered"))
    bulk = acme.post("/v1/results/redeliver", json={"destination": "webhook:123456789012345678"}).json()
    assert bulk["ids"] == [theirs], bulk
    assert relay.client.get(f"/v1/results/{mine}").json()["status"] == "undelivered"
    by_dest = acme.get("/v1/results", params={"destination": "webhook:123456789012345678"}).json()["items"]
    assert [r["id"] for r in by_dest] == [theirs]


def test_destinations_and_their_reenabling_are_per_tenant(relay: Relay, acme: httpx.Client) -> None:
    relay.post_result(result_payload())
    with relay.runtime.db.session(write=True) as session:
        session.execute(update(Destination).values(disabled=True, disabled_reason="404 Unknown Webhook"))
    key = "webhook:123456789012345678"
    assert [d["key"] for d in relay.client.get("/v1/destinations").json()["items"]] == [key]
    assert acme.get("/v1/destinations").json()["items"] == []
    _same_as_unknown(lambda k: acme.post(f"/v1/destinations/{k}/enable"), key, "webhook:1")
    assert relay.client.get("/v1/destinations", params={"disabled": True}).json()["items"][0]["disabled"] is True

    # The same webhook in acme's route is acme's own destination, enabled, under the same public key.
    acme.post("/v1/results", json=result_payload())
    [theirs] = acme.get("/v1/destinations").json()["items"]
    assert theirs["key"] == key and theirs["disabled"] is False
    assert relay.client.post(f"/v1/destinations/{key}/enable").json()["disabled"] is False


def test_idempotency_keys_are_per_tenant(relay: Relay, acme: httpx.Client) -> None:
    headers = {"Idempotency-Key": "job-1"}
    mine = relay.post_result(result_payload(title="mine"), headers=headers)
    theirs = acme.post("/v1/results", json=result_payload(title="theirs"), headers=headers)
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]
    replay = acme.post("/v1/results", json=result_payload(title="theirs"), headers=headers)
    assert replay.json()["id"] == theirs.json()["id"] and replay.headers["Idempotent-Replayed"] == "true"


def test_transcriptions_are_per_tenant(relay: Relay, acme: httpx.Client) -> None:
    store = TranscriptionStore(relay.runtime.db)
    tr_id = store.create(NewTranscription(key_id="key_x", tenant="default", filename="a.ogg",
                                          content_type="audio/ogg", audio=b"x", duration=1.0, options={},
                                          request={"targets": [], "mode": "first_success"}))
    assert relay.client.get(f"/v1/transcriptions/{tr_id}").status_code == 200
    _same_as_unknown(lambda i: acme.get(f"/v1/transcriptions/{i}"), tr_id, "tr_00000000000000000000000000")


def test_progress_is_recorded_per_tenant(relay: Relay, acme: httpx.Client) -> None:
    progress = {"workflow_id": "wf_1", "route": [{"type": "webhook", "url": WEBHOOK_URL}], "stage": "s",
                "current": 1, "total": 2}
    assert relay.client.post("/v1/progress", json=progress).status_code == 202
    assert acme.post("/v1/progress", json=progress).status_code == 202
    with relay.runtime.db.session() as session:
        keys = sorted(session.scalars(select(ProgressMessage.destination_key)).all())
    assert keys == ["acme/webhook:123456789012345678", "webhook:123456789012345678"]


def test_configured_keys_name_their_tenant(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay(api_keys="acme:secret-of-acme,plain-secret")
    with _client(relay, "secret-of-acme") as acme, _client(relay, "plain-secret") as plain:
        theirs = acme.post("/v1/results", json=result_payload()).json()["id"]
        assert plain.get(f"/v1/results/{theirs}").status_code == 404
        assert relay.client.get(f"/v1/results/{theirs}").status_code == 404
        assert acme.get(f"/v1/results/{theirs}").status_code == 200


def test_configured_key_ids_do_not_depend_on_their_order() -> None:
    one = KeyStore(db=None, configured_keys=["a:first", "b:second"])  # type: ignore[arg-type]
    two = KeyStore(db=None, configured_keys=["b:second", "a:first"])  # type: ignore[arg-type]
    assert one.cached("first") == two.cached("first")
    producer, revoked = one.cached("second")  # type: ignore[misc]
    assert isinstance(producer, Producer) and producer.tenant == "b" and not revoked


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migration_puts_existing_rows_into_the_default_tenant(backend: str, tmp_path: Any) -> None:
    with database_at("0002", backend=backend, tmp_path=tmp_path, prefix="relay_tenants") as engine:
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO api_keys (id, name, key_hash, created_at) VALUES ('key_old', '', 'h', :n)"),
                         {"n": now})
            conn.execute(text(
                "INSERT INTO results (id, key_id, request_hash, fields_json, metadata_json, mode, status, generation,"
                " created_at, updated_at) VALUES ('res_old', 'key_old', 'h', '[]', '{}', 'all', 'undelivered', 1,"
                " :n, :n)"), {"n": now})
            conn.execute(text("INSERT INTO destinations (key, kind, label, disabled, updated_at)"
                              " VALUES ('webhook:1', 'webhook', '', false, :n)"), {"n": now})
        command.upgrade(alembic_config(engine), "head")
        with engine.connect() as conn:
            for table in ("api_keys", "results", "destinations"):
                assert conn.execute(text(f"SELECT tenant FROM {table}")).scalars().all() == ["default"], table


