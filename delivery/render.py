"""Turn a stored result into the Discord messages that deliver it: pure functions, no I/O.

The store builds a :class:`RenderInput`; :func:`render` returns an ordered list of
:class:`MessagePlan`, each valid by every Discord limit, and the delivery engine sends them in
order, recording each message id so a retry resumes at the first unsent plan. After a 413 the
engine calls ``render(result, smaller(limits))`` and resumes from there.

Layout, chosen for the fewest messages with the reading order title → summary → fields → body:

* A result's Discord-native ``content`` and ``embeds`` come first, laid out by
  :mod:`delivery.native` (sent as they are, split only where Discord's limits make it); the
  relay's own embeds follow, starting in the last of those messages when it has room.
* The first embed carries author (workflow id), title (with the level's icon), url, the summary
  and the fields; a summary or a field list too long for it flows into further embeds.
* The body follows in embeds of its own, each with a ``(k/n)`` footer; embeds and messages are
  filled up to 4,096 characters per description and 6,000 per message before a new one starts.
  The footer marker is the only thing :func:`reassemble_body` needs to find the body again; a
  body in one piece gets no ``(1/1)``, only an invisible ZWSP footer.
* A body that would need more than ``Limits.max_body_messages`` messages is sent as a
  ``result.md`` attachment instead (split into numbered parts when large), with a field saying so.
* Producer attachments larger than a file may be are sent as ``name.001``, ``name.002``, … byte
  ranges (:class:`FilePart` holds offsets, not bytes), with a field telling how to rejoin them
  and the sha256 of the whole. Files go into the earliest message with room (10 files and
  ``max_request_bytes`` per message), then into file-only messages.

Lengths are counted in UTF-16 units (see :func:`delivery.split.utf16_len`); the text codec that
survives Discord's whitespace trimming and reopens split code blocks is in
:mod:`delivery.split`. ZWSP (U+200B) is the only character the renderer adds to user text: as a
whitespace guard there, and as the placeholder for a field name or value that is blank, which
Discord refuses.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from typing import Any

from delivery.native import layout_native
from delivery.split import ZWSP, Cutter, decode_piece, discord_trim, truncate, utf16_len
from schemas.messages import (
    AttachmentRef,
    Destination,
    Field,
    FilePart,
    Limits,
    MessagePlan,
    RenderInput,
    smaller,
)

__all__ = [
    "ALLOWED_PAYLOAD_KEYS",
    "AttachmentRef",
    "Destination",
    "Field",
    "FilePart",
    "Limits",
    "MessagePlan",
    "RenderInput",
    "plan_size",
    "reassemble_body",
    "render",
    "smaller",
]

#: Payload keys each destination's endpoint accepts. The renderer emits a subset; ``username``
#: and ``avatar_url`` belong to webhooks only, and a DM's ``nonce``/``enforce_nonce`` are the
#: transport's business (they must stay stable across retries of one message).
ALLOWED_PAYLOAD_KEYS: dict[str, frozenset[str]] = {
    "webhook": frozenset({"content", "embeds", "allowed_mentions", "flags", "attachments", "username", "avatar_url"}),
    "interaction": frozenset({"content", "embeds", "allowed_mentions", "flags", "attachments"}),
    "dm": frozenset({"content", "embeds", "allowed_mentions", "flags", "attachments"}),
}

LEVEL_COLORS = {"info": 0x5865F2, "success": 0x57F287, "warning": 0xFEE75C, "error": 0xED4245}
LEVEL_ICONS = {"info": "ℹ️", "success": "✅", "warning": "⚠️", "error": "❌"}
EMPTY_RESULT = "(empty result)"
BODY_FILENAME = "result.md"
#: Continuation messages do not notify: a result in five DMs should buzz a phone once.
SUPPRESS_NOTIFICATIONS = 1 << 12
_MIN_PIECE = 64  # do not start a body embed in the few characters a message has left
_REQUEST_OVERHEAD = 1024  # multipart preamble, payload_json part header, closing boundary
_BODY_MARKER = re.compile(r"\((\d+)/(\d+)\)")
_BODY_FILE = re.compile(re.escape(BODY_FILENAME) + r"(?:\.\d{3,})?")
#: An embed with one of these keys shows something (relay embeds never carry images; native ones may).
_VISIBLE = frozenset({"title", "description", "fields", "author", "footer", "image", "thumbnail"})
_URL = re.compile(r"https?://[^\s/?#]+\S*")
_CONTENT_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+")


# --------------------------------------------------------------------------- public helpers


def plan_size(plan: MessagePlan) -> int:
    """Upper estimate of the multipart request's bytes, as the renderer budgets it.

    The JSON is measured ASCII-escaped with default separators, the largest encoding a
    transport might use, so the estimate holds whichever it picks.
    """
    return _json_size(plan.payload) + _REQUEST_OVERHEAD + sum(p.length + _file_overhead(p) for p in plan.files)


def reassemble_body(plans: list[MessagePlan]) -> str:
    """Recover the exact body from rendered plans: the inverse that proves rendering lossless.

    The body is either the ``result.md`` file (its parts' bytes, concatenated) or the
    descriptions of the embeds with a ``(k/n)`` footer, each decoded by
    :func:`delivery.split.decode_piece`. Works equally on descriptions Discord has trimmed.
    """
    data = [p.data for plan in plans for p in plan.files if p.data is not None and _BODY_FILE.fullmatch(p.filename)]
    if data:
        return b"".join(data).decode("utf-8", "surrogatepass")
    pieces = []
    for plan in plans:
        for embed in plan.payload.get("embeds", ()):
            footer = (embed.get("footer") or {}).get("text", "")
            if (footer == ZWSP or _BODY_MARKER.fullmatch(discord_trim(footer))) and "description" in embed:
                pieces.append(decode_piece(embed["description"]))
    return "".join(pieces)


def render(
    result: RenderInput, limits: Limits = Limits(), *, destination: Destination = "webhook"
) -> list[MessagePlan]:
    """Render ``result`` into the fewest messages that are each valid by every Discord limit.

    Deterministic: the same input and limits always give the same plans, which is what lets a
    retry resume at "message 3 of 5" after a restart.
    """
    if destination not in ALLOWED_PAYLOAD_KEYS:
        raise ValueError(f"unknown destination {destination!r}")
    body = result.body or ""
    size = utf16_len(body) if body else 0
    # Cheap first: a body longer than max_body_messages full messages cannot fit.
    as_file = bool(body) and size > limits.max_body_messages * limits.embed_total
    digits = len(str(size // 1000 + 1))
    while True:
        layout = _Layout(result, limits, body_as_file=as_file, marker_digits=digits)
        if not as_file and layout.body_messages > limits.max_body_messages:
            as_file = True
        elif len(layout.body) >= 10**digits:
            digits = len(str(len(layout.body)))
        else:
            break
    plans = layout.plans()
    allowed = ALLOWED_PAYLOAD_KEYS[destination]
    assert all(plan.payload.keys() <= allowed for plan in plans), "renderer emitted a key the endpoint refuses"
    return plans


# --------------------------------------------------------------------------- layout


class _Layout:
    """Packs one result into embeds and messages; ``plans()`` turns the result into MessagePlans."""

    def __init__(self, result: RenderInput, limits: Limits, *, body_as_file: bool, marker_digits: int) -> None:
        self.limits = limits
        self.color = _color(result)
        self.body: list[tuple[int, dict[str, Any]]] = []
        self.files: list[FilePart] = []
        self._fieldable: dict[str, Any] | None = None
        # The producer's own Discord content and embeds come first; the relay's rendering follows
        # them, in the same message where there is room.
        native, self.pinned_indices = layout_native(
            result.content, result.embeds, limits, files=self._pinnable(result), cost=_file_cost,
            file_budget=limits.max_request_bytes - _payload_reserve(limits) - _REQUEST_OVERHEAD)
        self.messages: list[list[dict[str, Any]]] = [m.embeds for m in native] or [[]]
        self.chars: list[int] = [m.chars for m in native] or [0]
        self.contents: list[str | None] = [m.content for m in native] or [None]
        self.pinned: list[list[FilePart]] = [m.files for m in native] or [[]]

        header = None
        if not native or _has_own(result):
            author = _label(result.workflow_id, limits.author)
            title, url = _title_and_url(result, limits.title)
            header = self._new_embed(utf16_len(author) + utf16_len(title))
            if author:
                header["author"] = {"name": self._charge(author)}
            if title:
                header["title"] = self._charge(title)
                if url:
                    header["url"] = url
            self._fieldable = header
            summary = result.summary or ""
            if discord_trim(summary):
                placed = self._flow(summary, header, footer=0)
                self._fieldable = placed[-1][1]
            if not native and _is_empty(result):
                header["description"] = self._charge(EMPTY_RESULT)

            fields = [(f.name, f.value, f.inline) for f in result.fields]
            if result.url and not url:
                fields.append(("Link", result.url, False))
            for name, value, inline in fields:
                for part_name, part_value in _field_parts(name, value, limits):
                    self._add_field(part_name, part_value, inline)

        body = result.body or ""
        if body and body_as_file:
            name, value = self._body_file(body)
            self._add_field(name, value, False)
        for attachment in result.attachments:
            if attachment.index in self.pinned_indices:
                continue  # sent with the embed that shows it
            info = self._attachment_files(attachment)
            if info:
                self._add_field(*info, False)
        if body and not body_as_file:
            last = self.messages[-1][-1] if self.messages[-1] else None
            first = header if header is not None and last is header and not {"description", "fields"} & header.keys() \
                else None
            self.body = self._flow(body, first, footer=2 * marker_digits + 3)

    def _pinnable(self, result: RenderInput) -> dict[str, FilePart]:
        """Stored filename → the one file part it goes as, for files small enough to go whole."""
        step = _part_size(self.limits)
        out: dict[str, FilePart] = {}
        for attachment in result.attachments:
            if attachment.size <= step and attachment.filename not in out:
                out[attachment.filename] = FilePart(_filename(attachment), _content_type(attachment),
                                                    attachment.index, 0, attachment.size)
        return out

    @property
    def body_messages(self) -> int:
        """How many messages carry part of the body."""
        return len({index for index, _embed in self.body})

    # -- packing

    def _room(self) -> int:
        return self.limits.embed_total - self.chars[-1]

    def _charge(self, text: str) -> str:
        self.chars[-1] += utf16_len(text)
        return text

    def _new_message(self) -> None:
        self.messages.append([])
        self.chars.append(0)
        self.contents.append(None)
        self.pinned.append([])

    def _new_embed(self, need: int = 0) -> dict[str, Any]:
        if len(self.messages[-1]) >= self.limits.embeds_per_message or self._room() < need:
            self._new_message()
        embed: dict[str, Any] = {} if self.color is None else {"color": self.color}
        self.messages[-1].append(embed)
        return embed

    def _flow(self, text: str, first: dict[str, Any] | None, *, footer: int) -> list[tuple[int, dict[str, Any]]]:
        """Pour ``text`` into descriptions: ``first`` if given, then new embeds, message after message."""
        cutter = Cutter(text)
        limit = self.limits.description
        placed: list[tuple[int, dict[str, Any]]] = []
        target = first
        while not cutter.done:
            created = target is None
            if target is None:
                full = len(self.messages[-1]) >= self.limits.embeds_per_message
                if full or self._room() - footer < _MIN_PIECE:
                    self._new_message()
                target = self._new_embed()
            room = min(limit, self._room() - footer)
            alone = len(self.messages[-1]) == 1  # the room cannot get any larger than this
            piece = cutter.next_piece(room, tight=room < limit, force=alone) if room > 0 else None
            if piece is None:
                if created:
                    self.messages[-1].pop()
                self._new_message()
                target = None
                continue
            target["description"] = piece
            self.chars[-1] += utf16_len(piece) + footer
            placed.append((len(self.messages) - 1, target))
            target = None
        return placed

    def _add_field(self, name: str, value: str, inline: bool) -> None:
        need = utf16_len(name) + utf16_len(value)
        embed = self._fieldable
        current = self.messages[-1]
        if (
            embed is None
            or not current
            or current[-1] is not embed
            or len(embed.get("fields", ())) >= self.limits.fields_per_embed
            or self._room() < need
        ):
            embed = self._new_embed(need)
            self._fieldable = embed
        embed.setdefault("fields", []).append({"name": name, "value": value, "inline": inline})
        self.chars[-1] += need

    # -- files

    def _body_file(self, body: str) -> tuple[str, str]:
        data = body.encode("utf-8", "surrogatepass")
        step = _part_size(self.limits)
        count = max(1, -(-len(data) // step))
        names = _part_names(BODY_FILENAME, count)
        for number, name in enumerate(names):
            chunk = data if count == 1 else data[number * step : (number + 1) * step]
            self.files.append(FilePart(name, "text/markdown; charset=utf-8", None, 0, len(chunk), chunk))
        # No part count in the text: a re-render after a 413 must leave sent messages' text alone.
        value = f"Attached as `{BODY_FILENAME}` ({_human(len(data))})"
        if count > 1:
            value += f" in numbered parts; rejoin with `cat {BODY_FILENAME}.0* > {BODY_FILENAME}`"
        value += f"\nsha256 `{hashlib.sha256(data).hexdigest()}`"
        return "📄 Full text", value

    def _attachment_files(self, attachment: AttachmentRef) -> tuple[str, str] | None:
        """Add the attachment's file parts; return the rejoin field when it had to be split."""
        filename = _filename(attachment)
        content_type = _content_type(attachment)
        step = _part_size(self.limits)
        if attachment.size <= step:
            self.files.append(FilePart(filename, content_type, attachment.index, 0, attachment.size))
            return None
        count = -(-attachment.size // step)
        names = _part_names(filename, count)
        for number, name in enumerate(names):
            offset = number * step
            length = min(step, attachment.size - offset)
            self.files.append(FilePart(name, "application/octet-stream", attachment.index, offset, length))
        quoted = shlex.quote(filename)
        # Count-free like the result.md field, so smaller() re-renders keep this text unchanged.
        value = (
            f"{_human(attachment.size)} in numbered parts `{filename}.0…`\n"
            f"rejoin: `cat {quoted}.0* > {quoted}`\nsha256 `{attachment.sha256}`"
        )
        return truncate(f"📎 {filename}", self.limits.field_name), truncate(value, self.limits.field_value)

    # -- output

    def plans(self) -> list[MessagePlan]:
        """Finish markers, drop empty embeds and messages, and spread the files over messages."""
        total = len(self.body)
        for number, (_index, embed) in enumerate(self.body, start=1):
            # A body in one piece says no "(1/1)": its footer is a lone ZWSP, which Discord shows as
            # nothing and :func:`reassemble_body` still finds.
            embed["footer"] = {"text": f"({number}/{total})" if total > 1 else ZWSP}
        payloads: list[dict[str, Any]] = []
        pinned: list[list[FilePart]] = []
        for embeds, content, files in zip(self.messages, self.contents, self.pinned, strict=True):
            visible = [e for e in embeds if _VISIBLE & e.keys()]
            if visible or content:
                payload: dict[str, Any] = {"content": content} if content else {}
                if visible:
                    payload["embeds"] = visible
                payload["allowed_mentions"] = _no_mentions()
                payloads.append(payload)
                pinned.append(list(files))
        if not payloads and not self.files:  # unreachable by construction; never send nothing
            payloads.append({"embeds": [{"description": EMPTY_RESULT}], "allowed_mentions": _no_mentions()})
            pinned.append([])
        for payload in payloads[1:]:
            payload["flags"] = SUPPRESS_NOTIFICATIONS
        chosen = _distribute(payloads, pinned, self.files, self.limits)
        plans = []
        for payload, parts in zip(payloads, chosen, strict=True):
            if parts:
                # Snowflake strings, as Discord's schema types attachment ids ("0" is files[0]).
                payload["attachments"] = [{"id": str(i), "filename": p.filename} for i, p in enumerate(parts)]
            plans.append(MessagePlan(payload, tuple(parts)))
        return plans


def _distribute(payloads: list[dict[str, Any]], pinned: list[list[FilePart]], files: list[FilePart],
                limits: Limits) -> list[list[FilePart]]:
    """Put files, in order, into the earliest message with room; add file-only messages as needed.

    ``pinned`` are the files each message must carry (an embed shows them by ``attachment://``); a
    file of the same name never joins them there, or Discord could not tell the two apart.
    """
    chosen: list[list[FilePart]] = [list(p) for p in pinned]
    names = [{p.filename for p in parts} for parts in pinned]
    used = [_json_size(p) + _REQUEST_OVERHEAD + sum(map(_file_cost, parts)) for p, parts in zip(payloads, pinned,
                                                                                                  strict=True)]
    index = 0
    for part in files:
        cost = _file_cost(part)
        while True:
            if index == len(payloads):
                payload: dict[str, Any] = {"allowed_mentions": _no_mentions()}
                if payloads:
                    payload["flags"] = SUPPRESS_NOTIFICATIONS
                payloads.append(payload)
                chosen.append([])
                names.append(set())
                used.append(_json_size(payload) + _REQUEST_OVERHEAD)
            if (len(chosen[index]) < limits.files_per_message and used[index] + cost <= limits.max_request_bytes
                    and part.filename not in names[index]):
                break
            if not chosen[index] and "embeds" not in payloads[index] and "content" not in payloads[index]:
                raise ValueError(f"limits leave no room for a {cost}-byte file part: {limits}")
            index += 1
        chosen[index].append(part)
        used[index] += cost
    return chosen


def _payload_reserve(limits: Limits) -> int:
    """Bytes a full payload may take in a request: its text at the worst JSON escape, and room for URLs."""
    return 6 * (limits.embed_total + limits.content) + 64 * 1024


def _part_size(limits: Limits) -> int:
    """Largest file part: the per-file limit, and small enough to travel with a full payload."""
    size = min(limits.max_attachment_bytes, limits.max_request_bytes - _payload_reserve(limits))
    if size <= 0:
        raise ValueError(f"max_request_bytes too small for a message payload: {limits}")
    return size


def _part_names(filename: str, count: int) -> list[str]:
    # Every number starts with 0, so `cat name.0*` matches all parts and sorts them correctly.
    width = max(3, len(str(count)) + 1)
    return [filename] if count == 1 else [f"{filename}.{n:0{width}d}" for n in range(1, count + 1)]


def _no_mentions() -> dict[str, list[str]]:
    # A fresh dict per payload: plans are handed to other code, which must not share state.
    return {"parse": []}


def _json_size(payload: dict[str, Any]) -> int:
    return len(json.dumps(payload))  # ensure_ascii: the string is its own byte count


def _file_cost(part: FilePart) -> int:
    return part.length + _file_overhead(part)


def _content_type(attachment: AttachmentRef) -> str:
    content_type = attachment.content_type if _CONTENT_TYPE.match(attachment.content_type or "") else ""
    return content_type[:127] or "application/octet-stream"


def _file_overhead(part: FilePart) -> int:
    # Multipart part header plus the attachments[] entry, filename counted at its worst escape.
    return 256 + 24 * len(part.filename) + len(part.content_type)


def _filename(attachment: AttachmentRef) -> str:
    """A filename Discord takes: no path, no control characters, at most 200 characters."""
    name = re.sub(r"[\x00-\x1f\x7f/\\]", "_", discord_trim(attachment.filename or ""))
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = stem[: 190 - len(ext)] + dot + ext if dot and len(ext) <= 10 else name[:200]
    return name or f"attachment-{attachment.index}"


def _human(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


# --------------------------------------------------------------------------- text of the header


def _has_own(result: RenderInput) -> bool:
    """Whether the result has anything of the relay's own rendering beside its native embeds."""
    return bool(discord_trim(result.title or "") or discord_trim(result.summary or "") or result.body
                or result.fields or result.url)


def _is_empty(result: RenderInput) -> bool:
    return not (
        discord_trim(result.title or "")
        or discord_trim(result.summary or "")
        or result.body
        or result.fields
        or result.attachments
    )


def _color(result: RenderInput) -> int | None:
    if isinstance(result.color, int) and 0 <= result.color <= 0xFFFFFF:
        return result.color
    return LEVEL_COLORS.get(result.level or "")


def _label(text: str | None, limit: int) -> str:
    return truncate(discord_trim(text or ""), limit)


def _title_and_url(result: RenderInput, limit: int) -> tuple[str, str | None]:
    """The title with the level's icon, and the url when Discord will take it as a link."""
    url = result.url if result.url and len(result.url) <= 2048 and _URL.fullmatch(result.url) else None
    title = discord_trim(result.title or "")
    if not title and result.level:
        title = result.level.capitalize()
    if not title and url:
        title = "Result"  # an embed url shows only as a linked title
    icon = LEVEL_ICONS.get(result.level or "")
    if title and icon:
        title = f"{icon} {title}"
    return truncate(title, limit), url


def _field_parts(name: str, value: str, limits: Limits) -> list[tuple[str, str]]:
    """Name/value pairs for one field: long values continue in fields named ``name (2/3)``."""
    name = discord_trim(name) or ZWSP
    value = discord_trim(value)
    if utf16_len(value) <= limits.field_value:
        return [(truncate(name, limits.field_name), value or ZWSP)]
    cutter = Cutter(value)
    pieces = []
    while not cutter.done:
        piece = cutter.next_piece(limits.field_value, tight=False, force=True)
        assert piece is not None  # forced
        pieces.append(piece)
    count = len(pieces)
    return [
        (truncate(name, limits.field_name - len(f" ({count}/{count})")) + f" ({k}/{count})", piece)
        for k, piece in enumerate(pieces, start=1)
    ]
