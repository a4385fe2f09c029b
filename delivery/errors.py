"""What can go wrong when sending to Discord, as the rest of the engine sees it.

Exception tree (httpx errors and Discord answers are translated in ``delivery.transport``)::

    DeliveryError
     ├── Transient(status, code, message)        5xx/524, timeouts, resets: tenacity, then the durable schedule
     │    └── ShuttingDown                       the relay is stopping: no new attempt; resume after the restart
     ├── CloudflareBanned(retry_after)           429 without JSON or Via: stop every send for a long while
     ├── ChannelBusy(channel_id, until)          the channel's pacer (or a shared 429) says: not before until
     ├── TooLarge(status, code, message)         413/40005/50045: re-render smaller, never resend as-is
     └── Permanent(status, code, message, field) tried once, the route moves on
          ├── Expired                            401/50027 on an interaction token
          └── DestinationGone                    404/10015, 10003: disable the destination
"""

from __future__ import annotations


class DeliveryError(Exception):
    """Base: a send that did not produce a message."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class Transient(DeliveryError):
    """Worth retrying later: Discord or the network had a bad moment."""


class ShuttingDown(Transient):
    """The process is stopping: a request that is not on the wire yet is not started (nor retried).

    A send already on the wire is awaited to its answer instead, so its message id is recorded
    and a restart never sends it again.
    """

    def __init__(self) -> None:
        super().__init__("the relay is shutting down; the message is sent after the restart")


class CloudflareBanned(DeliveryError):
    """Discord's edge refuses this IP: nothing may be sent until ``retry_after`` has passed."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Cloudflare ban (429 without JSON/Via); pausing {retry_after:.0f} s", status=429)
        self.retry_after = retry_after


class ChannelBusy(DeliveryError):
    """Discord's per-channel webhook cap leaves no slot soon: wait for the whole channel, spend no retry.

    ``until`` is epoch seconds; ``channel_id`` is ``None`` when a ``shared`` 429 came before the
    relay knew the webhook's channel.
    """

    def __init__(self, channel_id: str | None, until: float) -> None:
        super().__init__(f"channel {channel_id or '(not yet known)'} is at Discord's per-channel limit; "
                         f"waiting for the channel", status=None)
        self.channel_id = channel_id
        self.until = until


class TooLarge(DeliveryError):
    """The request was too large for Discord: split it smaller."""


class Permanent(DeliveryError):
    """Retrying the same request cannot succeed."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None,
                 field: str | None = None) -> None:
        super().__init__(message, status=status, code=code)
        self.field = field


class Expired(Permanent):
    """The interaction token is past its 15 minutes (or about to be)."""


class DestinationGone(Permanent):
    """The webhook or channel no longer exists; later results to it fail fast until re-enabled."""
