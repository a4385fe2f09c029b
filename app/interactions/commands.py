"""The ``/results`` command as Discord registers it, and the ``relay discord`` helpers that do so.

Discord makes a command with subcommands unusable on its own, so the list is ``/results list``
(``status`` and ``workflow`` options) beside ``/results show id:``. ``register`` bulk-overwrites
the application's commands (``PUT /applications/{id}/commands``, or the guild's, which update at
once and suit testing) with the bot token; what it sends is this module's ``COMMANDS``.
"""

from __future__ import annotations

from typing import Any

import httpx

from app.interactions.signature import load_public_key
from app.interactions.views import STATUS_CHOICES
from app.settings import Settings
from delivery.transport import USER_AGENT

#: Longest workflow filter: it rides in the Previous/Next buttons' 100-character custom ids.
WORKFLOW_OPTION_MAX = 60

_STATUS_NAMES = {"undelivered": "undelivered (default)", "in_progress": "on its way", "delivered": "delivered",
                 "picked_up": "dismissed", "all": "all"}

COMMANDS: list[dict[str, Any]] = [{
    "type": 1,
    "name": "results",
    "description": "Fetch results of your workflows that never reached you",
    "contexts": [0, 1, 2],
    "options": [
        {"type": 1, "name": "list", "description": "Your results, newest first (undelivered by default)",
         "options": [
             {"type": 3, "name": "status", "description": "Which results to list", "required": False,
              "choices": [{"name": _STATUS_NAMES[key], "value": key} for key in STATUS_CHOICES]},
             {"type": 3, "name": "workflow", "description": "Only the results of this workflow",
              "required": False, "autocomplete": True, "max_length": WORKFLOW_OPTION_MAX},
         ]},
        {"type": 1, "name": "show", "description": "One result: preview it, send it here, DM it or dismiss it",
         "options": [
             {"type": 3, "name": "id", "description": "The result (type to search ids and workflow ids)",
              "required": True, "autocomplete": True, "max_length": 40},
         ]},
    ],
}]


class RegistrationFailed(Exception):
    """Discord refused the commands (its status and answer are in the message)."""


def commands_path(application_id: str, guild_id: str | None) -> str:
    """Where the bulk overwrite goes: the application's global commands or one guild's."""
    if guild_id:
        return f"/applications/{application_id}/guilds/{guild_id}/commands"
    return f"/applications/{application_id}/commands"


def register(settings: Settings, *, guild_id: str | None = None,
             client: httpx.Client | None = None) -> list[dict[str, Any]]:
    """Overwrite the application's commands with ``COMMANDS``; returns what Discord registered."""
    if settings.discord_application_id is None or settings.discord_bot_token is None:
        raise RegistrationFailed("set RELAY_DISCORD_APPLICATION_ID and RELAY_DISCORD_BOT_TOKEN first")
    url = settings.discord_api_base.rstrip("/") + commands_path(settings.discord_application_id, guild_id)
    headers = {"Authorization": f"Bot {settings.discord_bot_token.get_secret_value()}", "User-Agent": USER_AGENT}
    own = client is None
    http = client or httpx.Client(timeout=20.0)
    try:
        response = http.put(url, json=COMMANDS, headers=headers)
    except httpx.HTTPError as exc:
        raise RegistrationFailed(f"could not reach Discord ({type(exc).__name__}: {exc})") from None
    finally:
        if own:
            http.close()
    if not response.is_success:
        raise RegistrationFailed(f"Discord answered {response.status_code}: {response.text[:500]}")
    registered = response.json()
    if not isinstance(registered, list):
        raise RegistrationFailed("Discord's answer is not a list of commands")
    return registered


def describe_configuration(settings: Settings) -> list[tuple[str, str, bool]]:
    """``(setting, what it is, fine)`` for ``relay discord check``: every piece the command needs."""
    rows: list[tuple[str, str, bool]] = []
    app_id = settings.discord_application_id
    rows.append(("RELAY_DISCORD_APPLICATION_ID", app_id or "not set", app_id is not None))
    key = settings.discord_public_key
    if key is None:
        rows.append(("RELAY_DISCORD_PUBLIC_KEY", "not set", False))
    else:
        try:
            load_public_key(key)
            rows.append(("RELAY_DISCORD_PUBLIC_KEY", f"{key[:8]}… parses as an Ed25519 public key", True))
        except ValueError as exc:
            rows.append(("RELAY_DISCORD_PUBLIC_KEY", f"does not parse: {exc}", False))
    rows.append(("RELAY_DISCORD_BOT_TOKEN", "set (needed by register and by DM me)"
                 if settings.discord_bot_token else "not set (register and DM me need it)",
                 settings.discord_bot_token is not None))
    tenants = ", ".join(settings.discord_tenants) or "every tenant"
    rows.append(("RELAY_DISCORD_TENANTS", tenants, True))
    rows.append(("RELAY_DISCORD_API_BASE", settings.discord_api_base, True))
    return rows
