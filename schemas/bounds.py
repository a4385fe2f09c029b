"""Bounds on what the API accepts, so that everything it accepts can be stored and served back.

A value the relay takes with a ``202`` must read back through every ``GET`` and the admin page on
SQLite and PostgreSQL alike. That rules out, anywhere in a JSON body:

- nesting deeper than ``MAX_NESTING`` levels (recursive encoders and validators give up long before
  a hostile body ends, and a 1,000-level body must be a 422, not a ``RecursionError``);
- NUL characters (PostgreSQL's ``text`` and ``json`` cannot hold them) and lone UTF-16 surrogates
  (no encoder can write them out as UTF-8).

Media types and filenames end up in response headers, so they must be plain printable text.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

MAX_NESTING = 32
"""Levels of objects/arrays a JSON value may hold: ``{}`` is one, ``{"a": []}`` two."""
MAX_ATTACHMENTS = 100
"""Files per result, inline (``attachments``) and multipart (``files[n]``) together."""

_TOKEN = r"[A-Za-z0-9!#$&^_.+-]{1,127}"
_MEDIA_TYPE = re.compile(rf'^{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|"[^"\\\x00-\x1f\x7f]*"))*$')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
_BAD_TEXT = re.compile(r"[\x00\ud800-\udfff]")
TEXT_PATTERN = r"^[^\u0000]*$"
"""Every string of a body, as a JSON Schema pattern: no NUL. (Unpaired surrogates are refused too,
but a surrogate range in a pattern is one that schema-driven generators cannot use, and JSON
text from a well-behaved encoder never carries one: the schema's descriptions say it instead.)"""
MEDIA_TYPE_PATTERN = rf'^{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|"[^"\\\x00-\x1f\x7f]*"))*$'
FILENAME_PATTERN = r"^[^\u0000-\u001f\u007f]+$"  # lone surrogates too are refused (see TEXT_PATTERN)
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def json_problem(value: Any, limit: int = MAX_NESTING) -> tuple[str, str] | None:
    """``(path, reason)`` of the first thing in ``value`` the relay cannot keep, or None.

    Iterative, so a deep value is measured without recursing; the path is dotted from ``value``
    (``a.0.b``), empty for ``value`` itself.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if _BAD_TEXT.search(item):
                return path, "must not contain NUL characters or unpaired surrogates"
            continue
        if not isinstance(item, dict | list):
            continue
        if depth + 1 > limit:
            return path, f"is nested deeper than {limit} levels"
        pairs = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in pairs:
            if isinstance(key, str) and _BAD_TEXT.search(key):
                return path, "has a key with NUL characters or unpaired surrogates"
            stack.append((child, f"{path}.{key}" if path else str(key), depth + 1))
    return None


def check_body(payload: dict[str, Any], raw: bytes | str | None = None) -> tuple[str, str] | None:
    """``json_problem`` of each top-level field of a body, so that each field gets ``MAX_NESTING`` levels.

    ``raw``, the JSON text ``payload`` was decoded from, lets most bodies skip the walk. In a UTF-8
    text (no NUL byte: UTF-16 and UTF-32, which ``json.loads`` also reads, always have them) a NUL
    can only arrive as a ``\\u`` escape, because the decoder refuses raw control characters, and an
    unpaired surrogate as a ``\\u`` escape or as the bytes ``ED A0``-``ED BF`` (which ``json.loads``
    decodes with ``surrogatepass``). A text with no more brackets than ``MAX_NESTING`` cannot nest
    deeper. Brackets, backslashes and ``ED`` bytes of valid text only send a body the long way.
    """
    if raw is not None:
        text = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
        if (b"\\u" not in text and b"\x00" not in text and b"\xed" not in text
                and text.count(b"[") + text.count(b"{") <= MAX_NESTING):
            return None
    for name, value in payload.items():
        if _BAD_TEXT.search(name):
            return "body", "has a key with NUL characters or unpaired surrogates"
        found = json_problem(value)
        if found is not None:
            return f"{name}.{found[0]}" if found[0] else name, found[1]
    return None


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    found = json_problem(value)
    if found is not None:
        path, reason = found
        raise ValueError(f"{path + ' ' if path else ''}{reason}")
    return value


BoundedJson = Annotated[dict[str, Any], AfterValidator(_bounded)]
"""A free-form object (``metadata``) within the bounds above."""


def _iso_only(value: object) -> object:
    # pydantic would also read 0 or "0.5" as seconds since 1970; the contract says RFC 3339 text.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be an RFC 3339 date-time such as 2026-11-23T10:00:00Z")
    return value


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_only)]
"""A date-time written as RFC 3339 text (what the schema's ``format: date-time`` promises)."""


def _integral(value: Any) -> Any:
    """JSON Schema's ``integer`` includes ``60.0``: take an integral float as the int it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An embed colour: an integer as JSON Schema means it (``60`` or ``60.0``), never a string or a bool.
Color = Annotated[int, Field(strict=True, ge=0, le=0xFFFFFF), BeforeValidator(_integral)]


def check_media_type(value: str) -> str:
    """``value`` if it is a valid media type (``type/subtype[; param=value]``), else ``ValueError``."""
    if not _MEDIA_TYPE.match(value):
        raise ValueError("must be a media type such as text/plain or application/json; charset=utf-8, "
                         "without control characters")
    return value


def check_filename(value: str) -> str:
    """``value`` unless it holds control characters (it is sent back in ``Content-Disposition``)."""
    if _CONTROL.search(value) or _BAD_TEXT.search(value):
        raise ValueError("must not contain control characters")
    return value
