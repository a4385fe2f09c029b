"""Admin pages and actions over real HTTP: escaping, masking, filters, actions, destinations, chart."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from app.admin.present import describe_error
from schemas.clock import utcnow
from schemas.tables import Delivery, DeliveryEvent, Destination
from store.admin import AdminStore
from tests.admin.conftest import AdminClient, disable_destination, mark_undelivered
from tests.conftest import WEBHOOK_URL, result_payload

TOKEN = WEBHOOK_URL.rsplit("/", 1)[1]
XSS_TITLE = "<script>alert(1)</script>"


def _post(admin: AdminClient, **overrides: object) -> str:
    resp = admin.relay.post_result(result_payload(**overrides))
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def test_producer_text_is_escaped_and_no_secret_reaches_any_page(admin: AdminClient) -> None:
    body = "**bold** [ok](https://example.com) [bad](javascript:alert(2)) <img src=x onerror=alert(3)>"
    rid = _post(admin, title=XSS_TITLE, body=body, workflow_id="wf_<b>x</b>",
                fields=[{"name": "<i>n</i>", "value": "<script>v</script>", "inline": True}],
                attachments=[{"filename": "r.txt", "content_type": "text/html", "content_base64": "PGI+aGk8L2I+"}])
    mark_undelivered(admin.relay, rid)
    pages = [admin.get(p) for p in ("/admin", f"/admin/results/{rid}", "/admin/destinations",
                                    f"/admin/results/{rid}/delete", "/admin?status=all&q=script")]
    for page in pages:
        assert page.status_code == 200, page.url
        assert "<script>alert" not in page.text and "<script>v" not in page.text and "<img src=x" not in page.text
        assert TOKEN not in page.text, f"webhook token leaked on {page.url}"
    detail = pages[1].text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail and "<strong>bold</strong>" in detail
    assert 'href="https://example.com"' in detail and "javascript:" not in detail.replace("[bad](javascript", "")
    assert "https://discord.com/api/webhooks/123456789012345678/••••" in detail
    assert "webhook deleted (Discord 10015)" in pages[0].text
    download = admin.get(f"/admin/results/{rid}/attachments/0")
    assert download.content == b"<b>hi</b>" and download.headers["content-disposition"].startswith("attachment")
    assert download.headers["content-type"] == "application/octet-stream"


def test_list_filters_search_and_pagination(admin: AdminClient) -> None:
    ids = {}
    for wf, title in (("wf_alpha", "Transcript of the meeting"), ("wf_beta", "Video analysis"),
                      ("wf_gamma", "Nightly report")):
        ids[wf] = _post(admin, workflow_id=wf, title=title)
    for rid in ids.values():
        mark_undelivered(admin.relay, rid)
    _post(admin, workflow_id="wf_pending", title="Still pending")

    def titles(query: str) -> list[str]:
        return re.findall(r'class="title" href="/admin/results/[^"]+">([^<]+)<', admin.get(f"/admin{query}").text)

    assert titles("") == ["Nightly report", "Video analysis", "Transcript of the meeting"]  # newest first
    assert titles("?q=VIDEO") == ["Video analysis"]
    assert titles("?q=wf_gam") == ["Nightly report"]
    assert titles("?workflow_id=wf_alpha") == ["Transcript of the meeting"]
    assert titles("?status=pending") == ["Still pending"]
    assert len(titles("?status=all")) == 4
    assert titles("?destination=123456789012345678") == titles("")
    assert titles("?destination=webhook:1") == []
    today = utcnow().date()
    assert len(titles(f"?since={today}&until={today}")) == 3
    assert titles(f"?until={today - timedelta(days=1)}") == []
    assert "must be a date" in admin.get("/admin?since=yesterday").text
    bad_cursor = admin.get("/admin?cursor=nonsense")
    assert bad_cursor.status_code == 200 and "not valid any more" in bad_cursor.text


def test_ack_delete_and_redeliver_change_the_store(admin: AdminClient) -> None:
    one, two = _post(admin, title="one"), _post(admin, title="two")
    mark_undelivered(admin.relay, one)
    mark_undelivered(admin.relay, two)
    api = admin.relay.client
    resp = admin.post(f"/admin/results/{one}/redeliver")
    assert resp.status_code == 303 and "done=redelivered" in resp.headers["location"]
    assert api.get(f"/v1/results/{one}").json()["status"] == "pending"
    detail = admin.get(resp.headers["location"]).text
    assert "redeliver requested" in detail and "Queued 1 result(s)" in detail
    assert admin.post(f"/admin/results/{two}/ack").status_code == 303
    assert api.get(f"/v1/results/{two}").json()["status"] == "picked_up"
    confirm = admin.get(f"/admin/results/{two}/delete")
    assert confirm.status_code == 200 and "Delete for good" in confirm.text
    assert admin.post(f"/admin/results/{two}/delete").headers["location"] == "/admin?done=deleted"
    assert api.get(f"/v1/results/{two}").status_code == 404
    assert admin.get(f"/admin/results/{two}").status_code == 404


def test_bulk_redeliver_selected_and_matching(admin: AdminClient) -> None:
    ids = [_post(admin, workflow_id=f"wf_{i}", title=f"t{i}") for i in range(4)]
    for rid in ids:
        mark_undelivered(admin.relay, rid)
    status = lambda rid: admin.relay.client.get(f"/v1/results/{rid}").json()["status"]  # noqa: E731
    resp = admin.post("/admin/bulk/redeliver", {"scope": "selected", "ids": ids[:2], "status": "undelivered"})
    assert resp.status_code == 303 and "n=2" in resp.headers["location"]
    assert [status(r) for r in ids] == ["pending", "pending", "undelivered", "undelivered"]
    resp = admin.post("/admin/bulk/redeliver", {"scope": "matching", "status": "undelivered", "workflow_id": "wf_3"})
    assert "n=1" in resp.headers["location"] and "workflow_id=wf_3" in resp.headers["location"]
    assert [status(r) for r in ids] == ["pending", "pending", "undelivered", "pending"]
    resp = admin.post("/admin/bulk/redeliver", {"scope": "matching", "status": "undelivered", "workflow_id": "none"})
    assert "done=nothing" in resp.headers["location"]


def test_redeliver_to_a_new_webhook_is_validated_like_the_api(admin: AdminClient) -> None:
    rid = _post(admin)
    mark_undelivered(admin.relay, rid)
    refused = admin.post(f"/admin/results/{rid}/redeliver", {"webhook_url": "http://evil.example/api/webhooks/1/x"})
    assert refused.status_code == 422 and "That webhook URL must use https." in refused.text
    assert admin.relay.client.get(f"/v1/results/{rid}").json()["status"] == "undelivered"
    new = "https://discord.com/api/webhooks/999888777/another-secret-token"
    assert admin.post(f"/admin/results/{rid}/redeliver", {"webhook_url": new}).status_code == 303
    got = admin.relay.client.get(f"/v1/results/{rid}").json()
    assert got["status"] == "pending"
    assert [d["destination"]["url"] for d in got["deliveries"]] == ["https://discord.com/api/webhooks/999888777/••••"]
    detail = admin.get(f"/admin/results/{rid}").text
    assert "another-secret-token" not in detail and "earlier route" in detail


def test_destinations_page_reenables_a_disabled_destination(admin: AdminClient) -> None:
    _post(admin)
    disable_destination(admin.relay, "webhook:123456789012345678", "404 Unknown Webhook (10015)")
    page = admin.get("/admin/destinations?disabled=1").text
    assert "404 Unknown Webhook (10015)" in page and "Re-enable" in page and TOKEN not in page
    resp = admin.post("/admin/destinations/reenable", {"key": "webhook:123456789012345678"})
    assert resp.headers["location"] == "/admin/destinations?done=reenabled"
    with admin.relay.runtime.db.session() as session:
        dest = session.get(Destination, "webhook:123456789012345678")
    assert dest is not None and dest.disabled is False and dest.disabled_reason is None
    assert "No destinations are disabled" in admin.get("/admin/destinations?disabled=1").text


def test_overview_counts_and_hourly_chart(admin: AdminClient) -> None:
    rid = _post(admin)
    now = utcnow()
    with admin.relay.runtime.db.session(write=True) as session:
        delivery_id = session.scalars(select(Delivery.id).where(Delivery.result_id == rid)).one()
        for hours_ago, outcome in ((0, "delivered"), (0, "delivered"), (0, "failed"), (3, "disabled"),
                                   (3, "retry_scheduled"), (30, "delivered")):
            session.add(DeliveryEvent(delivery_id=delivery_id, at=now - timedelta(hours=hours_ago), outcome=outcome))
    buckets = AdminStore(admin.relay.runtime.db, admin.relay.runtime.results).hourly_outcomes(now=now)
    assert len(buckets) == 24 and (buckets[-1].delivered, buckets[-1].failed) == (2, 1)
    assert (buckets[-4].delivered, buckets[-4].failed) == (0, 1)
    assert sum(b.delivered for b in buckets) == 2
    page = admin.get("/admin?status=pending").text
    assert "2 delivered" in page and "2 failed" in page and "<svg" in page
    assert re.search(r"<strong>1</strong><span>pending</span>", page)


def test_error_words() -> None:
    assert describe_error(404, 10015, "Unknown Webhook") == "webhook deleted (Discord 10015)"
    assert describe_error(403, 50007, "Cannot send messages to this user") == "DMs closed (50007)"
    assert describe_error(401, 50027, "Invalid Webhook Token") == "interaction expired (50027)"
    assert describe_error(403, 50013, "Missing Permissions") == "missing permission (50013)"
    assert describe_error(400, 50035, "Invalid Form Body at embeds.0.description") == \
        "invalid payload (50035: embeds.0.description)"
    assert describe_error(429, None, "You are being rate limited.") == "rate limited"
    assert describe_error(503, None, "upstream") == "Discord unavailable (503)"
    assert describe_error(None, None, "connection reset") == "connection reset"
    assert describe_error(None, None, None) is None


def test_the_preview_marks_silent_messages_and_shows_no_empty_footer(admin: AdminClient) -> None:
    silent = _post(admin, title="quiet one", silent=True, body="one short paragraph")
    loud = _post(admin, title="loud one", body="one short paragraph")
    quiet_page, loud_page = (admin.get(f"/admin/results/{rid}").text for rid in (silent, loud))
    assert "🔕 silent" in quiet_page and "🔕 silent" not in loud_page
    assert "(1/1)" not in loud_page and '<div class="efooter">\u200b</div>' not in loud_page
