"""Webhooks and interaction follow-ups over real HTTP: accepted, refused, recorded."""

from __future__ import annotations

import json

import httpx

from tests.fakes.discord import DiscordEmulator, DiscordLimits


def test_wait_true_returns_the_message(discord: DiscordEmulator, client: httpx.Client) -> None:
    webhook_id, _token, url = discord.add_webhook()
    response = client.post(url, params={"wait": "true"}, json={"content": "hello", "embeds": [{"title": "T"}]})
    assert response.status_code == 200
    body = response.json()
    assert body["content"] == "hello"
    assert body["webhook_id"] == webhook_id
    assert body["embeds"] == [{"type": "rich", "title": "T"}]
    assert response.headers["via"] == "1.1 google"
    [message] = discord.messages(webhook_id=webhook_id)
    assert message.id == body["id"]
    assert message.id.isdigit()
    assert message.payload == {"content": "hello", "embeds": [{"title": "T"}]}
    assert message.kind == "webhook"


def test_without_wait_answers_204_and_still_posts(discord: DiscordEmulator, client: httpx.Client) -> None:
    webhook_id, _token, url = discord.add_webhook()
    response = client.post(url, json={"content": "hi"})
    assert response.status_code == 204
    assert [m.content for m in discord.messages(webhook_id=webhook_id)] == ["hi"]


def test_multipart_with_files(discord: DiscordEmulator, client: httpx.Client) -> None:
    webhook_id, _token, url = discord.add_webhook()
    payload = {"content": "report", "attachments": [{"id": 0, "filename": "r.json"}, {"id": 1}]}
    response = client.post(
        url,
        params={"wait": "true"},
        data={"payload_json": json.dumps(payload)},
        files={"files[0]": ("r.json", b'{"a": 1}', "application/json"), "files[1]": ("b.txt", b"body", "text/plain")},
    )
    assert response.status_code == 200, response.text
    assert [a["filename"] for a in response.json()["attachments"]] == ["r.json", "b.txt"]
    [message] = discord.messages(webhook_id=webhook_id)
    assert [(f.field, f.filename, f.data) for f in message.files] == [
        ("files[0]", "r.json", b'{"a": 1}'),
        ("files[1]", "b.txt", b"body"),
    ]
    assert message.files[0].content_type == "application/json"


def test_thread_id_posts_into_the_thread(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    response = client.post(url, params={"wait": "true", "thread_id": "4242"}, json={"content": "t"})
    assert response.json()["channel_id"] == "4242"
    assert discord.messages(channel_id="4242")[0].thread_id == "4242"


def test_invalid_body_is_400_50035_and_recorded(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    response = client.post(url, json={"embeds": [{"description": "x" * 4097}]})
    assert response.status_code == 400
    assert response.json()["errors"]["embeds"]["0"]["description"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    [rejected] = discord.rejected
    assert (rejected.status, rejected.code, rejected.reason) == (400, 50035, "validation")
    assert rejected.request == {"embeds": [{"description": "x" * 4097}]}
    assert discord.messages() == []


def test_empty_message(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    response = client.post(url, json={"content": "  "})
    assert (response.status_code, response.json()) == (400, {"code": 50006, "message": "Cannot send an empty message"})


def test_invalid_json(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    response = client.post(url, content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["code"] == 50109


def test_too_many_files(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    files = {f"files[{i}]": (f"{i}.txt", b"x", "text/plain") for i in range(11)}
    response = client.post(url, data={"payload_json": '{"content": "x"}'}, files=files)
    assert response.status_code == 400
    assert response.json()["code"] == 30015


def test_file_over_the_configured_limit_is_413(discord: DiscordEmulator, client: httpx.Client) -> None:
    discord.set_limits(DiscordLimits(max_file_bytes=1024))
    _id, _token, url = discord.add_webhook()
    ok = client.post(url, data={"payload_json": '{"content": "x"}'}, files={"files[0]": ("a", b"x" * 1024)})
    assert ok.status_code == 204
    response = client.post(url, data={"payload_json": '{"content": "x"}'}, files={"files[0]": ("a", b"x" * 1025)})
    assert (response.status_code, response.json()) == (413, {"code": 40005, "message": "Request entity too large"})


def test_request_over_the_body_limit_is_413_before_reading(discord: DiscordEmulator, client: httpx.Client) -> None:
    discord.set_limits(DiscordLimits(max_request_bytes=4096))
    _id, _token, url = discord.add_webhook()
    response = client.post(url, data={"payload_json": '{"content": "x"}'}, files={"files[0]": ("a", b"x" * 5000)})
    assert response.status_code == 413
    assert response.json()["code"] == 40005


def test_unknown_webhook_is_404_10015(discord: DiscordEmulator, client: httpx.Client) -> None:
    response = client.post(f"{discord.api_base}/webhooks/123/abc", json={"content": "x"})
    assert (response.status_code, response.json()) == (404, {"code": 10015, "message": "Unknown Webhook"})
    assert discord.rejected[0].reason == "not_found"


def test_wrong_token_is_401_50027(discord: DiscordEmulator, client: httpx.Client) -> None:
    webhook_id, _token, _url = discord.add_webhook()
    response = client.post(f"{discord.api_base}/webhooks/{webhook_id}/wrong", json={"content": "x"})
    assert (response.status_code, response.json()) == (401, {"code": 50027, "message": "Invalid Webhook Token"})
    assert discord.invalid_requests == 1


def test_removed_webhook_is_gone_until_added_again(discord: DiscordEmulator, client: httpx.Client) -> None:
    webhook_id, token, url = discord.add_webhook()
    discord.remove_webhook(webhook_id)
    assert client.post(url, json={"content": "x"}).json()["code"] == 10015
    discord.add_webhook(webhook_id, token)
    assert client.post(url, json={"content": "x"}).status_code == 204


def test_refuse_and_accept(discord: DiscordEmulator, client: httpx.Client) -> None:
    webhook_id, _token, url = discord.add_webhook()
    discord.refuse_webhook(webhook_id, status=403, code=50013, message="Missing Permissions")
    response = client.post(url, json={"content": "x"})
    assert (response.status_code, response.json()["code"]) == (403, 50013)
    discord.accept_webhook(webhook_id)
    assert client.post(url, json={"content": "x"}).status_code == 204


def test_auto_create_accepts_any_numeric_pair(client: httpx.Client) -> None:
    with DiscordEmulator(auto_create_webhooks=True) as discord:
        assert client.post(f"{discord.api_base}/webhooks/77/tok", json={"content": "x"}).status_code == 204
        assert client.post(f"{discord.api_base}/webhooks/77/other", json={"content": "x"}).status_code == 401
        response = client.post(f"{discord.api_base}/webhooks/abc/tok", json={"content": "x"})
        assert response.status_code == 400
        assert "webhook_id" in response.json()["errors"]
        discord.remove_webhook(77)
        assert client.post(f"{discord.api_base}/webhooks/77/tok", json={"content": "x"}).status_code == 404
        assert [m.webhook_id for m in discord.messages()] == ["77"]


def test_edit_in_place_get_and_delete(discord: DiscordEmulator, client: httpx.Client) -> None:
    webhook_id, _token, url = discord.add_webhook()
    created = client.post(url, params={"wait": "true"}, json={"content": "step 1/3", "embeds": [{"title": "P"}]}).json()
    message_url = f"{url}/messages/{created['id']}"
    edited = client.patch(message_url, json={"content": "step 2/3"})
    assert edited.status_code == 200
    assert edited.json()["content"] == "step 2/3"
    assert edited.json()["embeds"] == [{"type": "rich", "title": "P"}]
    assert edited.json()["edited_timestamp"] is not None
    [message] = discord.messages(webhook_id=webhook_id)
    assert message.content == "step 2/3"
    assert message.original_payload["content"] == "step 1/3"
    assert [e.payload for e in message.edits] == [{"content": "step 2/3"}]
    assert client.get(message_url).json()["content"] == "step 2/3"
    bad = client.patch(message_url, json={"embeds": [{"title": "x" * 257}]})
    assert bad.status_code == 400
    assert client.delete(message_url).status_code == 204
    assert client.get(message_url).json() == {"code": 10008, "message": "Unknown Message"}
    assert discord.messages() == []
    assert discord.messages(include_deleted=True)[0].deleted


def test_edit_to_empty_is_refused(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    created = client.post(url, params={"wait": "true"}, json={"content": "x"}).json()
    response = client.patch(f"{url}/messages/{created['id']}", json={"content": ""})
    assert response.json()["code"] == 50006


def test_edit_of_another_webhooks_message_is_unknown(discord: DiscordEmulator, client: httpx.Client) -> None:
    _id, _token, url = discord.add_webhook()
    _other, _other_token, other_url = discord.add_webhook()
    created = client.post(url, params={"wait": "true"}, json={"content": "x"}).json()
    response = client.patch(f"{other_url}/messages/{created['id']}", json={"content": "y"})
    assert (response.status_code, response.json()["code"]) == (404, 10008)


def test_interaction_follow_up_until_the_token_expires(discord: DiscordEmulator, client: httpx.Client) -> None:
    url = discord.add_interaction("900", "itoken")
    response = client.post(url, json={"content": "done"})
    assert response.status_code == 200  # follow-ups always return the message
    assert response.json()["application_id"] == "900"
    assert discord.messages(kind="interaction")[0].webhook_id == "900"
    discord.clock.advance(14 * 60 + 59)
    assert client.post(url, json={"content": "still"}).status_code == 200
    discord.clock.advance(1)
    expired = client.post(url, json={"content": "late"})
    assert (expired.status_code, expired.json()) == (401, {"code": 50027, "message": "Invalid Webhook Token"})
    assert len(discord.messages(kind="interaction")) == 2


def test_interaction_created_in_the_past(discord: DiscordEmulator, client: httpx.Client) -> None:
    url = discord.add_interaction("901", "old", created_at=discord.clock.now() - 15 * 60)
    assert client.post(url, json={"content": "x"}).json()["code"] == 50027
    other = f"{discord.api_base}/webhooks/901/unknown-token"
    assert client.post(other, json={"content": "x"}).json()["code"] == 50027


def test_unknown_route_answers_like_discord(discord: DiscordEmulator, client: httpx.Client) -> None:
    response = client.get(f"{discord.api_base}/gateway/nothing")
    assert (response.status_code, response.json()) == (404, {"message": "404: Not Found", "code": 0})


def test_get_webhook(discord: DiscordEmulator, client: httpx.Client) -> None:
    webhook_id, token, url = discord.add_webhook(channel_id="66")
    body = client.get(url).json()
    assert (body["id"], body["token"], body["channel_id"], body["type"]) == (webhook_id, token, "66", 1)
    assert client.get(f"{discord.api_base}/webhooks/{webhook_id}/bad").status_code == 401
