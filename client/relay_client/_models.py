"""The wire models: ``TypedDict`` for what the client sends, frozen dataclasses for what it reads.

Requests are ``TypedDict`` so a plain ``dict`` of the ``/v1/results`` body is a valid argument and
mypy still checks a literal. Responses are dataclasses built by ``from_dict``, which ignores keys it
does not know: a newer relay may add fields without breaking an older client.
``tests/client/test_openapi.py`` checks both against the server's live ``/openapi.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypedDict


class _WebhookRequired(TypedDict):
    type: Literal["webhook"]
    url: str


class WebhookRoute(_WebhookRequired, total=False):
    """``{"type": "webhook", "url": ..., "thread_id": ...}``; ``thread_name`` opens a forum post."""

    thread_id: str
    thread_name: str
    applied_tags: list[str]
    silent: bool


class DMRoute(TypedDict):
    """``{"type": "dm", "user_id": ...}``."""

    type: Literal["dm"]
    user_id: str


class _InteractionRequired(TypedDict):
    # Required keys in a base class, as ``_ResultRequired`` below: ``NotRequired[]`` is lost to
    # string annotations at runtime.
    type: Literal["interaction"]
    application_id: str
    token: str
    created_at: str


class InteractionRoute(_InteractionRequired, total=False):
    """``{"type": "interaction", "application_id": ..., "token": ..., "created_at": ..., "user_id": ...}``.

    ``user_id`` (optional) is the user who ran the command: they may fetch the result later with
    the relay's ``/results`` command if it never reached them.
    """

    user_id: str


Destination = WebhookRoute | DMRoute | InteractionRoute


class _FieldRequired(TypedDict):
    name: str
    value: str


class Field(_FieldRequired, total=False):
    """An embed field of the relay's own rendering."""

    inline: bool


class _AttachmentRequired(TypedDict):
    filename: str
    content_base64: str


class Attachment(_AttachmentRequired, total=False):
    """A file inline as base64 (``files=`` sends it as multipart instead, without base64)."""

    content_type: str


class _ResultRequired(TypedDict):
    # Required keys sit in a base class: ``Required[]`` is lost to string annotations at runtime.
    route: list[Destination]


class Result(_ResultRequired, total=False):
    """The body of ``POST /v1/results``; ``route`` is the only required key.

    ``content`` and ``embeds`` are Discord's own (an embed as ``discord.Embed.to_dict()`` makes it);
    the relay sends them first, then its own rendering of ``title``/``summary``/``body``/``fields``.
    """

    workflow_id: str
    content: str
    embeds: list[dict[str, Any]]
    title: str
    summary: str
    body: str
    fields: list[Field]
    url: str
    color: int
    level: Literal["info", "success", "warning", "error"]
    attachments: list[Attachment]
    mode: Literal["first_success", "all"]
    silent: bool
    metadata: dict[str, Any]
    discord_user_ids: list[str]


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None


@dataclass(frozen=True)
class Receipt:
    """What ``send`` returns: the result's id, or ``spooled=True`` (id ``None``) if the spool holds it.

    ``idempotency_key`` is the key the result was (or will be) sent with: the spool's flusher
    sends with the same key, so the relay creates the result once however often it is sent.
    """

    id: str | None
    spooled: bool
    idempotency_key: str
    status: str | None = None
    replayed: bool = False


@dataclass(frozen=True)
class LastError:
    """Why a delivery last failed, in Discord's terms."""

    http_status: int | None = None
    discord_code: int | None = None
    message: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LastError:
        """Parse the relay's JSON."""
        return cls(data.get("http_status"), data.get("discord_code"), data.get("message"))


@dataclass(frozen=True)
class Delivery:
    """One destination of a result (secrets masked by the relay)."""

    destination: dict[str, Any]
    status: str
    attempts: int
    message_ids: list[str]
    last_error: LastError | None
    next_attempt_at: datetime | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Delivery:
        """Parse the relay's JSON."""
        err = data.get("last_error")
        return cls(data["destination"], data["status"], int(data["attempts"]), list(data.get("message_ids") or []),
                   LastError.from_dict(err) if err else None, _dt(data.get("next_attempt_at")))


@dataclass(frozen=True)
class AttachmentInfo:
    """A stored attachment's metadata; the bytes are at ``download``."""

    index: int
    filename: str
    content_type: str
    size: int
    sha256: str
    download: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttachmentInfo:
        """Parse the relay's JSON."""
        return cls(int(data["index"]), data["filename"], data["content_type"], int(data["size"]), data["sha256"],
                   data["download"])


FINAL_STATUSES = frozenset({"delivered", "undelivered", "picked_up"})


@dataclass(frozen=True)
class ResultInfo:
    """``GET /v1/results/{id}``: the status and every delivery's state."""

    id: str
    status: str
    workflow_id: str | None
    title: str | None
    mode: str
    created_at: datetime | None
    updated_at: datetime | None
    deliveries: list[Delivery] = field(default_factory=list)
    attachments: list[AttachmentInfo] = field(default_factory=list)

    @property
    def final(self) -> bool:
        """Whether the relay is done with it (delivered, undelivered or picked up)."""
        return self.status in FINAL_STATUSES

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultInfo:
        """Parse the relay's JSON."""
        return cls(data["id"], data["status"], data.get("workflow_id"), data.get("title"), data.get("mode", ""),
                   _dt(data.get("created_at")), _dt(data.get("updated_at")),
                   [Delivery.from_dict(d) for d in data.get("deliveries") or []],
                   [AttachmentInfo.from_dict(a) for a in data.get("attachments") or []])


@dataclass(frozen=True)
class ProgressReceipt:
    """The answer of ``POST /v1/progress``."""

    workflow_id: str
    destinations: int
    skipped: list[str]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProgressReceipt:
        """Parse the relay's JSON."""
        return cls(data["workflow_id"], int(data["destinations"]), list(data.get("skipped") or []))


@dataclass(frozen=True)
class TranscriptionReceipt:
    """The answer of ``POST /v1/transcriptions``: the audio is stored and the job queued."""

    id: str
    status: str
    links: dict[str, str]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TranscriptionReceipt:
        """Parse the relay's JSON."""
        return cls(data["id"], data["status"], dict(data.get("links") or {}))
