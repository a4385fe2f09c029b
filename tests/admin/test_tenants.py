"""The admin page sees every tenant, says which one a result belongs to, and filters by tenant."""

from __future__ import annotations

import httpx

from tests.admin.conftest import AdminClient
from tests.conftest import result_payload


def test_admin_lists_every_tenant_and_filters_by_one(admin: AdminClient) -> None:
    relay = admin.relay
    _, key = relay.runtime.keys.create(name="other", tenant="acme")
    mine = relay.post_result(result_payload(title="default's result")).json()["id"]
    with httpx.Client(base_url=relay.url, headers={"Authorization": f"Bearer {key}"}) as acme:
        theirs = acme.post("/v1/results", json=result_payload(title="acme's result")).json()["id"]

    everything = admin.get("/admin", params={"status": "all"}).text
    assert mine in everything and theirs in everything
    assert "tenant=acme" in everything and "tenant=default" in everything
    only_acme = admin.get("/admin", params={"status": "all", "tenant": "acme"}).text
    assert theirs in only_acme and mine not in only_acme
    assert 'name="tenant" value="acme"' in only_acme
    detail = admin.get(f"/admin/results/{theirs}").text
    assert ">acme</a>" in detail
    destinations = admin.get("/admin/destinations").text
    assert "acme/webhook:123456789012345678" in destinations and "<td data-label=\"Tenant\">acme</td>" in destinations
