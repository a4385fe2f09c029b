"""The renderer's value types and Discord's limits: the contract between store, renderer and engine.

Frozen dataclasses, so a plan or a result handed between the store, :mod:`delivery.render` and
the worker cannot be changed behind anyone's back. :mod:`delivery.render` re-exports the render
types. Also here: the few facts of Discord both the store and the engine reason with (a bucket's
state, an interaction token's life).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

__all__ = [
    "INTERACTION_TTL",
    "LAST_SAFE_SEND",
    "RELAY_STATE_MARKS",
    "AttachmentRef",
    "BucketState",
    "Destination",
    "Field",
    "FilePart",
    "Level",
    "Limits",
    "MessagePlan",
    "RenderInput",
    "smaller",
]

_SMALLEST_FILE = 256 * 1024

INTERACTION_TTL = timedelta(minutes=15)
"""An interaction token's life: after it, follow-ups and edits fail with 401 Invalid Webhook Token."""
LAST_SAFE_SEND = timedelta(seconds=5)
"""Never use a token this close to its end."""
RELAY_STATE_MARKS = ("handoff_sent", "thread_id")
"""What the relay, not the producer, writes into a progress row's state; a producer's update keeps them."""


@dataclass
class BucketState:
    """What Discord said about one route key's bucket (kept with the destination between owners)."""

    bucket: str | None = None
    remaining: int | None = None
    reset_at: float = 0.0  # epoch seconds


Destination = Literal["webhook", "interaction", "dm"]
Level = Literal["info", "success", "warning", "error"]


@dataclass(frozen=True)
class Field:
    """One name/value pair of a result, shown as an embed field."""

    name: str
    value: str
    inline: bool = False


@dataclass(frozen=True)
class AttachmentRef:
    """A stored producer attachment; the bytes stay in the store, the plan only points at them."""

    index: int
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class RenderInput:
    """What the renderer needs of a stored result (everything optional)."""

    title: str | None = None
    summary: str | None = None
    body: str | None = None
    fields: tuple[Field, ...] = ()
    url: str | None = None
    color: int | None = None
    level: Level | None = None
    workflow_id: str | None = None
    attachments: tuple[AttachmentRef, ...] = ()
    content: str | None = None  # Discord-native: message text above the embeds
    embeds: tuple[dict[str, Any], ...] = ()  # Discord-native embed objects, as stored


@dataclass(frozen=True)
class Limits:
    """Discord's documented limits (the defaults), lowered by :func:`smaller` after a 413."""

    content: int = 2000
    embeds_per_message: int = 10
    title: int = 256
    description: int = 4096
    fields_per_embed: int = 25
    field_name: int = 256
    field_value: int = 1024
    footer: int = 2048
    author: int = 256
    embed_total: int = 6000
    files_per_message: int = 10
    max_attachment_bytes: int = 8 * 1024 * 1024
    max_request_bytes: int = 25 * 1024 * 1024
    max_body_messages: int = 3  # body needing more messages than this goes as result.md


@dataclass(frozen=True)
class FilePart:
    """One uploaded file of a message: a byte range of a producer attachment, or generated data."""

    filename: str
    content_type: str
    attachment_index: int | None  # producer attachment this part is cut from, None for generated data
    offset: int = 0
    length: int = 0  # byte range inside that attachment (not copied!)
    data: bytes | None = None  # generated files (result.md) carry their bytes


@dataclass(frozen=True)
class MessagePlan:
    """One Discord message: the JSON payload and the files uploaded with it, in ``attachments`` order."""

    payload: dict[str, Any]
    files: tuple[FilePart, ...] = ()


def smaller(limits: Limits) -> Limits:
    """Limits for a re-render after Discord answered 413 / 40005: half the file and request size.

    Never below 256 KiB (and never above what was there), so repeated 413s converge instead of
    splitting a file into thousands of parts.
    """

    def half(value: int) -> int:
        return max(min(value, _SMALLEST_FILE), value // 2)

    return dataclasses.replace(
        limits,
        max_attachment_bytes=half(limits.max_attachment_bytes),
        max_request_bytes=half(limits.max_request_bytes),
    )
