"""Discord-native embeds in a result: the embed object exactly as Discord documents it.

What ``discord.Embed.to_dict()`` produces (and what a bot would pass to ``followup.send``) is
accepted as is. Only what Discord itself could never show is refused, each with a 422 that names
the path (``embeds.3.fields.2.value: longer than 1024 …``):

- a title, field name, author or provider name over 256, a field value over 1024, a footer over
  2048 characters, more than 25 fields in one embed (Discord's per-embed limits: an embed cannot be
  split without changing what it means);
- an embed with nothing to show (no title, description, field, author, footer, image or thumbnail);
- a URL that is not ``http(s)://`` (``attachment://name`` too where Discord takes files: image,
  thumbnail and the author and footer icons), with whitespace, or over 2048 characters;
- keys Discord does not document, as everywhere else in the API.

Everything else is the renderer's job (``delivery.native``): more than 10 embeds or 6,000
characters per message, a description over 4,096 and content over 2,000 are split over embeds and
messages without losing a character. Lengths count UTF-16 units after trimming, as Discord does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.bounds import Color, IsoDatetime

#: Discord's documented per-embed limits (UTF-16 units of the trimmed text).
TITLE_MAX = 256
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_MAX = 256
FIELDS_MAX = 25
URL_MAX = 2048
#: Embeds per result: 50 full messages. The body of a result is bounded by the request size; a list
#: of embeds is bounded here too, like ``fields``, so no result turns into thousands of messages.
EMBEDS_MAX = 500
#: Discord trims these from every text before it counts or shows it (see ``delivery.split``).
_TRIMMED = (
    "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u180e\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
#: A string with something left after Discord's trim, as a JSON Schema pattern (unanchored: a search).
SHOWN_PATTERN = "[^" + "".join(f"\\u{ord(c):04x}" for c in _TRIMMED) + "]"
ATTACHMENT_SCHEME = "attachment://"
_WEB = ("http", "https")
_FILES = ("http", "https", "attachment")


def utf16_units(text: str) -> int:
    """Length as Discord counts it: UTF-16 code units (an emoji outside the BMP is 2)."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def shown(text: str | None) -> str:
    """The text as Discord shows it: trimmed of whitespace."""
    return (text or "").strip(_TRIMMED)


def _bounded(limit: int, what: str) -> Any:
    """The check of :func:`_limited`, and Discord's ``maxLength`` in the schema (as its own spec has it)."""
    return Field(json_schema_extra={"maxLength": limit, "description": f"at most {limit} characters (Discord's "
                                    f"limit for {what}), counted in UTF-16 units after trimming, as Discord does"})


def _limited(limit: int, what: str) -> AfterValidator:
    def check(value: str | None) -> str | None:
        if value is not None and (size := utf16_units(shown(value))) > limit:
            raise ValueError(f"longer than {limit} (Discord's limit for {what}; this one has {size} characters, "
                             "counted in UTF-16 units as Discord does)")
        return value

    return AfterValidator(check)


def _url(schemes: tuple[str, ...]) -> AfterValidator:
    def check(value: str | None) -> str | None:
        if value is None:
            return value
        if len(value) > URL_MAX:
            raise ValueError(f"longer than {URL_MAX} characters (Discord's limit for a URL)")
        wanted = " or ".join(f"{s}://" for s in schemes)
        if any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in value):
            raise ValueError(f"is not a well formed URL (whitespace or control characters); expected {wanted}")
        try:
            parts = urlsplit(value)
        except ValueError:
            raise ValueError(f"is not a well formed URL; expected {wanted}") from None
        if parts.scheme.lower() not in schemes or not parts.netloc:
            raise ValueError(f"must be an {wanted} URL; Discord shows no other")
        return value

    return AfterValidator(check)


_URL_CHAR = r"[^\s\u0000-\u001f\u007f]"  # no whitespace, no control characters
_WebText = Annotated[str, Field(max_length=URL_MAX, json_schema_extra={
    "pattern": rf"^[hH][tT][tT][pP][sS]?://[^\s\u0000-\u001f\u007f/?#]{_URL_CHAR}*$"})]
_FileText = Annotated[str, Field(max_length=URL_MAX, json_schema_extra={
    "pattern": rf"^(?:[hH][tT][tT][pP][sS]?|[aA][tT][tT][aA][cC][hH][mM][eE][nN][tT])://"
               rf"[^\s\u0000-\u001f\u007f/?#]{_URL_CHAR}*$",
    "description": "http(s):// or attachment://<filename of one of this result's files>"})]
WebUrl = Annotated[_WebText | None, _url(_WEB)]
FileUrl = Annotated[_FileText | None, _url(_FILES)]
TitleText = Annotated[Annotated[str, _bounded(TITLE_MAX, "an embed title")] | None,
                      _limited(TITLE_MAX, "an embed title")]
FooterText = Annotated[Annotated[str, _bounded(FOOTER_MAX, "a footer")] | None, _limited(FOOTER_MAX, "a footer")]
AuthorName = Annotated[Annotated[str, _bounded(AUTHOR_MAX, "an author name")] | None,
                       _limited(AUTHOR_MAX, "an author name")]
ProviderName = Annotated[Annotated[str, _bounded(AUTHOR_MAX, "a provider name")] | None,
                         _limited(AUTHOR_MAX, "a provider name")]
FieldName = Annotated[str, _limited(FIELD_NAME_MAX, "a field name"), _bounded(FIELD_NAME_MAX, "a field name")]
FieldValue = Annotated[str, _limited(FIELD_VALUE_MAX, "a field value"), _bounded(FIELD_VALUE_MAX, "a field value")]
Dimension = Annotated[int | None, Field(ge=0, le=2**31 - 1, strict=True)]


class _Discord(BaseModel):
    """Keys Discord does not document are refused, as in every other body of the API."""

    model_config = ConfigDict(extra="forbid")


class EmbedFooter(_Discord):
    """``footer``: text (2048) and an icon."""

    text: FooterText = None
    icon_url: FileUrl = None
    proxy_icon_url: WebUrl = Field(default=None, description="set by Discord on embeds it returns; not sent")


class EmbedAuthor(_Discord):
    """``author``: name (256), link and icon."""

    name: AuthorName = None
    url: WebUrl = None
    icon_url: FileUrl = None
    proxy_icon_url: WebUrl = Field(default=None, description="set by Discord on embeds it returns; not sent")


class EmbedMedia(_Discord):
    """``image`` / ``thumbnail``: an http(s) URL or ``attachment://<filename>`` of this result."""

    url: FileUrl = None
    proxy_url: WebUrl = Field(default=None, description="set by Discord on embeds it returns; not sent")
    width: Dimension = None
    height: Dimension = None
    placeholder: str | None = Field(default=None, max_length=64)
    placeholder_version: Dimension = None
    description: str | None = Field(default=None, max_length=4096, description="alt text")
    flags: Dimension = None
    content_scan_version: Dimension = None


class EmbedVideo(EmbedMedia):
    """``video``: Discord shows a video only in embeds it made itself; kept and sent as given."""

    url: WebUrl = None


class EmbedProvider(_Discord):
    """``provider``: name (256) and link."""

    name: ProviderName = None
    url: WebUrl = None


class EmbedField(_Discord):
    """One field: name (256) and value (1024). A blank one is shown blank (Discord refuses empty text)."""

    name: FieldName
    value: FieldValue
    inline: bool | None = Field(default=None, strict=True)


_DATETIME: TypeAdapter[datetime] = TypeAdapter(IsoDatetime)


def _timestamp(value: str | None) -> str | None:
    # Checked as the date-time it must be, kept as the text it was (Discord takes ISO 8601 text).
    if value is None:
        return value
    try:
        _DATETIME.validate_python(value)
    except ValidationError:
        raise ValueError("must be an ISO 8601 timestamp such as 2026-11-23T10:00:00+00:00") from None
    return value


def _visible_schema(schema: dict[str, Any]) -> None:
    """Say in the schema what ``Embed._visible`` checks: one part Discord can show, with text that is not blank."""
    text = {"type": "string", "pattern": SHOWN_PATTERN}
    schema["anyOf"] = [
        {"required": ["title"], "properties": {"title": text}},
        {"required": ["description"], "properties": {"description": text}},
        {"required": ["fields"], "properties": {"fields": {"type": "array", "minItems": 1}}},
        {"required": ["author"], "properties": {"author": {"type": "object", "required": ["name"],
                                                           "properties": {"name": text}}}},
        {"required": ["footer"], "properties": {"footer": {"type": "object", "required": ["text"],
                                                           "properties": {"text": text}}}},
        {"required": ["image"], "properties": {"image": {"type": "object", "required": ["url"],
                                                         "properties": {"url": {"type": "string"}}}}},
        {"required": ["thumbnail"], "properties": {"thumbnail": {"type": "object", "required": ["url"],
                                                                 "properties": {"url": {"type": "string"}}}}},
    ]


class Embed(_Discord):
    """A Discord embed object (https://discord.com/developers/docs/resources/message#embed-object).

    It must show something: a title, description, author name or footer text that is not blank,
    a field, an image or a thumbnail.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_visible_schema)

    type: str | None = Field(default=None, max_length=32, description="Discord sends every webhook embed as rich")
    title: TitleText = None
    description: str | None = Field(default=None, description="any length: continued in follow-on embeds")
    url: WebUrl = None
    timestamp: Annotated[Annotated[str, Field(max_length=64, json_schema_extra={"format": "date-time"})] | None,
                         AfterValidator(_timestamp)] = None
    color: Color | None = None
    footer: EmbedFooter | None = None
    image: EmbedMedia | None = None
    thumbnail: EmbedMedia | None = None
    video: EmbedVideo | None = None
    provider: EmbedProvider | None = None
    author: EmbedAuthor | None = None
    fields: list[EmbedField] | None = Field(default=None, json_schema_extra={"maxItems": FIELDS_MAX})
    flags: Dimension = None
    content_scan_version: Dimension = None

    @field_validator("fields")
    @classmethod
    def _field_count(cls, value: list[EmbedField] | None) -> list[EmbedField] | None:
        if value is not None and len(value) > FIELDS_MAX:
            raise ValueError(f"has {len(value)} fields; Discord shows at most {FIELDS_MAX} in one embed")
        return value

    @model_validator(mode="after")
    def _visible(self) -> Embed:
        if not (shown(self.title) or shown(self.description) or self.fields
                or (self.author and shown(self.author.name)) or (self.footer and shown(self.footer.text))
                or (self.image and self.image.url) or (self.thumbnail and self.thumbnail.url)):
            raise ValueError("shows nothing: Discord needs a title, description, field, author name, footer "
                             "text, image or thumbnail")
        return self

    def stored(self) -> dict[str, Any]:
        """The embed as stored and read back: what was sent, without the keys that were null."""
        return self.model_dump(exclude_none=True)


def attachment_refs(embed: dict[str, Any]) -> list[tuple[str, str]]:
    """``(path inside the embed, filename)`` of every ``attachment://`` URL an embed uses."""
    refs = []
    for holder, key in (("author", "icon_url"), ("thumbnail", "url"), ("image", "url"), ("footer", "icon_url")):
        part = embed.get(holder)
        url = part.get(key) if isinstance(part, dict) else None
        if isinstance(url, str) and url.lower().startswith(ATTACHMENT_SCHEME):
            refs.append((f"{holder}.{key}", url[len(ATTACHMENT_SCHEME):]))
    return refs
