"""Lay a result's Discord-native ``content`` and ``embeds`` out over messages: pure, lossless, in order.

A producer's embeds are Discord's own objects, so they are sent as they are wherever Discord
allows it. Only what no single message can hold is changed, and then without losing a character:

* ``content`` over 2,000 characters continues in further messages (cut by :class:`Cutter`, whose
  pieces :func:`delivery.split.decode_piece` joins back exactly); the embeds start in the message
  of its last piece, so the reading order is content, then embeds.
* Embeds fill messages in order, at most 10 and 6,000 characters per message; an embed that fits
  one message is never cut to fill another.
* An embed that cannot be one embed (a description over 4,096 characters, or more than 6,000
  characters in all) becomes consecutive parts: the first keeps the head (author, title, url,
  thumbnail, provider, video), the description continues in follow-on parts, then the fields in
  order, and the last part keeps the foot (image, footer, timestamp), where Discord draws them.
  Every part keeps the colour, so they read as one.
* Files an embed shows through ``attachment://name`` go in the same message as the part that
  shows them (Discord resolves the name only there), renamed to the name the file is sent under.

Text is trimmed as Discord trims it, and a blank field name or value becomes a ZWSP (Discord
refuses empty ones); that is all that changes in what Discord shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from delivery.split import ZWSP, Cutter, discord_trim, utf16_len
from schemas.messages import FilePart, Limits

__all__ = ["NativeMessage", "layout_native", "sendable"]

ATTACHMENT = "attachment://"
_MIN_PIECE = 64  # do not start a description part in the few characters a message has left
_HEAD = ("author", "provider", "video", "thumbnail")
_FOOT = ("image", "footer", "timestamp")
_MEDIA = ("url", "width", "height", "description")


@dataclass
class NativeMessage:
    """One message of the native part: content, embeds, their characters and the files they show."""

    content: str | None = None
    embeds: list[dict[str, Any]] = field(default_factory=list)
    chars: int = 0
    files: list[FilePart] = field(default_factory=list)
    file_bytes: int = 0


@dataclass(frozen=True)
class _Embed:
    """A stored embed made sendable, with the parts the layout moves about."""

    base: dict[str, Any]  # color and type: repeated on every part
    head: dict[str, Any]  # title, url and the _HEAD objects: the first part
    description: str
    fields: list[dict[str, Any]]
    foot: dict[str, Any]  # the _FOOT keys: the last part
    head_chars: int
    foot_chars: int

    def whole(self) -> dict[str, Any]:
        embed = {**self.base, **self.head}
        if self.description:
            embed["description"] = self.description
        if self.fields:
            embed["fields"] = self.fields
        return {**embed, **self.foot}

    def chars(self) -> int:
        return self.head_chars + utf16_len(self.description) + sum(map(_field_chars, self.fields)) + self.foot_chars


def _text(value: Any) -> str:
    return discord_trim(value) if isinstance(value, str) else ""


def _field_chars(f: Mapping[str, Any]) -> int:
    return utf16_len(f["name"]) + utf16_len(f["value"])


def _object(value: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: value[k] for k in keys if isinstance(value, Mapping) and value.get(k) not in (None, "")}


def sendable(embed: Mapping[str, Any]) -> dict[str, Any]:
    """A stored embed as Discord's request schema takes it: trimmed text, only the keys one may send.

    Keys Discord sets on embeds it returns (``proxy_url``, ``flags``, ``placeholder`` …) are not
    sent; an author or footer without text is dropped with its icon (Discord cannot show either alone),
    and so is a ``url`` without a title (Discord shows it only as the title's link).
    """
    out: dict[str, Any] = {}
    if isinstance(embed.get("type"), str):
        out["type"] = embed["type"]
    color = embed.get("color")
    if isinstance(color, int) and not isinstance(color, bool) and 0 <= color <= 0xFFFFFF:
        out["color"] = color
    if title := _text(embed.get("title")):
        out["title"] = title
        if isinstance(embed.get("url"), str):
            out["url"] = embed["url"]
    if description := _text(embed.get("description")):
        out["description"] = description
    if isinstance(embed.get("timestamp"), str):
        out["timestamp"] = embed["timestamp"]
    author = embed.get("author")
    if isinstance(author, Mapping) and (name := _text(author.get("name"))):
        out["author"] = {"name": name, **_object(author, ("url", "icon_url"))}
    footer = embed.get("footer")
    if isinstance(footer, Mapping) and (text := _text(footer.get("text"))):
        out["footer"] = {"text": text, **_object(footer, ("icon_url",))}
    for key in ("image", "thumbnail", "video"):
        if media := _object(embed.get(key), _MEDIA):
            out[key] = media
    if provider := _object(embed.get("provider"), ("name", "url")):
        out["provider"] = provider
    fields = [f for f in embed.get("fields") or () if isinstance(f, Mapping)]
    if fields:
        out["fields"] = [
            {"name": _text(f.get("name")) or ZWSP, "value": _text(f.get("value")) or ZWSP,
             **({"inline": f["inline"]} if isinstance(f.get("inline"), bool) else {})}
            for f in fields
        ]
    return out


def _split(embed: dict[str, Any]) -> _Embed:
    head = {k: embed[k] for k in ("title", "url", *_HEAD) if k in embed}
    foot = {k: embed[k] for k in _FOOT if k in embed}
    return _Embed(
        base={k: embed[k] for k in ("type", "color") if k in embed}, head=head,
        description=embed.get("description", ""), fields=list(embed.get("fields", ())), foot=foot,
        head_chars=utf16_len(head.get("title", "")) + utf16_len(head.get("author", {}).get("name", "")),
        foot_chars=utf16_len(foot.get("footer", {}).get("text", "")),
    )


def _refs(part: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(holder, key)`` of each ``attachment://`` URL in an embed part."""
    out = []
    for holder, key in (("author", "icon_url"), ("thumbnail", "url"), ("image", "url"), ("footer", "icon_url")):
        url = part.get(holder, {}).get(key) if isinstance(part.get(holder), Mapping) else None
        if isinstance(url, str) and url.lower().startswith(ATTACHMENT):
            out.append((holder, key))
    return out


class _Packer:
    """Fills messages with embed parts; knows each message's room in embeds, characters and files."""

    def __init__(self, limits: Limits, files: Mapping[str, FilePart], cost: Callable[[FilePart], int],
                 file_budget: int) -> None:
        self.limits, self.files, self.cost, self.file_budget = limits, files, cost, file_budget
        self.messages: list[NativeMessage] = [NativeMessage()]
        self.pinned: set[int] = set()

    @property
    def current(self) -> NativeMessage:
        return self.messages[-1]

    def new_message(self) -> None:
        self.messages.append(NativeMessage())

    def room(self) -> int:
        return self.limits.embed_total - self.current.chars

    def _wanted(self, part: Mapping[str, Any]) -> list[FilePart]:
        wanted: dict[int, FilePart] = {}
        for holder, key in _refs(part):
            found = self.files.get(part[holder][key][len(ATTACHMENT):])
            if found is not None and found.attachment_index is not None:
                wanted.setdefault(found.attachment_index, found)
        return list(wanted.values())

    def _files_fit(self, message: NativeMessage, wanted: list[FilePart]) -> bool:
        held = {f.attachment_index for f in message.files}
        new = [f for f in wanted if f.attachment_index not in held]
        return (len(message.files) + len(new) <= self.limits.files_per_message
                and message.file_bytes + sum(map(self.cost, new)) <= self.file_budget)

    def fits(self, chars: int, part: Mapping[str, Any]) -> bool:
        """Whether the current message takes one more embed of ``chars`` characters showing ``part``'s files."""
        message = self.current
        limits = self.limits
        return (len(message.embeds) < limits.embeds_per_message and message.chars + chars <= limits.embed_total
                and self._files_fit(message, self._wanted(part)))

    def place(self, chars: int, part: dict[str, Any]) -> None:
        """Start a new message unless this one has room, then add ``part`` (its files resolved)."""
        if not self.fits(chars, part):
            self.new_message()
        self.add(chars, part)

    def add(self, chars: int, part: dict[str, Any]) -> None:
        """Add ``part`` to the current message; ``attachment://`` URLs point at the files sent with it."""
        message = self.current
        for holder, key in _refs(part):
            found = self.files.get(part[holder][key][len(ATTACHMENT):])
            if found is None or found.attachment_index is None or not self._files_fit(message, [found]):
                continue  # a file that cannot travel with this part: it goes as a plain file, unresolved
            if all(f.attachment_index != found.attachment_index for f in message.files):
                message.files.append(found)
                message.file_bytes += self.cost(found)
                self.pinned.add(found.attachment_index)
            part[holder] = {**part[holder], key: ATTACHMENT + found.filename}
        message.embeds.append(part)
        message.chars += chars

    def embed(self, embed: _Embed) -> None:
        """Place one embed: whole when one embed can hold it, else as consecutive parts."""
        limits = self.limits
        if (embed.chars() <= limits.embed_total and utf16_len(embed.description) <= limits.description
                and len(embed.fields) <= limits.fields_per_embed):
            self.place(embed.chars(), embed.whole())
            return
        self._parts(embed)

    def _parts(self, embed: _Embed) -> None:
        limits = self.limits
        cutter = Cutter(embed.description) if embed.description else None
        fields = list(embed.fields)
        first = True
        while True:
            part = dict(embed.base)
            chars = 0
            if first:
                part.update(embed.head)
                chars = embed.head_chars
            if cutter is not None and not cutter.done:
                need = chars + _MIN_PIECE
            elif fields:
                need = chars + _field_chars(fields[0])
            else:
                need = chars + embed.foot_chars
            if not self.fits(need, part):
                self.new_message()
            if cutter is not None and not cutter.done:
                room = min(limits.description, self.room() - chars)
                alone = not self.current.embeds  # the room cannot get any larger than this
                piece = cutter.next_piece(room, tight=room < limits.description, force=alone) if room > 0 else None
                if piece is None:
                    self.new_message()
                    continue
                part["description"] = piece
                chars += utf16_len(piece)
            if cutter is None or cutter.done:
                taken: list[dict[str, Any]] = []
                while (fields and len(taken) < limits.fields_per_embed
                       and chars + _field_chars(fields[0]) <= self.room()):
                    taken.append(fields.pop(0))
                    chars += _field_chars(taken[-1])
                if taken:
                    part["fields"] = taken
            done = (cutter is None or cutter.done) and not fields
            if done and chars + embed.foot_chars <= self.room() and self._files_fit(
                    self.current, self._wanted({**part, **embed.foot})):
                part.update(embed.foot)
                chars += embed.foot_chars
                self.add(chars, part)
                return
            if done and embed.foot and not _visible_foot(embed.foot):
                # A foot Discord would not show alone (a timestamp, an icon): it stays with the last part.
                part.update(embed.foot)
                self.add(chars, part)
                return
            if len(part) > len(embed.base):
                self.add(chars, part)
            elif not self.current.embeds:
                raise ValueError(f"limits leave no room for an embed part: {limits}")
            else:
                self.new_message()
            first = False
            if done:
                if embed.foot:
                    foot = {**embed.base, **embed.foot}
                    self.place(embed.foot_chars, foot)
                return


def _visible_foot(foot: Mapping[str, Any]) -> bool:
    return "footer" in foot or "url" in foot.get("image", {})


def layout_native(content: str | None, embeds: tuple[Mapping[str, Any], ...], limits: Limits, *,
                  files: Mapping[str, FilePart], cost: Callable[[FilePart], int],
                  file_budget: int) -> tuple[list[NativeMessage], set[int]]:
    """The messages that carry ``content`` and ``embeds``, and the attachment indices they show.

    ``files`` maps a stored filename to the single file part it is sent as (only files that go
    whole can be shown by ``attachment://``); ``cost`` is a part's bytes in the request and
    ``file_budget`` what one message may spend on files.
    """
    packer = _Packer(limits, files, cost, file_budget)
    text = discord_trim(content or "")
    if text:
        pieces = [text]
        if utf16_len(text) > limits.content:
            cutter, pieces = Cutter(text), []
            while not cutter.done:
                piece = cutter.next_piece(limits.content, tight=False, force=True)
                assert piece is not None  # forced
                pieces.append(piece)
        for number, piece in enumerate(pieces):
            if number:
                packer.new_message()
            packer.current.content = piece
    for stored in embeds:
        embed = sendable(stored)
        if embed.keys() - {"type", "color", "timestamp"}:  # one Discord could show (validated at the door)
            packer.embed(_split(embed))
    messages = [m for m in packer.messages if m.content or m.embeds]
    return messages, packer.pinned
