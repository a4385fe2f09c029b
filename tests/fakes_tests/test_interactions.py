"""The emulator as Discord's side of HTTP interactions, against a tiny application of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.discord import DiscordEmulator
from tests.support.server import LiveServer


class App:
    """An application endpoint that checks Discord's signature and answers what the test says."""

    def __init__(self, public_key: str) -> None:
        self.key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
        self.reply: Any = {"type": 1}
        self.seen: list[dict[str, Any]] = []

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        stamp = request.headers.get("x-signature-timestamp", "")
        try:
            self.key.verify(bytes.fromhex(request.headers.get("x-signature-ed25519", "")), stamp.encode() + body)
        except Exception:  # noqa: BLE001 - any failure is "not Discord"
            return Response(status_code=401)
        self.seen.append(await request.json())
        return JSONResponse(self.reply)


@pytest.fixture
def app(discord: DiscordEmulator) -> Iterator[tuple[App, str]]:
    application = App(discord.interactions.public_key)
    server = LiveServer(Starlette(routes=[Route("/i", application.endpoint, methods=["POST"])])).start()
    yield application, f"{server.url}/i"
    server.stop()


def test_interactions_are_signed_with_the_published_key(discord: DiscordEmulator, app: tuple[App, str]) -> None:
    application, url = app
    assert discord.interactions.ping(url).body == {"type": 1}
    assert discord.interactions.ping(url, signature="00" * 64).status == 401
    assert len(application.seen) == 1


def test_a_guild_command_carries_the_member_and_its_permissions(discord: DiscordEmulator,
                                                                app: tuple[App, str]) -> None:
    application, url = app
    application.reply = {"type": 4, "data": {"content": "hi", "flags": 64}}
    call = discord.interactions.command(url, user_id="5", subcommand="list", options={"status": "all"},
                                        guild_id="77", permissions=32)
    sent = application.seen[-1]
    assert sent["member"]["user"]["id"] == "5" and sent["member"]["permissions"] == "32" and sent["guild_id"] == "77"
    assert sent["data"]["options"][0] == {"name": "list", "type": 1,
                                          "options": [{"name": "status", "type": 3, "value": "all"}]}
    original = call.original()
    assert original is not None and original.content == "hi" and original.payload["flags"] == 64


def test_a_deferral_is_thinking_until_original_is_patched(discord: DiscordEmulator, app: tuple[App, str]) -> None:
    application, url = app
    application.reply = {"type": 5, "data": {"flags": 64}}
    call = discord.interactions.command(url, user_id="5")
    thinking = call.original()
    assert thinking is not None and thinking.payload["flags"] == 64 | 128
    base = f"{discord.api_base}/webhooks/{discord.interactions.application_id}/{call.token}/messages/@original"
    assert httpx.get(base).json()["id"] == thinking.id
    edited = httpx.patch(base, json={"content": "done", "components": [{"type": 1, "components": [
        {"type": 2, "style": 1, "label": "Go", "custom_id": "x"}]}]})
    assert edited.status_code == 200, edited.text
    assert call.wait_original().content == "done" and call.original().payload["flags"] == 64  # type: ignore[union-attr]
    # Discord's limits hold for the edit too.
    too_long = httpx.patch(base, json={"content": "x" * 2001})
    assert too_long.status_code == 400 and too_long.json()["code"] == 50035
    # A follow-up on the same token posts a new message into the command's channel.
    follow = httpx.post(f"{discord.api_base}/webhooks/{discord.interactions.application_id}/{call.token}",
                        json={"content": "follow-up"})
    assert follow.status_code == 200 and follow.json()["channel_id"] == thinking.channel_id


@pytest.mark.parametrize("reply", [
    {"type": 8, "data": {"choices": []}},  # choices answer autocomplete only
    {"type": 6},  # a deferred update needs a message: components only
    {"type": 4, "data": {"content": ""}},  # an empty message
    {"type": 4, "data": {"content": "x" * 2001}},
    {"type": 42},
    "not json at all",
])
def test_invalid_answers_make_the_interaction_fail(discord: DiscordEmulator, app: tuple[App, str], reply: Any) -> None:
    application, url = app
    application.reply = reply
    call = discord.interactions.command(url, user_id="5")
    assert call.failure is not None and call.original() is None


def test_autocomplete_takes_at_most_25_choices(discord: DiscordEmulator, app: tuple[App, str]) -> None:
    application, url = app
    application.reply = {"type": 8, "data": {"choices": [{"name": str(i), "value": str(i)} for i in range(26)]}}
    assert discord.interactions.autocomplete(url, user_id="5", option="id", typed="").failure is not None
    application.reply = {"type": 8, "data": {"choices": [{"name": "a" * 101, "value": "v"}]}}
    assert discord.interactions.autocomplete(url, user_id="5", option="id", typed="").failure is not None
    application.reply = {"type": 8, "data": {"choices": [{"name": str(i), "value": str(i)} for i in range(25)]}}
    call = discord.interactions.autocomplete(url, user_id="5", option="id", typed="")
    assert call.failure is None and len(call.choices) == 25


def test_the_callback_endpoint_acknowledges_once(discord: DiscordEmulator, app: tuple[App, str]) -> None:
    application, url = app
    application.reply = {"type": 4, "data": {"content": "first"}}
    call = discord.interactions.command(url, user_id="5")
    again = httpx.post(f"{discord.api_base}/interactions/{call.id}/{call.token}/callback",
                       json={"type": 4, "data": {"content": "second"}})
    assert (again.status_code, again.json()["code"]) == (400, 40060)
    unknown = httpx.post(f"{discord.api_base}/interactions/1/nope/callback", json={"type": 1})
    assert (unknown.status_code, unknown.json()["code"]) == (404, 10062)


def test_a_click_acknowledged_with_type_6_edits_the_clicked_message(discord: DiscordEmulator,
                                                                     app: tuple[App, str]) -> None:
    application, url = app
    application.reply = {"type": 4, "data": {"content": "pick", "flags": 64, "components": [
        {"type": 1, "components": [{"type": 2, "style": 1, "label": "Go", "custom_id": "go"}]}]}}
    message = discord.interactions.command(url, user_id="5").original()
    assert message is not None
    application.reply = {"type": 6}
    click = discord.interactions.click(url, message=message, custom_id="go", user_id="5")
    assert application.seen[-1]["message"]["id"] == message.id and application.seen[-1]["data"]["custom_id"] == "go"
    assert click.original() is not None and click.original().id == message.id  # type: ignore[union-attr]
    patched = httpx.patch(f"{discord.api_base}/webhooks/{discord.interactions.application_id}/{click.token}"
                          "/messages/@original", json={"content": "went"})
    assert patched.status_code == 200 and discord.message(message.id).content == "went"  # type: ignore[union-attr]


def test_original_of_a_plain_webhook_or_an_expired_token(discord: DiscordEmulator, app: tuple[App, str]) -> None:
    application, url = app
    wid, token, _ = discord.add_webhook()
    assert httpx.get(f"{discord.api_base}/webhooks/{wid}/{token}/messages/@original").json()["code"] == 10008
    application.reply = {"type": 4, "data": {"content": "hi"}}
    call = discord.interactions.command(url, user_id="5")
    discord.clock.advance(901)
    late = httpx.patch(f"{discord.api_base}/webhooks/{discord.interactions.application_id}/{call.token}"
                       "/messages/@original", json={"content": "late"})
    assert (late.status_code, late.json()["code"]) == (401, 50027)
