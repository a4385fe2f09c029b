"""Reading back what a Discord user would see, from the emulator's records."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from delivery.render import FilePart, MessagePlan, reassemble_body


def as_plans(messages: Sequence[Any]) -> list[MessagePlan]:
    """Recorded messages as the plans that produced them (files with their bytes)."""
    return [
        MessagePlan(payload=m.original_payload, files=tuple(
            FilePart(filename=f.filename, content_type=f.content_type or "", attachment_index=None, offset=0,
                     length=f.size, data=f.data) for f in m.files))
        for m in messages
    ]


def body_seen(messages: Sequence[Any]) -> str:
    """The result body as a user reads it back (embeds, or the result.md file)."""
    return reassemble_body(as_plans(messages))


def file_seen(messages: Sequence[Any], filename: str) -> bytes:
    """An attachment as a user rejoins it: the file itself, or its numbered parts in order."""
    parts = sorted((f.filename, f.data) for m in messages for f in m.files
                   if f.filename == filename or f.filename.startswith(filename + "."))
    return b"".join(data for _, data in parts)


def sha(data: bytes) -> str:
    """sha256 hex."""
    return hashlib.sha256(data).hexdigest()


def titles(messages: Sequence[Any]) -> list[str]:
    """The first embed title of each message (results in tests carry unique titles)."""
    return [(m.original_payload.get("embeds") or [{}])[0].get("title", "") for m in messages]
