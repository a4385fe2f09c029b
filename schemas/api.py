"""The wire contract of ``/v1``: request and response models. Pure pydantic, no I/O.

Validation that needs configuration (is this webhook URL allowed? is a bot token configured?)
happens in ``app.destinations``; everything that can be decided from the body alone is here.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from schemas.bounds import (
    BASE64_PATTERN,
    FILENAME_PATTERN,
    MAX_ATTACHMENTS,
    MEDIA_TYPE_PATTERN,
    BoundedJson,
    Color,
    IsoDatetime,
    check_body,
    check_filename,
    check_media_type,
)
from schemas.embeds import EMBEDS_MAX, Embed
from schemas.messages import Level

Snowflake = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")]

Mode = Literal["first_success", "all"]
#: Discord users named on one result (its DM users, its interaction users, ``discord_user_ids``).
MAX_VIEWERS = 50
ResultStatus = Literal["pending", "delivering", "delivered", "undelivered", "picked_up"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _TextBounded(_Strict):
    """A body whose strings (and nested values) are held to ``schemas.bounds`` as a whole.

    ``ResultIn`` is checked by the ingest path before parsing; bodies FastAPI parses itself get
    the same rule here, so no route stores (or filters on) a string PostgreSQL cannot hold.
    """

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        if isinstance(value, dict):
            found = check_body(value)
            if found is not None:
                raise ValueError(f"{found[0]}: {found[1]}")
        return value


#: Discord's limit on ``applied_tags`` of a forum post.
MAX_APPLIED_TAGS = 5


# What Python's ``str.isspace`` calls blank, spelt so that JSON Schema (ECMA) regexes read it alike.
BLANK_CHARS = r"\t\n\u000b\f\r \u001c-\u001f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


class WebhookDestination(_Strict):
    """A channel webhook: the primary path, it never expires.

    In a forum or media channel every message needs a thread: ``thread_id`` posts into an existing
    one, ``thread_name`` makes the result's first message a new post (tagged with ``applied_tags``)
    and every later message of that result goes into it.
    """

    # The cross-field rules of ``_one_thread``, as JSON Schema says them (schema-driven clients and
    # schemathesis read them): not both thread fields; tags only with a thread name.
    model_config = ConfigDict(json_schema_extra={"allOf": [
        {"anyOf": [{"properties": {"thread_name": {"type": "null"}}}, {"properties": {"thread_id": {"type": "null"}}}]},
        {"anyOf": [{"properties": {"applied_tags": {"maxItems": 0}}},
                   {"required": ["thread_name"], "properties": {"thread_name": {"type": "string"}}}]},
    ]})

    type: Literal["webhook"]
    url: str = Field(max_length=512)
    thread_id: Snowflake | None = None
    thread_name: str | None = Field(default=None, min_length=1, max_length=100,
                                    pattern=rf"^[^\u0000]*[^{BLANK_CHARS}\u0000][^\u0000]*$",
                                    description="forum/media channels: the post this result opens")
    applied_tags: list[Snowflake] | None = Field(default=None, max_length=MAX_APPLIED_TAGS,
                                                 description="forum tag ids of the new post (at most 5)")
    silent: bool | None = Field(default=None, strict=True,
                                description="send without notifications (SUPPRESS_NOTIFICATIONS)")

    @field_validator("thread_name")
    @classmethod
    def _visible_name(cls, value: str | None) -> str | None:
        if value is not None and re.fullmatch(f"[{BLANK_CHARS}]*", value):
            raise ValueError("must not be blank: Discord needs a visible name for the forum post")
        return value

    @model_validator(mode="after")
    def _one_thread(self) -> WebhookDestination:
        if self.thread_name is not None and self.thread_id is not None:
            raise ValueError("give thread_name (a new forum post) or thread_id (an existing thread), not both")
        if self.applied_tags and self.thread_name is None:
            raise ValueError("applied_tags tag a new forum post: they need thread_name")
        return self


class InteractionDestination(_Strict):
    """An interaction follow-up: usable only while the token lives (15 minutes after ``created_at``)."""

    type: Literal["interaction"]
    application_id: Snowflake
    token: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")
    created_at: IsoDatetime
    user_id: Snowflake | None = Field(default=None, description="the Discord user who ran the command: "
                                      "they may fetch the result later with /results")
    silent: bool | None = Field(default=None, strict=True,
                                description="send without notifications (SUPPRESS_NOTIFICATIONS)")

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a timezone, e.g. 2026-11-23T10:00:00Z")
        return value


class DMDestination(_Strict):
    """A direct message to a user, sent with the relay's bot token."""

    type: Literal["dm"]
    user_id: Snowflake
    silent: bool | None = Field(default=None, strict=True,
                                description="send without notifications (SUPPRESS_NOTIFICATIONS)")


DestinationIn = Annotated[WebhookDestination | InteractionDestination | DMDestination, Field(discriminator="type")]


class FieldIn(_Strict):
    """An embed field; lengths are Discord's, so a field never has to be cut."""

    name: str = Field(min_length=1, max_length=256)
    value: str = Field(min_length=1, max_length=1024)
    inline: bool = Field(default=False, strict=True)


#: Why a zero-byte file is refused at the door: Discord cannot show one, and a result that can
#: never be delivered whole should be refused with a 4xx, not accepted and left to fail.
EMPTY_FILE = "is an empty file (0 bytes); Discord does not take empty attachments"


class AttachmentIn(_Strict):
    """A file sent inline as base64 (multipart file parts need no base64)."""

    filename: str = Field(min_length=1, max_length=255, json_schema_extra={"pattern": FILENAME_PATTERN})
    content_type: str = Field(default="application/octet-stream", max_length=255,
                              json_schema_extra={"pattern": MEDIA_TYPE_PATTERN})
    # minLength only in the schema: the validator below says why an empty file is refused.
    content_base64: str = Field(json_schema_extra={"pattern": BASE64_PATTERN, "minLength": 4},
                                description="the file's bytes in base64; an empty file is refused")

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return clean_filename(value)

    @field_validator("content_type")
    @classmethod
    def _media_type(cls, value: str) -> str:
        return check_media_type(value)

    @field_validator("content_base64")
    @classmethod
    def _decodes(cls, value: str) -> str:
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("is not valid base64") from exc
        if not data:
            raise ValueError(EMPTY_FILE)
        return value

    def decoded(self) -> bytes:
        """The file's bytes (validated as base64 already)."""
        return base64.b64decode(self.content_base64, validate=True)


class ResultIn(_Strict):
    """``POST /v1/results``: what a producer hands over.

    ``content`` and ``embeds`` are Discord's own message parts, sent first (split to fit, never
    cut); ``title``/``summary``/``body``/``fields`` are the relay's rendering, which follows them.
    """

    workflow_id: str | None = Field(default=None, max_length=255)
    content: str | None = Field(default=None, description="message text above the embeds; any length, continued "
                                "in further messages past Discord's 2000 characters")
    embeds: list[Embed] = Field(default_factory=list, max_length=EMBEDS_MAX,
                                description="Discord embed objects as Discord documents them "
                                "(discord.Embed.to_dict()); split over messages to fit, in order")
    title: str | None = Field(default=None, max_length=4000)
    summary: str | None = None
    body: str | None = None
    fields: list[FieldIn] = Field(default_factory=list, max_length=500)
    url: str | None = Field(default=None, max_length=2048, json_schema_extra={"pattern": r"^https?://"})
    color: Color | None = None
    level: Level | None = None
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    route: list[DestinationIn] = Field(min_length=1, max_length=20)
    mode: Mode = "first_success"
    silent: bool = Field(default=False, strict=True,
                         description="every message without notifications (Discord's SUPPRESS_NOTIFICATIONS)")
    metadata: BoundedJson = Field(default_factory=dict)
    discord_user_ids: list[Snowflake] = Field(default_factory=list, max_length=MAX_VIEWERS,
                                              description="more Discord users who may fetch it with /results")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value


class RedeliverIn(_Strict):
    """``POST /v1/results/{id}/redeliver``: optionally a new route (and mode)."""

    route: list[DestinationIn] | None = Field(default=None, min_length=1, max_length=20)
    mode: Mode | None = None


class BulkRedeliverIn(_TextBounded):
    """``POST /v1/results/redeliver``: every result matching the filter is queued again."""

    status: Literal["undelivered", "delivered", "picked_up"] = "undelivered"
    workflow_id: str | None = None
    since: IsoDatetime | None = None
    destination: str | None = Field(default=None, description="destination key, e.g. webhook:123")
    limit: int = Field(default=1000, ge=1, le=10000)


class ErrorDetail(BaseModel):
    """The inside of every error body."""

    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """``{"error": {...}}``: the one shape of every 4xx/5xx answer."""

    error: ErrorDetail


class Accepted(BaseModel):
    """The ``202`` answer: the result is committed."""

    id: str
    status: str
    links: dict[str, str]


class LastError(BaseModel):
    """Why a delivery last failed, in Discord's terms."""

    http_status: int | None = None
    discord_code: int | None = None
    message: str | None = None


class DeliveryOut(BaseModel):
    """One destination of a result, secrets masked."""

    destination: dict[str, Any]
    status: str
    attempts: int
    message_ids: list[str]
    last_error: LastError | None
    next_attempt_at: datetime | None


class AttachmentOut(BaseModel):
    """Metadata of a stored attachment; bytes at ``links.download``."""

    index: int
    filename: str
    content_type: str
    size: int
    sha256: str
    download: str


class ResultOut(BaseModel):
    """``GET /v1/results/{id}``."""

    id: str
    status: str
    workflow_id: str | None
    title: str | None
    mode: str
    created_at: datetime
    updated_at: datetime
    deliveries: list[DeliveryOut]
    attachments: list[AttachmentOut]


class ResultPage(BaseModel):
    """A page of the pickup listing, newest first."""

    items: list[ResultOut]
    next_cursor: str | None


class ResultContent(BaseModel):
    """``GET /v1/results/{id}/content``: the original result."""

    id: str
    workflow_id: str | None
    content: str | None = None
    embeds: list[dict[str, Any]] = []
    title: str | None
    summary: str | None
    body: str | None
    fields: list[dict[str, Any]]
    url: str | None
    color: int | None
    level: str | None
    metadata: dict[str, Any]
    attachments: list[AttachmentOut]
    silent: bool = False


def clean_filename(name: str) -> str:
    """Keep the last path component: a filename is never a path (``../../etc/passwd`` → ``passwd``)."""
    base = check_filename(name).replace("\\", "/").rsplit("/", 1)[-1].strip()
    if base in ("", ".", ".."):
        raise ValueError("is not a usable file name")
    return base


class ProgressIn(_TextBounded):
    """``POST /v1/progress``: the newest state of a running workflow, shown in one edited message."""

    workflow_id: str = Field(min_length=1, max_length=255)
    route: list[DestinationIn] = Field(min_length=1, max_length=20)
    stage: str = Field(default="Working", max_length=240)
    current: float | None = Field(default=None, ge=0, strict=True)
    total: float | None = Field(default=None, gt=0, strict=True)
    message: str | None = Field(default=None, max_length=3000)


class ProgressAccepted(BaseModel):
    """The ``202`` answer of ``POST /v1/progress``."""

    workflow_id: str
    destinations: int
    skipped: list[str]


TranscriptionStatus = Literal["queued", "running", "done", "failed"]


class TranscriptionIn(_Strict):
    """The ``payload_json`` part of ``POST /v1/transcriptions``: where the transcript goes and how to make it.

    The route is validated exactly like a result's; the options map onto faster-whisper's.
    """

    route: list[DestinationIn] = Field(min_length=1, max_length=20)
    mode: Mode = "first_success"
    workflow_id: str | None = Field(default=None, max_length=255)
    title: str | None = Field(default=None, max_length=4000)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$",
                                 description="ISO 639-1 code; omitted: detected by the model")
    task: Literal["transcribe", "translate"] = "transcribe"
    model: str | None = Field(default=None, max_length=255,
                              description="must be the relay's configured model (RELAY_WHISPER_MODEL) when given")
    vad_filter: bool = Field(default=False, strict=True)
    word_timestamps: bool = Field(default=False, strict=True)
    metadata: BoundedJson = Field(default_factory=dict)


class TranscriptionAccepted(BaseModel):
    """The ``202`` answer of ``POST /v1/transcriptions``: the audio is committed and the job queued."""

    id: str
    status: TranscriptionStatus
    links: dict[str, str]


class TranscriptionOut(BaseModel):
    """``GET /v1/transcriptions/{id}``: where a job stands.

    ``processed`` and ``duration`` are seconds of audio; ``progress`` is their ratio (0..1).
    """

    id: str
    status: TranscriptionStatus
    filename: str
    size: int
    duration: float | None
    processed: float
    progress: float
    language: str | None
    result_id: str | None
    error: str | None
    attempts: int
    workflow_id: str | None
    created_at: datetime
    updated_at: datetime
    links: dict[str, str]


class DestinationOut(BaseModel):
    """A destination's shared state (no secrets: the label is masked when stored)."""

    key: str
    kind: str
    label: str
    disabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None


class DestinationPage(BaseModel):
    """``GET /v1/destinations``."""

    items: list[DestinationOut]
