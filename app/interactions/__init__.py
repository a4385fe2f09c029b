"""Discord's side of the relay: the signed ``/discord/interactions`` endpoint and ``/results``.

``router`` is included by ``app.main``; ``open_interactions`` builds the service in the lifespan
when ``RELAY_DISCORD_APPLICATION_ID`` and ``RELAY_DISCORD_PUBLIC_KEY`` are set.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.interactions.routes import router
from app.interactions.service import InteractionService
from app.runtime import Runtime
from delivery.transport import DiscordTransport, make_client

__all__ = ["InteractionService", "open_interactions", "router"]


def open_interactions(runtime: Runtime) -> tuple[InteractionService | None, Callable[[], Awaitable[None]]]:
    """The service (None when the endpoint is off) and the coroutine that closes its HTTP client."""
    settings = runtime.settings
    if not settings.interactions_enabled:
        async def nothing() -> None:
            return None

        return None, nothing
    client = make_client(read_timeout=settings.discord_timeout)
    bot = settings.discord_bot_token.get_secret_value() if settings.discord_bot_token else None
    transport = DiscordTransport(client, settings.discord_api_base, bot_token=bot,
                                 retry_attempts=settings.http_retry_attempts)
    return InteractionService(runtime, transport), client.aclose
