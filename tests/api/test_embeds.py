"""Discord-native ``content`` and ``embeds`` through the real API, the store and the emulator.

Accepted as ``discord.Embed.to_dict()`` writes them; refused with a 422 naming the path only where
Discord could never show them; stored so that every GET reads them back; delivered whole.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from delivery.split import decode_piece
from store.engine import alembic_config
from store.results import ResultStore
from store.session import Database
from tests.conftest import Relay, result_payload, wait_for
from tests.support.db import database_at

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
                       "rkJggg==")


def _native(**overrides: Any) -> dict[str, Any]:
    payload = result_payload(**overrides)
    for key in ("title", "summary", "body", "fields"):
        if key not in overrides:
            payload.pop(key)
    return payload


def _embed(i: int, **extra: Any) -> dict[str, Any]:
    return {"type": "rich", "title": f"Embed {i}", "description": f"text of embed {i}", "color": 0x5865F2,
            "flags": 0, **extra}


def _problem(relay: Relay, payload: dict[str, Any], **kwargs: Any) -> tuple[str, list[dict[str, str]]]:
    resp = relay.post_result(payload, **kwargs) if "files" not in kwargs else relay.client.post(
        "/v1/results", data={"payload_json": json.dumps(payload)}, **kwargs)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_request"
    return error["message"], error["details"]


@pytest.mark.parametrize("embed, path, words", [
    ({"title": "t", "fields": [{"name": "a", "value": "b"}, {"name": "c", "value": "d"},
                               {"name": "e", "value": "v" * 1025}]}, "embeds.3.fields.2.value", "longer than 1024"),
    ({"title": "t", "fields": [{"name": "n" * 257, "value": "v"}]}, "embeds.3.fields.0.name", "longer than 256"),
    ({"title": "😀" * 129}, "embeds.3.title", "longer than 256"),  # 258 UTF-16 units, as Discord counts
    ({"title": "t", "footer": {"text": "f" * 2049}}, "embeds.3.footer.text", "longer than 2048"),
    ({"title": "t", "author": {"name": "a" * 257}}, "embeds.3.author.name", "longer than 256"),
    ({"title": "t", "fields": [{"name": "n", "value": "v"}] * 26}, "embeds.3.fields", "at most 25"),
    ({"title": "t", "url": "javascript:alert(1)"}, "embeds.3.url", "http:// or https://"),
    ({"title": "t", "url": "attachment://a.png"}, "embeds.3.url", "http:// or https://"),
    ({"title": "t", "image": {"url": "ftp://example.com/a.png"}}, "embeds.3.image.url", "attachment://"),
    ({"title": "t", "thumbnail": {"url": "https://exa mple.com/a.png"}}, "embeds.3.thumbnail.url", "well formed"),
    ({"title": "t", "author": {"name": "a", "icon_url": "data:image/png;base64,AAAA"}}, "embeds.3.author.icon_url",
     "attachment://"),
    ({"title": "t", "colour": 5}, "embeds.3.colour", "not a known field"),
    ({"title": "t", "image": {"url": "https://example.com/a.png", "size": 3}}, "embeds.3.image.size",
     "not a known field"),
    ({"title": "t", "color": 0x1000000}, "embeds.3.color", "less than or equal"),
    ({"title": "t", "timestamp": "yesterday"}, "embeds.3.timestamp", "ISO 8601"),
    ({"color": 5, "footer": {"text": "  "}}, "embeds.3", "shows nothing"),
    ({"title": "t", "image": {"url": "attachment://missing.png"}}, "embeds.3.image.url", "names no file"),
])
def test_what_discord_could_never_show_is_a_422_naming_the_path(relay: Relay, embed: dict[str, Any], path: str,
                                                                words: str) -> None:
    message, details = _problem(relay, _native(embeds=[_embed(0), _embed(1), _embed(2), embed]))
    assert message.startswith(f"{path}: ") and words in message, message
    assert details[0]["field"] == path
    assert relay.client.get("/v1/results").json()["items"] == []  # nothing half-written


def test_content_and_embeds_of_the_wrong_shape_are_422s(relay: Relay) -> None:
    for payload, path in ((_native(content=5), "content"), (_native(embeds={"title": "t"}), "embeds"),
                          (_native(embeds=["t"]), "embeds.0"), (_native(embeds=[{"title": "t"}] * 501), "embeds")):
        message, _ = _problem(relay, payload)
        assert message.startswith(f"{path}: "), message


def test_attachment_references_are_checked_against_the_files_multipart_too(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay(max_attachment_bytes=1000)
    embeds = [_embed(0, image={"url": "attachment://chart.png"}), _embed(1, thumbnail={"url": "attachment://big.bin"})]
    files = {"files[0]": ("chart.png", PNG, "image/png"), "files[1]": ("big.bin", b"x" * 1001, "application/x")}
    message, details = _problem(relay, _native(embeds=embeds), files=files)
    assert [d["field"] for d in details] == ["embeds.1.thumbnail.url"] and "RELAY_MAX_ATTACHMENT_BYTES" in message
    ok = relay.client.post("/v1/results", data={"payload_json": json.dumps(_native(embeds=embeds[:1]))},
                           files={"files[0]": files["files[0]"]})
    assert ok.status_code == 202, ok.text


def test_everything_accepted_reads_back(relay: Relay) -> None:
    embeds = [_embed(0, timestamp="2026-12-02T18:00:00+00:00", url="https://example.com/run/1",
                     footer={"text": "model v3", "icon_url": "attachment://chart.png"},
                     author={"name": "bot", "url": "https://example.com", "icon_url": "https://example.com/i.png"},
                     image={"url": "attachment://chart.png", "width": 1, "height": 1},
                     thumbnail={"url": "https://example.com/t.png"},
                     fields=[{"name": "Sentiment", "value": "mixed", "inline": True}]),
              {"description": "only a description", "title": None}]
    payload = _native(content="**Done** — @everyone", embeds=embeds, title="Relay's own",
                      attachments=[{"filename": "chart.png", "content_type": "image/png",
                                    "content_base64": base64.b64encode(PNG).decode()}])
    resp = relay.post_result(payload)
    assert resp.status_code == 202, resp.text
    content = relay.client.get(f"/v1/results/{resp.json()['id']}/content").json()
    assert content["content"] == payload["content"]
    assert content["embeds"] == [embeds[0], {"description": "only a description"}]  # nulls are not kept
    assert content["title"] == "Relay's own"


def test_fifteen_embeds_and_a_long_description_arrive_whole(delivering_relay: Callable[..., Relay],
                                                             discord: Any) -> None:
    relay = delivering_relay()
    hook_id, _, url = discord.add_webhook()
    long = "\n\n".join(f"Paragraph {i}: " + "naïve words ✅ " * 40 for i in range(25))  # ~14,000 characters
    embeds = [_embed(i, fields=[{"name": "index", "value": str(i), "inline": True}]) for i in range(15)]
    embeds[6]["description"] = long
    embeds[9]["image"] = {"url": "attachment://chart.png"}
    content = "Results: " + "see below. " * 250  # over 2,000 characters
    payload = _native(content=content, embeds=embeds, route=[{"type": "webhook", "url": url}])
    resp = relay.client.post("/v1/results", data={"payload_json": json.dumps(payload)},
                             files={"files[0]": ("chart.png", PNG, "image/png"),
                                    "files[1]": ("notes.txt", b"plain notes", "text/plain")})
    assert resp.status_code == 202, resp.text
    rid = resp.json()["id"]
    wait_for(lambda: relay.client.get(f"/v1/results/{rid}").json()["status"] == "delivered", timeout=60,
             message="delivered")
    messages = discord.messages(webhook_id=hook_id, kind="webhook")
    assert len(messages) >= 3
    pieces = [m.original_payload["content"] for m in messages if "content" in m.original_payload]
    assert "".join(decode_piece(p) for p in pieces) == content.strip()
    parts = [e for m in messages for e in m.original_payload.get("embeds", [])]
    assert [e["title"] for e in parts if "title" in e] == [f"Embed {i}" for i in range(15)]
    # Embed 6 continues in untitled parts right after it, and its text is whole.
    start = next(i for i, e in enumerate(parts) if e.get("title") == "Embed 6")
    end = next(i for i, e in enumerate(parts) if e.get("title") == "Embed 7")
    assert end - start >= 4
    assert "".join(decode_piece(e["description"]) for e in parts[start:end]) == long.strip()  # as Discord trims
    assert parts[end - 1]["fields"] == [{"name": "index", "value": "6", "inline": True}]
    # The file an embed shows is in that embed's message; every other file arrives too.
    shown = next(m for m in messages if any(e.get("image") for e in m.original_payload.get("embeds", [])))
    assert [f.filename for f in shown.files] == ["chart.png"] and shown.files[0].data == PNG
    assert [f.data for m in messages for f in m.files if f.filename == "notes.txt"] == [b"plain notes"]
    assert all(m.original_payload["allowed_mentions"] == {"parse": []} for m in messages)


def test_stored_embeds_render_after_a_restart(make_relay: Callable[..., Relay], delivering_relay: Callable[..., Relay],
                                              discord: Any) -> None:
    hook_id, _, url = discord.add_webhook()
    first = make_relay(discord_api_base=discord.api_base)  # accepts, but runs no workers
    resp = first.post_result(_native(content="hello", embeds=[_embed(0)], route=[{"type": "webhook", "url": url}]))
    assert resp.status_code == 202, resp.text
    rid = resp.json()["id"]
    first.server.stop()
    first.runtime.close()
    second = delivering_relay()
    wait_for(lambda: second.client.get(f"/v1/results/{rid}").json()["status"] == "delivered",
             timeout=60, message="delivered by the second relay")
    [message] = discord.messages(webhook_id=hook_id, kind="webhook")
    assert message.original_payload["content"] == "hello"
    assert message.original_payload["embeds"] == [{"type": "rich", "title": "Embed 0", "description": "text of embed 0",
                                                   "color": 0x5865F2}]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migration_0004_upgrades_a_database_of_the_previous_schema(backend: str, tmp_path: Any) -> None:
    with database_at("0003", backend=backend, tmp_path=tmp_path, prefix="relay_embeds") as engine:
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO results (id, tenant, key_id, request_hash, title, fields_json, metadata_json, mode,"
                " status, generation, created_at, updated_at) VALUES ('res_old', 'default', 'key_old', 'h', 'Old',"
                " '[]', '{}', 'all', 'undelivered', 1, :n, :n)"), {"n": now})
        command.upgrade(alembic_config(engine), "head")
        with engine.connect() as conn:
            row = conn.execute(text("SELECT content, embeds_json FROM results")).one()
        assert row.content is None and row.embeds_json in ([], "[]")
        view = ResultStore(Database(engine)).content("res_old")
        assert (view.title, view.content, view.embeds) == ("Old", None, [])
        command.downgrade(alembic_config(engine), "0003")
        command.upgrade(alembic_config(engine), "head")
