"""``relay discord register`` / ``check``, and the emulator holding registration to Discord's rules."""

from __future__ import annotations

import json

import httpx
import pytest

from app.cli import main
from app.interactions.commands import COMMANDS
from tests.fakes.discord_validation import DiscordValidationError, validate_request

BOT = "bot-token-for-tests"


@pytest.fixture
def discord_env(monkeypatch: pytest.MonkeyPatch, discord, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("RELAY_DISCORD_API_BASE", discord.api_base)
    monkeypatch.setenv("RELAY_DISCORD_BOT_TOKEN", BOT)
    monkeypatch.setenv("RELAY_DISCORD_APPLICATION_ID", discord.interactions.application_id)
    monkeypatch.setenv("RELAY_DISCORD_PUBLIC_KEY", discord.interactions.public_key)


def test_the_command_json_is_what_discords_schema_accepts() -> None:
    validate_request("PUT", "/applications/{application_id}/commands", COMMANDS)
    validate_request("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", COMMANDS)


@pytest.mark.parametrize("guild", [None, "930000000000000001"])
def test_register_overwrites_the_commands_and_prints_them(discord_env, discord, capsys, guild) -> None:  # type: ignore[no-untyped-def]
    assert main(["discord", "register", *(["--guild", guild] if guild else [])]) == 0
    out = capsys.readouterr().out
    [registered] = discord.registered_commands(guild)
    assert registered["name"] == "results" and registered["id"] in out
    assert "list, show" in out
    sent = {k: v for k, v in registered.items() if k in COMMANDS[0]}
    assert sent == COMMANDS[0]
    assert discord.rejected == []
    # A second registration replaces, it does not add.
    assert main(["discord", "register", *(["--guild", guild] if guild else [])]) == 0
    assert len(discord.registered_commands(guild)) == 1


def test_register_fails_loudly_with_a_wrong_bot_token(discord_env, monkeypatch, discord, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RELAY_DISCORD_BOT_TOKEN", "wrong")
    assert main(["discord", "register"]) == 1
    assert discord.registered_commands() == []


def test_check_reports_the_configuration(discord_env, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["discord", "check"]) == 0
    out = capsys.readouterr().out
    assert "ok\tRELAY_DISCORD_PUBLIC_KEY" in out and "parses as an Ed25519 public key" in out
    assert BOT not in out
    monkeypatch.delenv("RELAY_DISCORD_APPLICATION_ID")
    monkeypatch.delenv("RELAY_DISCORD_PUBLIC_KEY")
    assert main(["discord", "check"]) == 1
    assert "missing\tRELAY_DISCORD_PUBLIC_KEY" in capsys.readouterr().out
    monkeypatch.setenv("RELAY_DISCORD_APPLICATION_ID", "1")
    monkeypatch.setenv("RELAY_DISCORD_PUBLIC_KEY", "nothex")
    assert main(["discord", "check"]) == 2
    assert "RELAY_DISCORD_PUBLIC_KEY" in capsys.readouterr().err


@pytest.mark.parametrize("commands, where", [
    ([{**COMMANDS[0], "name": "Results"}], "name"),  # chat commands are lower-case
    ([COMMANDS[0], COMMANDS[0]], "name"),  # unique names
    ([{**COMMANDS[0], "options": [*COMMANDS[0]["options"],  # subcommands beside a plain option
                                  {"type": 3, "name": "extra", "description": "x"}]}], "options"),
    ([{"name": "results", "description": "d", "options": [
        {"type": 3, "name": "a", "description": "x"}, {"type": 3, "name": "b", "description": "x",
                                                       "required": True}]}], "options"),  # required after optional
    ([{"name": "results", "description": "d", "options": [
        {"type": 3, "name": "a", "description": "x", "autocomplete": True,
         "choices": [{"name": "n", "value": "v"}]}]}], "options"),
    ([{"name": "results", "description": "x" * 101}], "description"),  # the spec's own limit
    ([{"name": "results"}], "description"),
])
def test_the_emulator_refuses_what_discord_refuses(discord, commands, where) -> None:  # type: ignore[no-untyped-def]
    url = f"{discord.api_base}/applications/{discord.interactions.application_id}/commands"
    response = httpx.put(url, json=commands, headers={"Authorization": f"Bot {BOT}"})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == 50035 and where in json.dumps(body["errors"])
    assert discord.registered_commands() == []


def test_registration_needs_the_bot_and_its_own_application(discord) -> None:  # type: ignore[no-untyped-def]
    app = discord.interactions.application_id
    assert httpx.put(f"{discord.api_base}/applications/{app}/commands", json=COMMANDS).status_code == 401
    other = httpx.put(f"{discord.api_base}/applications/42/commands", json=COMMANDS,
                      headers={"Authorization": f"Bot {BOT}"})
    assert (other.status_code, other.json()["code"]) == (403, 20012)
    with pytest.raises(DiscordValidationError):
        validate_request("PUT", "/applications/{application_id}/commands", [{"name": ""}])
