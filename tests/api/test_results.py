"""``/v1/results`` end to end over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from datetime import UTC, datetime, timedelta

import httpx

from schemas.api import Accepted
from tests.conftest import WEBHOOK_URL, Relay, result_payload


def test_json_result_is_stored_and_read_back(relay: Relay) -> None:
    payload = result_payload(metadata={"depth": "experimental"}, color=5793266, level="success",
                             url="https://youtube.com/watch?v=x")
    resp = relay.post_result(payload)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["id"].startswith("res_") and body["status"] == "pending"
    assert body["links"] == {"self": f"/v1/results/{body['id']}"}
    # Written as bytes on the hot path: still exactly the documented model, as JSON.
    assert resp.headers["content-type"] == "application/json"
    assert resp.content == Accepted.model_validate(body).model_dump_json().encode()

    got = relay.client.get(body["links"]["self"]).json()
    assert got["status"] == "pending" and got["workflow_id"] == "wf_1" and got["title"] == "Analysis: a video"
    [delivery] = got["deliveries"]
    assert delivery["destination"] == {"type": "webhook", "url": "https://discord.com/api/webhooks/123456789012345678/••••"}
    assert delivery["status"] == "pending" and delivery["attempts"] == 0 and delivery["message_ids"] == []
    assert delivery["last_error"] is None

    content = relay.client.get(f"/v1/results/{body['id']}/content").json()
    for key in ("title", "summary", "body", "fields", "url", "color", "level", "metadata"):
        expected = payload[key] if key != "fields" else payload["fields"]
        assert content[key] == expected, key


def test_route_order_and_modes(relay: Relay) -> None:
    route = [
        {"type": "interaction", "application_id": "42", "token": "tok_interaction_secret",
         "created_at": "2026-11-23T10:00:00Z"},
        {"type": "webhook", "url": WEBHOOK_URL, "thread_id": "456"},
    ]
    first = relay.post_result(result_payload(route=route)).json()
    got = relay.client.get(f"/v1/results/{first['id']}").json()
    assert [d["status"] for d in got["deliveries"]] == ["pending", "waiting"]
    assert got["deliveries"][0]["destination"]["token"] == "••••"
    assert got["deliveries"][1]["destination"]["thread_id"] == "456"
    both = relay.post_result(result_payload(route=route, mode="all")).json()
    got = relay.client.get(f"/v1/results/{both['id']}").json()
    assert got["mode"] == "all" and [d["status"] for d in got["deliveries"]] == ["pending", "pending"]


def test_multipart_files_and_base64_attachments_download_byte_identical(relay: Relay) -> None:
    big = bytes(range(256)) * 40_000  # 10 MB: over the 8 MiB per-file limit, accepted whole
    inline = b'{"k": 1}'
    payload = result_payload(attachments=[{"filename": "report.json", "content_type": "application/json",
                                           "content_base64": base64.b64encode(inline).decode()}])
    files = {"payload_json": (None, json.dumps(payload), "application/json"),
             "files[0]": ("video analysis.bin", big, "application/octet-stream"),
             "files[1]": ("notes.txt", b"hello", "text/plain")}
    resp = relay.client.post("/v1/results", files=files)
    assert resp.status_code == 202, resp.text
    rid = resp.json()["id"]
    got = relay.client.get(f"/v1/results/{rid}").json()
    assert [(a["index"], a["filename"], a["size"]) for a in got["attachments"]] == [
        (0, "report.json", len(inline)), (1, "video analysis.bin", len(big)), (2, "notes.txt", 5)]
    for index, data, ctype in ((0, inline, "application/json"), (1, big, "application/octet-stream"),
                               (2, b"hello", "text/plain")):
        download = relay.client.get(f"/v1/results/{rid}/attachments/{index}")
        assert download.status_code == 200
        assert download.content == data
        assert download.headers["content-type"].startswith(ctype)
        assert download.headers["x-content-sha256"] == hashlib.sha256(data).hexdigest()
    assert "video%20analysis.bin" in relay.client.get(f"/v1/results/{rid}/attachments/1").headers[
        "content-disposition"]
    assert relay.client.get(f"/v1/results/{rid}/attachments/9").status_code == 404


def test_idempotency_same_body_same_id_other_body_conflict(relay: Relay) -> None:
    headers = {"Idempotency-Key": "job-1"}
    first = relay.post_result(result_payload(), headers=headers)
    again = relay.post_result(result_payload(), headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    other = relay.post_result(result_payload(title="different"), headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert relay.client.get("/v1/results").json()["items"].__len__() == 1


def test_idempotency_concurrent_duplicates_store_one_result(relay: Relay) -> None:
    ids: list[str] = []
    errors: list[str] = []

    def send() -> None:
        with httpx.Client(base_url=relay.url, headers={"Authorization": f"Bearer {relay.key}"}) as c:
            r = c.post("/v1/results", json=result_payload(), headers={"Idempotency-Key": "same"})
            (ids if r.status_code == 202 else errors).append(r.json().get("id") or r.text)

    threads = [threading.Thread(target=send) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(ids)) == 1 and len(ids) == 12
    assert len(relay.client.get("/v1/results").json()["items"]) == 1


def test_listing_newest_first_with_cursor_and_filters(relay: Relay) -> None:
    created = [relay.post_result(result_payload(workflow_id=f"wf_{i % 2}", title=f"r{i}")).json()["id"]
               for i in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = relay.client.get("/v1/results", params=params).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(created))
    only = relay.client.get("/v1/results", params={"workflow_id": "wf_1"}).json()["items"]
    assert [i["id"] for i in only] == [created[5], created[3], created[1]]
    assert relay.client.get("/v1/results", params={"status": "undelivered"}).json()["items"] == []
    assert len(relay.client.get("/v1/results", params={"status": "pending"}).json()["items"]) == 7
    future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert relay.client.get("/v1/results", params={"since": future}).json()["items"] == []
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    assert len(relay.client.get("/v1/results", params={"since": past}).json()["items"]) == 7
    bad = relay.client.get("/v1/results", params={"cursor": "garbage!"})
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["field"] == "cursor"
    bad = relay.client.get("/v1/results", params={"status": "nonsense"})
    assert bad.status_code == 422 and "status" in bad.json()["error"]["message"]


def test_ack_redeliver_delete(relay: Relay) -> None:
    rid = relay.post_result(result_payload()).json()["id"]
    acked = relay.client.post(f"/v1/results/{rid}/ack").json()
    assert acked["status"] == "picked_up" and acked["deliveries"][0]["status"] == "cancelled"
    new_route = {"route": [{"type": "webhook", "url": "https://discord.com/api/webhooks/987/other-token"}]}
    again = relay.client.post(f"/v1/results/{rid}/redeliver", json=new_route)
    assert again.status_code == 202
    body = again.json()
    assert body["status"] == "pending"
    assert body["deliveries"][0]["destination"]["url"].endswith("/webhooks/987/••••")
    bad = relay.client.post(f"/v1/results/{rid}/redeliver", json={"route": [{"type": "webhook",
                                                                             "url": "https://evil.com/x"}]})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "route.0.url"
    same = relay.client.post(f"/v1/results/{rid}/redeliver")
    assert same.status_code == 202 and same.json()["deliveries"][0]["status"] == "pending"
    assert relay.client.delete(f"/v1/results/{rid}").status_code == 204
    assert relay.client.get(f"/v1/results/{rid}").status_code == 404
    assert relay.client.get(f"/v1/results/{rid}/content").status_code == 404
    assert relay.client.post(f"/v1/results/{rid}/ack").status_code == 404
    assert relay.client.delete(f"/v1/results/{rid}").status_code == 404


def test_bulk_redeliver_by_filter(relay: Relay) -> None:
    ids = [relay.post_result(result_payload(workflow_id="bulk")).json()["id"] for _ in range(3)]
    other = relay.post_result(result_payload(workflow_id="keep")).json()["id"]
    for rid in ids + [other]:
        relay.client.post(f"/v1/results/{rid}/ack")
    resp = relay.client.post("/v1/results/redeliver", json={"status": "picked_up", "workflow_id": "bulk"})
    assert resp.status_code == 200
    assert resp.json()["queued"] == 3 and sorted(resp.json()["ids"]) == sorted(ids)
    statuses = {rid: relay.client.get(f"/v1/results/{rid}").json()["status"] for rid in ids + [other]}
    assert statuses == {**{rid: "pending" for rid in ids}, other: "picked_up"}
    by_dest = relay.client.post("/v1/results/redeliver", json={"status": "picked_up",
                                                               "destination": "webhook:123456789012345678"})
    assert by_dest.json()["ids"] == [other]
    assert relay.client.post("/v1/results/redeliver", json={"status": "bogus"}).status_code == 422


def test_health_and_docs(relay: Relay) -> None:
    assert httpx.get(f"{relay.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{relay.url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["migrations"] == "ok"
    docs = httpx.get(f"{relay.url}/docs")
    assert docs.status_code == 200
    # Offline: the page loads Swagger UI from the relay itself, never from a CDN.
    assert "cdn." not in docs.text and "/static-offline-docs/swagger-ui-bundle.js" in docs.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        got = httpx.get(f"{relay.url}/static-offline-docs/{asset}")
        assert got.status_code == 200 and len(got.content) > 10_000, asset
    redoc = httpx.get(f"{relay.url}/redoc")
    assert redoc.status_code == 200 and "cdn." not in redoc.text
    spec = httpx.get(f"{relay.url}/openapi.json").json()
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(spec)))
    assert "ResultIn" in refs and refs <= set(spec["components"]["schemas"])  # every $ref resolves
    assert "/v1/results" in spec["paths"] and "multipart/form-data" in json.dumps(spec["paths"]["/v1/results"])


def test_startup_objects_are_frozen_while_serving_and_given_back_after(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What start-up built stays out of the collector's full walks while the app serves, and only then."""
    import gc

    from app.main import create_app
    from app.runtime import Runtime
    from app.settings import Settings
    from tests.support.server import LiveServer

    settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/relay.db", run_workers=False)
    runtime = Runtime.build(settings)
    server = LiveServer(create_app(runtime=runtime)).start()
    try:
        assert gc.get_freeze_count() > 10_000
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()
        runtime.close()
    assert gc.get_freeze_count() == 0
