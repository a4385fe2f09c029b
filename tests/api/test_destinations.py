"""``/v1/destinations`` over real HTTP, on SQLite and PostgreSQL: re-enabling finds any destination."""

from __future__ import annotations

from datetime import timedelta

import httpx

from schemas.clock import utcnow
from schemas.tables import DEFAULT_TENANT, Destination
from schemas.targets import tenant_key
from tests.conftest import Relay


def _seed(relay: Relay, count: int, *, disabled: bool) -> list[str]:
    """``count`` webhook destinations, the first touched longest ago; their public keys."""
    now = utcnow()
    keys = [f"webhook:{900000000000000000 + i}" for i in range(count)]
    with relay.runtime.db.session(write=True) as session:
        session.add_all(Destination(key=tenant_key(DEFAULT_TENANT, key), kind="webhook", label=key,
                                    disabled=disabled, disabled_reason="404 Unknown Webhook" if disabled else None,
                                    updated_at=now - timedelta(hours=count - i))
                        for i, key in enumerate(keys))
    return keys


def test_enable_finds_a_destination_beyond_the_first_listing_page(relay: Relay) -> None:
    """Among 600 disabled destinations, the one listed last is re-enabled and answered (was a 500)."""
    keys = _seed(relay, 600, disabled=True)
    listed = [d["key"] for d in relay.client.get("/v1/destinations").json()["items"]]
    assert keys[0] not in listed  # older than the whole first page
    resp = relay.client.post(f"/v1/destinations/{keys[0]}/enable")
    assert resp.status_code == 200, resp.text
    assert resp.json()["key"] == keys[0] and resp.json()["disabled"] is False
    assert resp.json()["disabled_reason"] is None


def test_enable_answers_the_record_of_an_enabled_destination_too(relay: Relay) -> None:
    [key] = _seed(relay, 1, disabled=False)
    resp = relay.client.post(f"/v1/destinations/{key}/enable")
    assert resp.status_code == 200 and resp.json() == {**resp.json(), "key": key, "disabled": False}


def test_enable_of_an_unknown_destination_is_a_404(relay: Relay) -> None:
    _seed(relay, 3, disabled=True)
    for key in ("webhook:1", "webhook:900000000000000000/x", "dm:5"):
        resp: httpx.Response = relay.client.post(f"/v1/destinations/{key}/enable")
        assert resp.status_code == 404, (key, resp.text)
        assert resp.json()["error"]["code"] == "not_found"
