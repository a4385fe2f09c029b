"""Route helpers: the destinations of ``route`` as the relay's wire format expects them."""

from __future__ import annotations

from datetime import UTC, datetime

from relay_client._models import DMRoute, InteractionRoute, WebhookRoute


def webhook(url: str, thread_id: str | int | None = None, *, thread_name: str | None = None,
            applied_tags: list[str | int] | None = None, silent: bool | None = None) -> WebhookRoute:
    """A channel webhook (``https://discord.com/api/webhooks/{id}/{token}``), optionally into a thread.

    In a forum or media channel, ``thread_name`` makes the result's first message a new post (tagged
    with ``applied_tags``, at most 5) and every later message goes into it. ``silent`` sends without
    notifications.
    """
    dest = WebhookRoute(type="webhook", url=url)
    if thread_id is not None:
        dest["thread_id"] = str(thread_id)
    if thread_name is not None:
        dest["thread_name"] = thread_name
    if applied_tags:
        dest["applied_tags"] = [str(tag) for tag in applied_tags]
    if silent is not None:
        dest["silent"] = silent
    return dest


def dm(user_id: str | int) -> DMRoute:
    """A direct message to a user, sent with the relay's bot token."""
    return DMRoute(type="dm", user_id=str(user_id))


def interaction(application_id: str | int, token: str, created_at: datetime | str,
                user_id: str | int | None = None) -> InteractionRoute:
    """An interaction follow-up; the relay uses it only while the token lives (15 minutes).

    ``created_at`` is when the interaction was created (``interaction.created_at`` in discord.py);
    a naive datetime is taken as UTC, because the relay insists on a timezone. ``user_id``, the
    user who ran the command, lets that user fetch the result later with ``/results``.
    """
    if isinstance(created_at, datetime):
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=UTC)
        created_at = created_at.isoformat()
    route = InteractionRoute(type="interaction", application_id=str(application_id), token=token,
                             created_at=created_at)
    if user_id is not None:
        route["user_id"] = str(user_id)
    return route
