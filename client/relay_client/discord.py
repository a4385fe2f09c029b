"""discord.py adapter (extra ``[discord]``): routes and results from the objects a bot already has.

    @tree.command()
    async def analyze(interaction: discord.Interaction, url: str) -> None:
        await interaction.response.defer(thinking=True)
        job = await run_for_20_minutes(url)                       # long after the token died
        await relay_discord.asend(relay, interaction, embeds=[job.summary_embed, job.details_embed],
                                  webhook=CHANNEL_HOOK)

``route_for`` orders the destinations as a user expects them: the interaction's follow-up while
its token lives (the relay itself skips it once the 15 minutes are nearly over), then the
channel webhook, then a DM to the user who ran the command.

Embeds are taken as discord.py builds them (``discord.Embed``) and sent as Discord's own embed
objects (``Embed.to_dict()``), with ``content`` above them: the relay delivers them as they are,
split over messages only where Discord's limits make it (more than 10 embeds or 6,000 characters
in one message, a description over 4,096, content over 2,000), in order and without loss. Files
given in ``files`` can be shown in an embed as ``attachment://<filename>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import discord

from relay_client._async_client import AsyncRelayClient
from relay_client._client import RelayClient
from relay_client._files import FileArg
from relay_client._models import Destination, Receipt, Result
from relay_client._routes import dm as dm_route
from relay_client._routes import interaction as interaction_route
from relay_client._routes import webhook as webhook_route

__all__ = ["asend", "result_for", "route_for", "send"]


def route_for(interaction: discord.Interaction, *, webhook: str | discord.Webhook | None = None,
              dm: bool = True) -> list[Destination]:
    """Follow-up (while the token lives), then ``webhook``, then a DM to the invoking user."""
    route: list[Destination] = []
    if not interaction.is_expired():
        route.append(interaction_route(interaction.application_id, interaction.token, interaction.created_at,
                                       user_id=interaction.user.id))
    if webhook is not None:
        url = webhook if isinstance(webhook, str) else webhook.url
        channel = interaction.channel
        thread = channel.id if isinstance(channel, discord.Thread) else None  # a webhook posts into threads by id
        route.append(webhook_route(url, thread))
    if dm:
        route.append(dm_route(interaction.user.id))
    if not route:
        raise ValueError("no destination left: the interaction has expired and neither webhook nor dm was given")
    return route


def result_for(interaction: discord.Interaction | None = None, *, embeds: Sequence[discord.Embed] = (),
               content: str | None = None, route: Sequence[Destination] | None = None,
               webhook: str | discord.Webhook | None = None, dm: bool = True, **extra: Any) -> Result:
    """The relay result for these embeds and this interaction's route (``extra``: any other result key).

    ``embeds`` and ``content`` go as Discord-native ``embeds``/``content``, exactly what
    ``interaction.followup.send(content, embeds=…)`` would have sent.
    """
    if route is None:
        if interaction is None:
            raise ValueError("give an interaction or a route")
        route = route_for(interaction, webhook=webhook, dm=dm)
    result = Result(route=list(route))
    if content:
        result["content"] = content
    if embeds:
        result["embeds"] = [dict(e.to_dict()) for e in embeds]
    data: dict[str, Any] = dict(interaction.data or {}) if interaction is not None else {}
    name = data.get("name")
    if interaction is not None and name:
        result.setdefault("workflow_id", f"{name}:{interaction.id}")  # the command and its run, for the pickup list
    result.update(extra)  # type: ignore[typeddict-item]
    return result


def send(relay: RelayClient, interaction: discord.Interaction | None = None, *,
         embeds: Sequence[discord.Embed] = (), content: str | None = None, files: Sequence[FileArg] | None = None,
         webhook: str | discord.Webhook | None = None, dm: bool = True, **extra: Any) -> Receipt:
    """``relay.send`` of ``result_for(...)``: what ``interaction.followup.send(embeds=…)`` would have sent."""
    return relay.send(result_for(interaction, embeds=embeds, content=content, webhook=webhook, dm=dm, **extra),
                      files=files)


async def asend(relay: AsyncRelayClient, interaction: discord.Interaction | None = None, *,
                embeds: Sequence[discord.Embed] = (), content: str | None = None,
                files: Sequence[FileArg] | None = None, webhook: str | discord.Webhook | None = None,
                dm: bool = True, **extra: Any) -> Receipt:
    """``send`` for the async client, inside a bot's event loop."""
    return await relay.send(result_for(interaction, embeds=embeds, content=content, webhook=webhook, dm=dm,
                                       **extra), files=files)
