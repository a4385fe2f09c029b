"""Reading ``POST /v1/results`` bodies: JSON or multipart, bounded before they reach memory.

``BodyLimitMiddleware`` refuses a request whose ``Content-Length`` is over the limit before a byte
of the body is read, and stops a chunked upload the moment it crosses the limit. The parsers turn
a body into a validated ``NewResult`` or an ``ApiError`` that names the bad field.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.destinations import InvalidDestination, build_target
from app.errors import ApiError, error_response, invalid, validation_details
from app.secrets import Cipher
from app.settings import Settings
from schemas.api import EMPTY_FILE, DestinationIn, ResultIn, clean_filename
from schemas.bounds import MAX_ATTACHMENTS, MAX_NESTING, check_body, check_media_type
from schemas.embeds import attachment_refs
from schemas.tables import DEFAULT_TENANT
from schemas.targets import Target
from store.keys import Producer
from store.views import NewAttachment, NewResult

_FILE_PART = re.compile(r"^files\[(\d{1,4})\]$")
MAX_FORM_PARTS = 1000
#: Files one message may carry besides its JSON: Discord's 25 MiB request, less the renderer's reserve.
MAX_EMBED_FILE_BYTES = 24 * 1024 * 1024


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a streamed body crosses the limit."""


class BodyLimitMiddleware:
    """413 for bodies over ``limit`` bytes, decided before the body is read into memory."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "too_large", f"the request body is over {self.limit} bytes "
                                  "(RELAY_MAX_RESULT_BYTES)", {"limit": self.limit}, {"Connection": "close"})
        await response(scope, receive, send)


# hashlib lets go of the GIL for an update of 2048 bytes or more. On the event loop that turned a
# few microseconds of hashing into a wait for the writer thread to hand the GIL back (a third of the
# loop's time under ingest load), so the request hash is fed in smaller pieces.
_HASH_PIECE = 2047


def sha256_on_loop(data: bytes) -> str:
    """``hashlib.sha256(data).hexdigest()``, computed without letting go of the GIL."""
    digest = hashlib.sha256()
    view = memoryview(data)
    for start in range(0, len(view), _HASH_PIECE):
        digest.update(view[start:start + _HASH_PIECE])
    return digest.hexdigest()


def _canonical_hash(payload: Any, files: list[tuple[str, str, str]]) -> str:
    blob = json.dumps({"payload": payload, "files": files}, sort_keys=True, separators=(",", ":"))
    return sha256_on_loop(blob.encode())


def parse_json_object(raw: bytes | str, where: str) -> dict[str, Any]:
    """A JSON object within the relay's bounds (``schemas.bounds``), else a 400/422 naming the field."""
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = f"line {exc.lineno} column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else (
            "is not UTF-8")
        raise ApiError(400, "invalid_json", f"{where} is not valid JSON ({detail})", {"field": where}) from None
    except RecursionError:
        # The decoder recurses per level: a body this deep is refused before any field is known.
        raise invalid([{"field": where, "message": f"is nested deeper than {MAX_NESTING} levels"}]) from None
    if not isinstance(payload, dict):
        raise invalid([{"field": where, "message": "must be a JSON object"}], status=400)
    if (problem := check_body(payload, raw)) is not None:
        raise invalid([{"field": problem[0], "message": problem[1]}])
    return payload


def _validate(payload: dict[str, Any]) -> ResultIn:
    try:
        return ResultIn.model_validate(payload)
    except ValidationError as exc:
        raise invalid(validation_details(exc)) from None


def build_targets(route: list[DestinationIn], settings: Settings, cipher: Cipher, field: str = "route", *,
                  tenant: str = DEFAULT_TENANT) -> list[Target]:
    """Validate a route against the relay's configuration (URL allow-list, bot token).

    A destination named twice (however its URL was written) is kept once, at its first position:
    one result is delivered to one destination once.
    """
    targets: dict[tuple[str, str | None, str | None], Target] = {}
    try:
        for i, dest in enumerate(route):
            target = build_target(dest, field=f"{field}.{i}", api_base=settings.discord_api_base, cipher=cipher,
                                  bot_token_configured=settings.discord_bot_token is not None, tenant=tenant)
            # Two threads of one webhook are two destinations that share one key (and rate limit).
            targets.setdefault((target.key, target.stored.get("thread_id"), target.stored.get("thread_name")), target)
    except InvalidDestination as exc:
        raise invalid([{"field": exc.field, "message": exc.reason}]) from None
    return list(targets.values())


async def read_result(request: Request, *, producer: Producer, settings: Settings, cipher: Cipher) -> NewResult:
    """Parse and validate the body of ``POST /v1/results`` into what the store keeps."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    files: list[NewAttachment] = []
    if content_type == "multipart/form-data":
        payload, files, file_digests = await _read_multipart(request, settings)
    elif content_type in ("application/json", ""):
        payload, file_digests = parse_json_object(await request.body(), "body"), []
    else:
        raise ApiError(415, "unsupported_media_type",
                       "send application/json or multipart/form-data with a payload_json part")
    result = _validate(payload)
    if len(result.attachments) + len(files) > MAX_ATTACHMENTS:
        raise invalid([{"field": "attachments", "message": f"at most {MAX_ATTACHMENTS} files per result "
                        f"(inline and multipart together); this one has {len(result.attachments) + len(files)}"}])
    inline = [NewAttachment(a.filename, a.content_type, a.decoded()) for a in result.attachments]
    embeds = [e.stored() for e in result.embeds]
    check_embed_files(embeds, [*inline, *files], settings.max_attachment_bytes)
    idem = request.headers.get("idempotency-key")
    if idem is not None and not 1 <= len(idem) <= 255:
        raise invalid([{"field": "Idempotency-Key", "message": "must be 1 to 255 characters"}], status=400)
    return NewResult(
        key_id=producer.key_id, tenant=producer.tenant, idempotency_key=idem,
        request_hash=_canonical_hash(payload, file_digests),
        workflow_id=result.workflow_id, title=result.title, summary=result.summary, body=result.body,
        fields=[f.model_dump() for f in result.fields], url=result.url, color=result.color, level=result.level,
        metadata=result.metadata, mode=result.mode, silent=result.silent,
        targets=build_targets(result.route, settings, cipher, tenant=producer.tenant),
        attachments=[*inline, *files], content=result.content, embeds=embeds,
        discord_user_ids=result.discord_user_ids,
    )


def check_embed_files(embeds: list[dict[str, Any]], files: Sequence[NewAttachment], max_file_bytes: int) -> None:
    """422 unless every ``attachment://`` URL names a file of this result that can travel with its embed.

    Discord resolves ``attachment://name`` only against the files of the same message, so the file
    must exist, be small enough to go whole (a file split into ``.001`` parts has another name), and
    an embed's files together must fit in one request.
    """
    by_name: dict[str, int] = {}
    for attachment in files:
        by_name.setdefault(attachment.filename, len(attachment.data))
    problems = []
    for i, embed in enumerate(embeds):
        used: dict[str, int] = {}
        for path, name in attachment_refs(embed):
            where = f"embeds.{i}.{path}"
            if name not in by_name:
                known = ", ".join(sorted(by_name)[:10]) or "none"
                problems.append({"field": where, "message": f"attachment://{name} names no file of this result "
                                 f"(its files: {known})"})
            elif by_name[name] > max_file_bytes:
                problems.append({"field": where, "message": f"attachment://{name} is {by_name[name]} bytes, over the "
                                 f"{max_file_bytes} one file may be (RELAY_MAX_ATTACHMENT_BYTES); a file shown in an "
                                 "embed cannot be split"})
            else:
                used[name] = by_name[name]
        if sum(used.values()) > MAX_EMBED_FILE_BYTES:
            problems.append({"field": f"embeds.{i}", "message": f"its attachment:// files total {sum(used.values())} "
                             f"bytes, more than one Discord message carries ({MAX_EMBED_FILE_BYTES})"})
    if problems:
        raise invalid(problems)


async def _read_multipart(request: Request, settings: Settings) -> tuple[Any, list[NewAttachment], list[Any]]:
    form = await request.form(max_files=MAX_FORM_PARTS, max_fields=MAX_FORM_PARTS,
                              max_part_size=settings.max_result_bytes)
    try:
        raw = form.get("payload_json")
        if raw is None:
            raise invalid([{"field": "payload_json", "message": "is required in a multipart request"}], status=400)
        text = raw if isinstance(raw, str) else (await raw.read()).decode("utf-8", "replace")
        payload = parse_json_object(text, "payload_json")
        numbered: list[tuple[int, UploadFile]] = []
        for name, value in form.multi_items():
            if name == "payload_json":
                continue
            match = _FILE_PART.match(name)
            if match is None or not isinstance(value, UploadFile):
                raise invalid([{"field": name, "message": "unexpected form part; files go in files[0], files[1], …"}],
                              status=400)
            numbered.append((int(match.group(1)), value))
        files, digests = [], []
        for n, upload in sorted(numbered, key=lambda item: item[0]):
            if not upload.filename:
                raise invalid([{"field": f"files[{n}]", "message": "needs a filename in Content-Disposition"}],
                              status=400)
            try:
                filename = clean_filename(upload.filename)
                ctype = check_media_type(upload.content_type or "application/octet-stream")
            except ValueError as exc:
                raise invalid([{"field": f"files[{n}]", "message": str(exc)}]) from None
            data = await upload.read()
            if not data:
                raise invalid([{"field": f"files[{n}]", "message": f"'{filename}' {EMPTY_FILE}"}])
            files.append(NewAttachment(filename, ctype, data))
            digests.append((filename, ctype, hashlib.sha256(data).hexdigest()))
        return payload, files, digests
    finally:
        await form.close()
