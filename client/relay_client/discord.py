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

Embeds are taken as discord.py builds them (``discord.Embed``). Until the relay accepts native
embeds, ``result_for`` maps them onto its own fields without dropping anything: the first embed
gives title, url, colour, summary (its description) and fields; its footer and every further
embed follow in the body as markdown sections.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import discord

from relay_client._async_client import AsyncRelayClient
from relay_client._client import RelayClient
from relay_client._files import FileArg
from relay_client._models import Destination, Field, Receipt, Result
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


def _embed_markdown(embed: dict[str, Any]) -> str:
    lines = []
    if embed.get("author", {}).get("name"):
        lines.append(f"*{embed['author']['name']}*")
    if embed.get("title"):
        title = embed["title"]
        lines.append(f"## [{title}]({embed['url']})" if embed.get("url") else f"## {title}")
    if embed.get("description"):
        lines.append(embed["description"])
    lines += [f"**{f['name']}**: {f['value']}" for f in embed.get("fields", [])]
    if embed.get("image", {}).get("url"):
        lines.append(embed["image"]["url"])
    if embed.get("footer", {}).get("text"):
        lines.append(f"-# {embed['footer']['text']}")
    return "\n\n".join(lines)


def result_for(interaction: discord.Interaction | None = None, *, embeds: Sequence[discord.Embed] = (),
               content: str | None = None, route: Sequence[Destination] | None = None,
               webhook: str | discord.Webhook | None = None, dm: bool = True, **extra: Any) -> Result:
    """The relay result for these embeds and this interaction's route (``extra``: any other result key)."""
    if route is None:
        if interaction is None:
            raise ValueError("give an interaction or a route")
        route = route_for(interaction, webhook=webhook, dm=dm)
    result = Result(route=list(route))
    dicts: list[dict[str, Any]] = [dict(e.to_dict()) for e in embeds]
    body: list[str] = [content] if content else []
    if dicts:
        first = dicts[0]
        for key in ("title", "url", "color"):
            if first.get(key) is not None:
                result[key] = first[key]  # type: ignore[literal-required,unused-ignore]
        if first.get("description"):
            result["summary"] = first["description"]
        fields = [Field(name=f["name"], value=f["value"], inline=bool(f.get("inline")))
                  for f in first.get("fields", [])]
        if fields:
            result["fields"] = fields
        if first.get("footer", {}).get("text"):
            body.append(f"-# {first['footer']['text']}")
        body += [_embed_markdown(e) for e in dicts[1:]]
    if body:
        result["body"] = "\n\n".join(body)
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
