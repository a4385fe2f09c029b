"""What ``POST /v1/results`` accepts can be served back; what cannot is a 4xx naming the field.

Over real HTTP on SQLite and PostgreSQL: nesting at and over the bound, control characters in
media types and filenames, NUL characters, the attachment cap, download headers, and one webhook
written several ways being one destination.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import pytest

from schemas.bounds import MAX_ATTACHMENTS, MAX_NESTING
from tests.conftest import WEBHOOK_URL, Relay, result_payload

INJECTED = "text/html\r\nX-Injected: 1"


def _nested(levels: int) -> dict[str, Any]:
    """An object ``levels`` levels deep: ``{"a": {"a": … {}}}``."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _attachment(**overrides: Any) -> dict[str, Any]:
    return {"filename": "a.txt", "content_type": "text/plain", "content_base64": base64.b64encode(b"hi").decode(),
            **overrides}


def _fields(resp: httpx.Response) -> list[str]:
    return [d["field"] for d in resp.json()["error"]["details"]]


def _multipart(relay: Relay, payload: dict, parts: list[tuple[str, str, bytes]]) -> httpx.Response:
    """A multipart request written byte by byte, so headers a client library would refuse still go out."""
    boundary = "relay-test-boundary"
    chunks = [f'--{boundary}\r\nContent-Disposition: form-data; name="payload_json"\r\n\r\n'.encode(),
              json.dumps(payload).encode(), b"\r\n"]
    for i, (filename, ctype, data) in enumerate(parts):
        chunks += [f'--{boundary}\r\nContent-Disposition: form-data; name="files[{i}]"; filename="{filename}"\r\n'
                   f"Content-Type: {ctype}\r\n\r\n".encode(), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return relay.client.post("/v1/results", content=b"".join(chunks),
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def _reads_back(relay: Relay, rid: str) -> dict[str, Any]:
    for path in (f"/v1/results/{rid}", f"/v1/results/{rid}/content", "/v1/results?status=pending"):
        resp = relay.client.get(path)
        assert resp.status_code == 200, (path, resp.text)
    return relay.client.get(f"/v1/results/{rid}/content").json()


def test_metadata_at_the_nesting_bound_is_stored_and_read_back(relay: Relay) -> None:
    deep = _nested(MAX_NESTING)
    resp = relay.post_result(result_payload(metadata=deep))
    assert resp.status_code == 202, resp.text
    assert _reads_back(relay, resp.json()["id"])["metadata"] == deep


@pytest.mark.parametrize("levels", [MAX_NESTING + 1, 300])
def test_metadata_over_the_nesting_bound_is_a_422_naming_it(relay: Relay, levels: int) -> None:
    resp = relay.post_result(result_payload(metadata=_nested(levels)))
    assert resp.status_code == 422, resp.text
    assert _fields(resp)[0].startswith("metadata")
    assert f"deeper than {MAX_NESTING} levels" in resp.text


def test_a_thousand_levels_deep_body_is_a_422_not_a_500(relay: Relay) -> None:
    raw = '{"metadata": ' + "[" * 1000 + "]" * 1000 + "}"
    for path in ("/v1/results", "/v1/progress", "/v1/results/redeliver"):
        resp = relay.client.post(path, content=raw, headers={"Content-Type": "application/json"})
        assert 400 <= resp.status_code < 500, (path, resp.status_code, resp.text)
        assert resp.json()["error"]["code"], resp.text
    resp = relay.client.post("/v1/results", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422 and _fields(resp) == ["body"] or _fields(resp)[0].startswith("metadata")


def test_nesting_in_payload_json_is_bounded_too(relay: Relay) -> None:
    resp = _multipart(relay, result_payload(metadata=_nested(MAX_NESTING + 1)), [])
    assert resp.status_code == 422 and _fields(resp)[0].startswith("metadata"), resp.text
    deep = '{"route": ' + "[" * 2000 + "]" * 2000 + "}"
    files = {"payload_json": (None, deep, "application/json")}
    resp = relay.client.post("/v1/results", files=files)
    assert resp.status_code == 422 and _fields(resp) == ["payload_json"], resp.text


@pytest.mark.parametrize("bad", [INJECTED, "text/html\x00", "not a media type", "text/plain; x=\"a\x01\""])
def test_content_types_must_be_media_types(relay: Relay, bad: str) -> None:
    resp = relay.post_result(result_payload(attachments=[_attachment(content_type=bad)]))
    assert resp.status_code == 422 and _fields(resp) == ["attachments.0.content_type"], resp.text
    if "\r" in bad or "\x00" in bad:
        bad = "text/html\x01"  # what a raw multipart header can carry
    resp = _multipart(relay, result_payload(), [("a.txt", bad, b"hi")])
    assert resp.status_code == 422 and _fields(resp) == ["files[0]"], resp.text


@pytest.mark.parametrize("bad", ["a\r\nX-Injected: 1.txt", "a\x00.txt", "tab\there.txt", "bell\x07.txt"])
def test_filenames_must_not_hold_control_characters(relay: Relay, bad: str) -> None:
    resp = relay.post_result(result_payload(attachments=[_attachment(filename=bad)]))
    assert resp.status_code == 422 and _fields(resp) == ["attachments.0.filename"], resp.text
    if "\r" not in bad:
        resp = _multipart(relay, result_payload(), [(bad, "text/plain", b"hi")])
        assert resp.status_code == 422 and _fields(resp) == ["files[0]"], resp.text


def test_valid_media_types_and_filenames_read_back(relay: Relay) -> None:
    atts = [_attachment(content_type="text/plain; charset=utf-8", filename="résumé ✓.txt"),
            _attachment(content_type='application/vnd.api+json; profile="a b"')]
    rid = relay.post_result(result_payload(attachments=atts)).json()["id"]
    content = _reads_back(relay, rid)
    assert [a["content_type"] for a in content["attachments"]] == [a["content_type"] for a in atts]
    for i in range(2):
        assert relay.client.get(f"/v1/results/{rid}/attachments/{i}").content == b"hi"


@pytest.mark.parametrize("field,value", [("title", "a\x00b"), ("body", "lone \ud800 surrogate"),
                                         ("metadata", {"k\x00": 1}), ("workflow_id", "\x00")])
def test_text_no_store_can_keep_is_refused(relay: Relay, field: str, value: Any) -> None:
    raw = json.dumps(result_payload(**{field: value}))  # json.dumps escapes both, as a client would
    resp = relay.client.post("/v1/results", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422 and _fields(resp)[0].startswith(field), resp.text


def test_downloads_cannot_run_as_pages_of_the_relay(relay: Relay) -> None:
    page = b"<html><script>alert(document.cookie)</script></html>"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    atts = [_attachment(filename="x.html", content_type="text/html", content_base64=base64.b64encode(page).decode()),
            _attachment(filename="x.svg", content_type="image/svg+xml",
                        content_base64=base64.b64encode(svg).decode())]
    rid = relay.post_result(result_payload(attachments=atts)).json()["id"]
    for i, body in enumerate((page, svg)):
        resp = relay.client.get(f"/v1/results/{rid}/attachments/{i}")
        assert resp.status_code == 200 and resp.content == body
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["content-security-policy"] == "sandbox"
        assert resp.headers["content-disposition"].startswith("attachment;")


def test_attachment_count_is_capped_for_json_and_multipart_alike(relay: Relay) -> None:
    at_cap = relay.post_result(result_payload(attachments=[_attachment()] * MAX_ATTACHMENTS))
    assert at_cap.status_code == 202, at_cap.text
    over = relay.post_result(result_payload(attachments=[_attachment()] * (MAX_ATTACHMENTS + 1)))
    assert over.status_code == 422 and _fields(over) == ["attachments"], over.text
    files = [("f.txt", "text/plain", b"x")] * (MAX_ATTACHMENTS + 1)
    over = _multipart(relay, result_payload(), files)
    assert over.status_code == 422 and _fields(over) == ["attachments"], over.text
    mixed = _multipart(relay, result_payload(attachments=[_attachment()] * 50), files[:51])
    assert mixed.status_code == 422 and _fields(mixed) == ["attachments"], mixed.text
    ok = _multipart(relay, result_payload(attachments=[_attachment()] * 50), files[:50])
    assert ok.status_code == 202, ok.text


SPELLINGS = [
    "https://discord.com/api/webhooks/123456789012345678/tok",
    "https://discord.com/api/webhooks/000123456789012345678/tok",
    "https://discord.com/api/webhooks/123456789012345678/tok/",
    "https://discord.com/api/v9/webhooks/123456789012345678/tok",
    "https://discord.com/api/v10/webhooks/123456789012345678/tok",
    "https://DISCORD.COM/api/webhooks/123456789012345678/tok",
    "https://discord.com/webhooks/123456789012345678/tok",
]


def test_one_webhook_written_many_ways_is_one_destination_and_one_delivery(relay: Relay) -> None:
    route = [{"type": "webhook", "url": url} for url in SPELLINGS]
    rid = relay.post_result(result_payload(route=route, mode="all")).json()["id"]
    [delivery] = relay.client.get(f"/v1/results/{rid}").json()["deliveries"]
    assert delivery["destination"]["url"].startswith("https://discord.com/api/webhooks/123456789012345678/")
    for url in SPELLINGS:  # one result per spelling still lands on the one destination
        relay.post_result(result_payload(route=[{"type": "webhook", "url": url}]))
    assert [d["key"] for d in relay.client.get("/v1/destinations").json()["items"]] == ["webhook:123456789012345678"]


def test_two_threads_of_one_webhook_stay_two_deliveries(relay: Relay) -> None:
    route = [{"type": "webhook", "url": SPELLINGS[0], "thread_id": "1"},
             {"type": "webhook", "url": SPELLINGS[1], "thread_id": "2"},
             {"type": "webhook", "url": SPELLINGS[2], "thread_id": "1"}]
    rid = relay.post_result(result_payload(route=route, mode="all")).json()["id"]
    deliveries = relay.client.get(f"/v1/results/{rid}").json()["deliveries"]
    assert [d["destination"]["thread_id"] for d in deliveries] == ["1", "2"]


def test_redeliver_to_a_route_with_duplicates_delivers_once(relay: Relay) -> None:
    rid = relay.post_result(result_payload()).json()["id"]
    route = [{"type": "dm", "user_id": "42"}, {"type": "webhook", "url": SPELLINGS[3]},
             {"type": "webhook", "url": SPELLINGS[5]}]
    resp = relay.client.post(f"/v1/results/{rid}/redeliver", json={"route": route[1:], "mode": "all"})
    assert resp.status_code == 202, resp.text
    assert len(resp.json()["deliveries"]) == 1


@pytest.mark.parametrize("since", ["0.5", "10000000.0", "1700000000"])
def test_timestamps_are_rfc3339_text_not_seconds(relay: Relay, since: str) -> None:
    assert relay.client.get("/v1/results", params={"since": since}).status_code == 422
    bulk = relay.client.post("/v1/results/redeliver", json={"since": float(since)})
    assert bulk.status_code == 422, bulk.text
    route = [{"type": "interaction", "application_id": "1", "token": "tok", "created_at": 0}]
    assert relay.post_result(result_payload(route=route)).status_code == 422
    assert relay.client.get("/v1/results", params={"since": "2026-01-01T00:00:00Z"}).status_code == 200


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/progress", {"workflow_id": "wf", "stage": "ok", "message": "nul\u0000here",
                      "route": [{"type": "webhook", "url": WEBHOOK_URL}]}, "message"),
    ("/v1/progress", {"workflow_id": "wf\u0000", "route": [{"type": "webhook", "url": WEBHOOK_URL}]}, "workflow_id"),
    ("/v1/results/redeliver", {"destination": "webhook:1\u0000"}, "destination"),
])
def test_bodies_parsed_by_fastapi_are_held_to_the_same_text_bounds(relay: Relay, path: str, body: dict,
                                                                   field: str) -> None:
    resp = relay.client.post(path, json=body)
    assert resp.status_code == 422, resp.text
    assert field in resp.json()["error"]["message"] and "NUL" in resp.json()["error"]["message"]


@pytest.mark.parametrize(("color", "status"), [(60.0, 202), (60, 202), (60.5, 422), ("60", 422), (True, 422),
                                               (0x1000000, 422)])
def test_color_is_an_integer_as_json_schema_means_it(relay: Relay, color: Any, status: int) -> None:
    resp = relay.post_result(result_payload(color=color))
    assert resp.status_code == status, resp.text
    if status == 202:
        content = relay.client.get(f"/v1/results/{resp.json()['id']}/content").json()
        assert content["color"] == 60 and isinstance(content["color"], int)



@pytest.mark.parametrize(("name", "accepted"), [("   ", False), ("\x1c\x1d", False), ("\u3000\t", False),
                                                ("\ufeff", True), (" a ", True)])
def test_a_forum_post_name_is_blank_for_the_schema_and_the_relay_alike(relay: Relay, name: str,
                                                                        accepted: bool) -> None:
    """Blank by ``str.isspace`` is blank by the OpenAPI pattern too (ECMA's ``\\s`` differs: spelt out)."""
    prop = relay.client.get("/openapi.json").json()["components"]["schemas"]["WebhookDestination"][
        "properties"]["thread_name"]
    [pattern] = [branch["pattern"] for branch in prop["anyOf"] if "pattern" in branch]
    assert (re.search(pattern, name) is not None) is accepted
    resp = relay.post_result(result_payload(route=[{"type": "webhook", "url": WEBHOOK_URL, "thread_name": name}]))
    assert resp.status_code == (202 if accepted else 422), resp.text
