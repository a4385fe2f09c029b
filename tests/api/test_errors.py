"""Every bad input gets a clear 4xx naming the field; auth failures; 413 before the body is read."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.conftest import Relay, result_payload


def _error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    return body["error"]


def test_auth_missing_unknown_revoked_and_configured_keys(make_relay) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = make_relay(api_keys="from-settings-key-1,from-settings-key-2")
    anon = httpx.post(f"{relay.url}/v1/results", json=result_payload())
    assert _error(anon, 401)["code"] == "unauthorized" and anon.headers["www-authenticate"].startswith("Bearer")
    assert _error(httpx.get(f"{relay.url}/v1/results", headers={"Authorization": "Bearer nope"}), 401)
    assert _error(httpx.get(f"{relay.url}/v1/results", headers={"Authorization": "Basic abc"}), 401)
    ok = httpx.get(f"{relay.url}/v1/results", headers={"Authorization": "Bearer from-settings-key-2"})
    assert ok.status_code == 200
    info, key = relay.runtime.keys.create(name="doomed")
    assert httpx.get(f"{relay.url}/v1/results", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert relay.runtime.keys.revoke(info.id)
    revoked = httpx.get(f"{relay.url}/v1/results", headers={"Authorization": f"Bearer {key}"})
    assert _error(revoked, 403)["message"] == "this producer key was revoked"
    tampered = key[:-3] + ("AAA" if not key.endswith("AAA") else "BBB")
    assert _error(httpx.get(f"{relay.url}/v1/results", headers={"Authorization": f"Bearer {tampered}"}), 401)


def test_malformed_json(relay: Relay) -> None:
    err = _error(relay.client.post("/v1/results", content=b'{"route": [', headers={"Content-Type":
                                                                                   "application/json"}), 400)
    assert err["code"] == "invalid_json" and "line 1" in err["message"]
    err = _error(relay.client.post("/v1/results", content=b"[1, 2]", headers={"Content-Type": "application/json"}),
                 400)
    assert "JSON object" in err["message"]
    err = _error(relay.client.post("/v1/results", content=b"x", headers={"Content-Type": "text/plain"}), 415)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"route": None}, "route", "required"),
        ({"route": []}, "route", "at least 1"),
        ({"route": [{"type": "pigeon", "coop": 1}]}, "route.0", "unknown destination type 'pigeon'"),
        ({"route": [{"type": "webhook"}]}, "route.0.url", "required"),
        ({"route": [{"type": "interaction", "application_id": "1", "token": "t",
                     "created_at": "2026-01-01T00:00:00"}]}, "route.0.created_at", "timezone"),
        ({"route": [{"type": "dm", "user_id": "abc"}]}, "route.0.user_id", "pattern"),
        ({"attachments": [{"filename": "a.bin", "content_base64": "!!not base64!!"}]},
         "attachments.0.content_base64", "not valid base64"),
        ({"color": 2**25}, "color", "less than or equal"),
        ({"level": "panic"}, "level", "info"),
        ({"mode": "some"}, "mode", "first_success"),
        ({"fields": [{"name": "", "value": "x"}]}, "fields.0.name", "at least 1"),
        ({"titel": "typo"}, "titel", "not a known field"),
    ],
)
def test_invalid_bodies_name_the_field(relay: Relay, change: dict, field: str, words: str) -> None:
    payload = result_payload(**change)
    if payload.get("route") is None:
        payload.pop("route")
    err = _error(relay.post_result(payload), 422)
    assert err["code"] == "invalid_request"
    assert err["details"][0]["field"] == field, err
    assert words in err["details"][0]["message"], err
    assert err["message"].startswith(f"{field}: ")
    assert relay.client.get("/v1/results").json()["items"] == []  # nothing half-written


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://example.com/api/webhooks/1/abc", "Discord webhook URL"),
        ("http://discord.com/api/webhooks/1/abc", "https"),
        ("https://1.2.3.4/api/webhooks/1/abc", "Discord webhook URL"),
        ("https://[::1]/api/webhooks/1/abc", "Discord webhook URL"),
        ("https://user:pw@discord.com/api/webhooks/1/abc", "user information"),
        ("https://discord.com@evil.com/api/webhooks/1/abc", "user information"),
        ("https://discord.com:8443/api/webhooks/1/abc", "port"),
        ("https://discord.com/api/webhooks/abc/def", "form"),
        ("https://discord.com/api/webhooks/1/abc/../../users/@me", "relative"),
        ("https://discord.com/api/webhooks/1/a%2Fb", "encoded"),
        ("https://discord.com/api/channels/1/messages", "form"),
        ("https://discord.com.evil.com/api/webhooks/1/abc", "Discord webhook URL"),
        ("https://discord.com/api/webhooks/1/abc?redirect=x", "query"),
        ("https://discord.com/api/webhooks/1/abc#frag", "fragment"),
        ("http://127.0.0.1:9/api/v10/webhooks/1/../2/abc", "relative"),
        ("http://127.0.0.1:10/api/v10/webhooks/1/abc", "https"),
    ],
)
def test_webhook_urls_outside_discord_are_refused(relay: Relay, url: str, words: str) -> None:
    err = _error(relay.post_result(result_payload(route=[{"type": "webhook", "url": url}])), 422)
    assert err["details"][0]["field"] == "route.0.url"
    assert words in err["details"][0]["message"], err


@pytest.mark.parametrize("url", [
    "https://discord.com/api/webhooks/1/abc",
    "https://discordapp.com/api/webhooks/1/abc",
    "https://ptb.discord.com/api/v9/webhooks/1/abc",
    "https://canary.discord.com/api/v10/webhooks/1/abc?thread_id=5",
    "http://127.0.0.1:9/api/v10/webhooks/1/abc",
])
def test_discord_and_api_base_webhook_urls_are_accepted(relay: Relay, url: str) -> None:
    assert relay.post_result(result_payload(route=[{"type": "webhook", "url": url}])).status_code == 202


def test_dm_needs_a_bot_token(make_relay) -> None:  # type: ignore[no-untyped-def]
    without = make_relay()
    err = _error(without.post_result(result_payload(route=[{"type": "dm", "user_id": "42"}])), 422)
    assert err["details"][0]["field"] == "route.0.type" and "RELAY_DISCORD_BOT_TOKEN" in err["message"]
    with_token = make_relay(discord_bot_token="bot-secret")
    assert with_token.post_result(result_payload(route=[{"type": "dm", "user_id": "42"}])).status_code == 202


def test_multipart_errors(relay: Relay) -> None:
    no_payload = relay.client.post("/v1/results", files={"files[0]": ("a.txt", b"a", "text/plain")})
    assert _error(no_payload, 400)["details"]["field" if False else 0]["field"] == "payload_json"
    bad_json = relay.client.post("/v1/results", files={"payload_json": (None, "{nope", "application/json")})
    assert _error(bad_json, 400)["code"] == "invalid_json"
    stray = relay.client.post("/v1/results", files={"payload_json": (None, json.dumps(result_payload())),
                                                    "attachment": ("a.txt", b"a", "text/plain")})
    assert _error(stray, 400)["details"][0]["field"] == "attachment"


def _raw_post(port: int, key: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST /v1/results HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n{head}\r\n".encode()
                     + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 20:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_413_decided_before_reading_the_body(make_relay) -> None:  # type: ignore[no-untyped-def]
    relay: Relay = make_relay(max_result_bytes=1024)
    # Announce a gigabyte and send almost nothing: the answer must come without waiting for the body.
    status, data = _raw_post(relay.server.port, relay.key,
                             {"Content-Type": "application/json", "Content-Length": str(10**9)}, b"{")
    assert status == 413 and b"too_large" in data
    # A chunked upload is cut off the moment it crosses the limit.
    chunk = b'{"title": "' + b"x" * 2000
    body = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    status, data = _raw_post(relay.server.port, relay.key,
                             {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}, body)
    assert status == 413
    big = relay.post_result(result_payload(body="y" * 2000))
    assert _error(big, 413)["details"] == {"limit": 1024}
    assert relay.client.get("/v1/results").json()["items"] == []
