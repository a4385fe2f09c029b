"""result-relay's producer client: hand results over without ever losing one.

``RelayClient`` / ``AsyncRelayClient`` send with retries and idempotency keys and, given a
``spool=`` path, keep what the relay cannot take yet in a local SQLite file and send it later.
The route helpers build destinations; ``relay_client.discord`` (extra ``[discord]``) adapts
discord.py objects.
"""

from relay_client._async_client import AsyncRelayClient
from relay_client._backoff import Backoff
from relay_client._client import RelayClient
from relay_client._exceptions import (
    AuthenticationError,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    RelayAPIError,
    RelayError,
    RelayUnavailable,
    SpoolError,
    SpoolFull,
    TooLarge,
    WaitTimeout,
)
from relay_client._models import (
    Attachment,
    AttachmentInfo,
    Delivery,
    Destination,
    DMRoute,
    Field,
    InteractionRoute,
    LastError,
    ProgressReceipt,
    Receipt,
    Result,
    ResultInfo,
    TranscriptionReceipt,
    WebhookRoute,
)
from relay_client._routes import dm, interaction, webhook
from relay_client._spool import Spool, SpoolStats

__version__ = "0.1.0"

__all__ = [
    "AsyncRelayClient", "Attachment", "AttachmentInfo", "AuthenticationError", "Backoff", "DMRoute", "Delivery",
    "Destination", "Field", "IdempotencyConflict", "InteractionRoute", "InvalidRequest", "LastError", "NotFound",
    "ProgressReceipt", "Receipt", "RelayAPIError", "RelayClient", "RelayError", "RelayUnavailable", "Result",
    "ResultInfo", "Spool", "SpoolError", "SpoolFull", "SpoolStats", "TooLarge", "TranscriptionReceipt", "WaitTimeout",
    "WebhookRoute", "dm", "interaction", "webhook",
]
