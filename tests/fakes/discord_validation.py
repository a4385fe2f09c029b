"""Validate a message payload the way Discord does, and fail with Discord's exact error bodies.

The emulator is only useful if it is at least as strict as discord.com: a payload it accepts must
be one Discord would accept, or the relay's renderer could pass every test and still fail in
production. So the shape rules come from Discord's own OpenAPI document (never hand-copied), and
the rules a schema cannot express (the 6,000-character embed total, "empty message", blank field
names, file counts and sizes) are added on top, each answering with the status, code and nested
``errors`` tree that Discord sends.

Pure: no I/O apart from reading the OpenAPI file once, so it is tested without a server.

    DiscordValidationError(status, body)
      400 {"code": 50035, "message": "Invalid Form Body", "errors": {...}}
      400 {"code": 50006, "message": "Cannot send an empty message"}
      400 {"code": 30015, "message": "Maximum number of attachments in a message reached (10)"}
      413 {"code": 40005, "message": "Request entity too large"}
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

__all__ = [
    "DiscordLimits",
    "DiscordValidationError",
    "MessageKind",
    "embed_characters",
    "utf16_len",
    "validate_message",
    "validate_request",
]

MessageKind = Literal["webhook", "interaction", "channel", "edit"]

MIB = 1024 * 1024

#: Which OpenAPI schema describes each kind of request body.
_SCHEMA_FOR_KIND: dict[str, str] = {
    "webhook": "IncomingWebhookRequestPartial",
    "interaction": "IncomingWebhookRequestPartial",
    "channel": "MessageCreateRequest",
    "edit": "IncomingWebhookUpdateRequestPartial",
}

_FILE_FIELD = re.compile(r"^files\[(\d+)\]$")


@dataclass(frozen=True)
class DiscordLimits:
    """The size limits the emulator enforces; defaults are Discord's documented ones.

    ``max_file_bytes`` is configurable because Discord's per-file limit changed (8 MiB, then
    10 MiB) and boosted guilds allow more: tests of the relay's file splitting set it low.
    """

    max_file_bytes: int = 10 * MIB
    max_request_bytes: int = 25 * MIB
    max_files: int = 10
    max_content: int = 2000
    max_embed_total: int = 6000


class DiscordValidationError(Exception):
    """Discord refused the payload: ``status`` and ``body`` are exactly what it would answer."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('code')}: {body.get('message')}")
        self.status = status
        self.body = body


def utf16_len(text: str) -> int:
    """Length as Discord counts it: UTF-16 code units, so an emoji outside the BMP counts 2.

    Being stricter than Python's ``len`` means a renderer that passes here never overflows
    on Discord, whichever way Discord happens to count a given character.
    """
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def embed_characters(embed: Mapping[str, Any]) -> int:
    """Characters an embed contributes to the 6,000 per-message total (Discord's list of fields)."""
    total = 0
    for key in ("title", "description"):
        value = embed.get(key)
        if isinstance(value, str):
            total += utf16_len(value)
    for field in embed.get("fields") or ():
        if isinstance(field, Mapping):
            for key in ("name", "value"):
                value = field.get(key)
                if isinstance(value, str):
                    total += utf16_len(value)
    for holder, key in (("footer", "text"), ("author", "name")):
        part = embed.get(holder)
        if isinstance(part, Mapping) and isinstance(part.get(key), str):
            total += utf16_len(part[key])
    return total


# --------------------------------------------------------------------------- schema loading


def spec_path() -> Path:
    """Where Discord's OpenAPI document lives: ``$DISCORD_OPENAPI_SPEC``, else the copy vendored
    next to this module (``discord_api_spec/``, MIT, from discord/discord-api-spec; see its VERSION),
    so a clone of the repository validates without anything beside it."""
    override = os.environ.get("DISCORD_OPENAPI_SPEC")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "discord_api_spec" / "openapi.json"


@lru_cache(maxsize=1)
def _components(limits_content: int) -> dict[str, Any]:
    doc = json.loads(spec_path().read_text(encoding="utf-8"))
    components = copy.deepcopy(doc["components"])
    # The spec allows 4000 characters for channel messages (Nitro users); bots get 2000,
    # and the relay posts as a bot. One configurable limit for every kind keeps them in step.
    for name in set(_SCHEMA_FOR_KIND.values()):
        components["schemas"][name]["properties"]["content"]["maxLength"] = limits_content
    # Discord takes snowflakes as strings or integers (discord.py sends attachment ids as ints);
    # the spec only spells the string form.
    components["schemas"]["SnowflakeType"] = {
        "type": ["string", "integer"],
        "pattern": "^(0|[1-9][0-9]*)$",
        "minimum": 0,
        "format": "snowflake",
    }
    return components


def _utf16_max_length(validator: Any, limit: int, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and utf16_len(instance) > limit:
        yield ValidationError(f"{instance!r} is too long")


def _utf16_min_length(validator: Any, limit: int, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and utf16_len(instance) < limit:
        yield ValidationError(f"{instance!r} is too short")


_UTF16Validator = jsonschema.validators.extend(
    Draft202012Validator, {"maxLength": _utf16_max_length, "minLength": _utf16_min_length}
)

_FORMATS = FormatChecker(formats=())


@_FORMATS.checks("uri")
def _is_discord_url(value: object) -> bool:
    # Discord only takes http(s) links, and attachment:// references to files of the message.
    if not isinstance(value, str):
        return True
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    if parts.scheme == "attachment":
        return bool(parts.netloc or parts.path)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@_FORMATS.checks("date-time")
def _is_iso_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@lru_cache(maxsize=8)
def _validator(kind: str, limits_content: int) -> Any:
    """Compile once per kind: building a validator walks the whole document, sending does not."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": _components(limits_content),
        "$ref": f"#/components/schemas/{_SCHEMA_FOR_KIND[kind]}",
    }
    return _UTF16Validator(schema, format_checker=_FORMATS)


@lru_cache(maxsize=16)
def _request_validator(method: str, path: str) -> Any:
    """The validator of one operation's JSON request body (``method`` ``""``: ``path`` names a
    component schema instead), straight from the OpenAPI document."""
    if method:
        doc = json.loads(spec_path().read_text(encoding="utf-8"))
        body = doc["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]
    else:
        body = {"$ref": f"#/components/schemas/{path}"}
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": _components(2000), **body}
    return _UTF16Validator(schema, format_checker=_FORMATS)


def validate_request(method: str, path: str, payload: Any) -> None:
    """Raise :class:`DiscordValidationError` (400/50035 with Discord's ``errors`` tree) unless
    ``payload`` is a body Discord's OpenAPI document accepts for ``method path`` (a spec path,
    e.g. ``/applications/{application_id}/commands``); with ``method`` ``""``, ``path`` is the
    name of a component schema (``PongInteractionCallbackRequest``)."""
    errors: dict[str, Any] = {}
    for error in _request_validator(method, path).iter_errors(payload):
        for where, discord_error in _leaf_errors(error):
            _nest(errors, where, discord_error)
    if errors:
        raise DiscordValidationError(400, {"code": 50035, "message": "Invalid Form Body", "errors": errors})


# --------------------------------------------------------------------------- error mapping

_TYPE_ERRORS = {
    "string": ("BASE_TYPE_STRING", "Could not interpret {value} as string."),
    "integer": ("NUMBER_TYPE_COERCE", "Value {value} is not int."),
    "number": ("NUMBER_TYPE_COERCE", "Value {value} is not a valid number."),
    "boolean": ("BASE_TYPE_BOOLEAN", "Must be either true or false."),
    "array": ("LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"),
    "object": ("DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"),
}


def _err(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _leaf_errors(error: ValidationError) -> Iterator[tuple[tuple[str, ...], dict[str, str]]]:
    """Turn one jsonschema error into (path, Discord error) pairs, looking inside unions."""
    path = tuple(str(p) for p in error.absolute_path)
    kind = error.validator
    value = error.validator_value
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if kind in ("oneOf", "anyOf") and error.context:
        yield from _union_errors(error, path)
    elif kind == "maxLength" or kind == "maxItems":
        yield path, _err("BASE_TYPE_MAX_LENGTH", f"Must be {value} or fewer in length.")
    elif kind == "minLength" or kind == "minItems":
        upper = schema.get("maxLength", schema.get("maxItems"))
        if upper is not None:
            yield path, _err("BASE_TYPE_BAD_LENGTH", f"Must be between {value} and {upper} in length.")
        else:
            yield path, _err("BASE_TYPE_MIN_LENGTH", f"Must be {value} or more in length.")
    elif kind == "required":
        instance = error.instance if isinstance(error.instance, Mapping) else {}
        for name in value:
            if name not in instance:
                yield (*path, name), _err("BASE_TYPE_REQUIRED", "This field is required")
    elif kind == "type":
        wanted = [t for t in ([value] if isinstance(value, str) else value) if t != "null"]
        code, template = _TYPE_ERRORS.get(wanted[0] if wanted else "", ("BASE_TYPE_INVALID", "Invalid value."))
        yield path, _err(code, template.format(value=json.dumps(error.instance)[:100]))
    elif kind in ("pattern", "minimum") and schema.get("format") == "snowflake":
        yield path, _err("NUMBER_TYPE_COERCE", f'Value "{error.instance}" is not snowflake.')
    elif kind == "maximum":
        yield path, _err("NUMBER_TYPE_MAX", f"int value should be less than or equal to {value}.")
    elif kind == "minimum":
        yield path, _err("NUMBER_TYPE_MIN", f"int value should be greater than or equal to {value}.")
    elif kind == "format" and value == "uri":
        yield path, _err("URL_TYPE_INVALID_URL", "Not a well formed URL.")
    elif kind == "format" and value == "date-time":
        yield path, _err("DATE_TIME_TYPE_PARSE", f"Could not parse {error.instance}. Should be ISO8601.")
    elif kind in ("enum", "const"):
        yield path, _err("BASE_TYPE_CHOICES", f"Value must be one of {value!r}.")
    elif kind == "uniqueItems":
        yield path, _err("BASE_TYPE_INVALID", "Items must be unique.")
    else:
        yield path, _err("BASE_TYPE_INVALID", "Invalid value.")


def _union_errors(error: ValidationError, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict[str, str]]]:
    # Nullable objects are spelled oneOf[{type: null}, {$ref}]: the null branch's complaint
    # is noise, the other branch holds the real reason.
    branches: dict[int, list[ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    options = error.validator_value
    real = {i: subs for i, subs in branches.items() if options[i] != {"type": "null"}}
    # Prefer the branches whose type fits the value (a 26-char nonce is a too-long string,
    # not "neither an int nor a string").
    fitting = {i: subs for i, subs in real.items() if not any(s.validator == "type" and not s.path for s in subs)}
    if fitting:
        real = fitting
    if all(set(options[i]) <= {"const", "title", "description"} for i in real):
        choices = [options[i].get("const") for i in real]
        yield path, _err("BASE_TYPE_CHOICES", f"Value must be one of {choices!r}.")
        return
    if len(real) == 1:
        for sub in next(iter(real.values())):
            yield from _leaf_errors(sub)
        return
    yield path, _err("UNION_TYPE_CHOICES", "Value did not match any of the allowed types.")


def _nest(errors: dict[str, Any], path: Sequence[str], error: dict[str, str]) -> None:
    node = errors
    for key in path:
        node = node.setdefault(key, {})
    node.setdefault("_errors", []).append(error)


# --------------------------------------------------------------------------- cross-field rules


def _blank(value: object) -> bool:
    return not isinstance(value, str) or not value.strip()


def _embed_has_content(embed: Mapping[str, Any]) -> bool:
    if not _blank(embed.get("title")) or not _blank(embed.get("description")):
        return True
    if embed.get("fields"):
        return True
    for holder, key in (("footer", "text"), ("author", "name"), ("image", "url"), ("thumbnail", "url")):
        part = embed.get(holder)
        if isinstance(part, Mapping) and not _blank(part.get(key)):
            return True
    return False


def _cross_field_errors(
    payload: Mapping[str, Any], file_ids: set[int], kind: str, limits: DiscordLimits
) -> Iterator[tuple[tuple[str, ...], dict[str, str]]]:
    embeds = payload.get("embeds")
    if isinstance(embeds, list):
        dicts = [e for e in embeds if isinstance(e, Mapping)]
        if sum(embed_characters(e) for e in dicts) > limits.max_embed_total:
            yield (
                ("embeds",),
                _err("MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {limits.max_embed_total}"),
            )
        for i, embed in enumerate(embeds):
            if not isinstance(embed, Mapping):
                continue
            fields = embed.get("fields")
            for j, field in enumerate(fields if isinstance(fields, list) else ()):
                if not isinstance(field, Mapping):
                    continue
                for key in ("name", "value"):
                    if key in field and _blank(field[key]):
                        yield (
                            ("embeds", str(i), "fields", str(j), key),
                            _err("BASE_TYPE_REQUIRED", "This field is required"),
                        )
            # An embed with nothing visible is a renderer bug even when the message has content.
            if not _embed_has_content(embed) and _has_other_content(payload, file_ids):
                yield ("embeds", str(i), "description"), _err("BASE_TYPE_REQUIRED", "This field is required")
    attachments = payload.get("attachments")
    if kind != "edit" and isinstance(attachments, list):
        for i, attachment in enumerate(attachments):
            ref = attachment.get("id") if isinstance(attachment, Mapping) else None
            try:
                found = int(ref) in file_ids  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue  # the schema already complained about the id's type
            if not found:
                yield ("attachments", str(i), "id"), _err("ATTACHMENT_NOT_FOUND", "Attachment data not found")


def _has_other_content(payload: Mapping[str, Any], file_ids: set[int]) -> bool:
    if not _blank(payload.get("content")) or file_ids:
        return True
    return bool(payload.get("components") or payload.get("sticker_ids") or payload.get("poll"))


def _is_empty(payload: Mapping[str, Any], file_ids: set[int]) -> bool:
    if _has_other_content(payload, file_ids):
        return False
    embeds = payload.get("embeds")
    return not (isinstance(embeds, list) and any(isinstance(e, Mapping) and _embed_has_content(e) for e in embeds))


def _file_ids(files: Iterable[tuple[str, int]]) -> set[int]:
    ids: set[int] = set()
    for position, (name, _size) in enumerate(files):
        match = _FILE_FIELD.match(name)
        ids.add(int(match.group(1)) if match else position)
    return ids


# --------------------------------------------------------------------------- entry point


def validate_message(
    payload: Mapping[str, Any],
    files: Sequence[tuple[str, int]] = (),
    *,
    kind: MessageKind = "webhook",
    limits: DiscordLimits | None = None,
) -> None:
    """Raise :class:`DiscordValidationError` when Discord would refuse this message.

    ``files`` are ``(form field name, size in bytes)`` of the uploaded parts, e.g.
    ``[("files[0]", 1234)]``; the ``n`` of ``files[n]`` is what ``attachments[].id`` refers to.
    ``kind`` picks the schema: ``webhook``/``interaction`` (execute webhook / follow-up),
    ``channel`` (bot message) or ``edit`` (the message as it stands after a PATCH, where the
    kept attachments count as files). Checks run in Discord's order: size at the edge first
    (413), then the attachment count, then the form body, then emptiness.
    """
    limits = limits or DiscordLimits()
    total = 0
    for _name, size in files:
        total += size
        if size > limits.max_file_bytes:
            raise DiscordValidationError(413, {"code": 40005, "message": "Request entity too large"})
    if total > limits.max_request_bytes:
        raise DiscordValidationError(413, {"code": 40005, "message": "Request entity too large"})
    if len(files) > limits.max_files:
        raise DiscordValidationError(
            400,
            {"code": 30015, "message": f"Maximum number of attachments in a message reached ({limits.max_files})"},
        )
    if not isinstance(payload, Mapping):
        raise DiscordValidationError(400, {"code": 50109, "message": "The request body contains invalid JSON."})
    errors: dict[str, Any] = {}
    for error in _validator(kind, limits.max_content).iter_errors(payload):
        for path, discord_error in _leaf_errors(error):
            _nest(errors, path, discord_error)
    file_ids = _file_ids(files)
    for path, discord_error in _cross_field_errors(payload, file_ids, kind, limits):
        _nest(errors, path, discord_error)
    if errors:
        raise DiscordValidationError(400, {"code": 50035, "message": "Invalid Form Body", "errors": errors})
    if _is_empty(payload, file_ids):
        raise DiscordValidationError(400, {"code": 50006, "message": "Cannot send an empty message"})
