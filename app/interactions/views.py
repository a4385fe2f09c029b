"""The messages ``/results`` answers with, and the custom ids of their buttons: pure functions.

Every message here is ephemeral (flag 64: only the user who asked sees it) and within Discord's
limits (2,000 characters of content, 100 characters of a button's custom id or a choice's name
and value, 25 choices). A custom id names only *what* was clicked (``rr:send:res_…``,
``rr:page:undelivered:2``); it carries nothing the relay trusts: who may act on the result is
decided again, from the clicking user, on every click.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.admin.present import age, human_size  # the admin page's words for ages and sizes
from delivery.progress import describe_destination
from delivery.render import render
from schemas.messages import RenderInput
from store.views import DeliveryView, ResultView

EPHEMERAL = 64
PER_PAGE = 10
MAX_CHOICES = 25
CHOICE_TEXT = 100
CUSTOM_ID = 100
CONTENT = 2000

#: The ``status`` option's choices and the result statuses each stands for.
STATUS_CHOICES: dict[str, tuple[str, ...]] = {
    "undelivered": ("undelivered",),
    "in_progress": ("pending", "delivering"),
    "delivered": ("delivered",),
    "picked_up": ("picked_up",),
    "all": (),
}
DEFAULT_STATUS = "undelivered"
ACTIONS = ("send", "dm", "dismiss")
NO_MENTIONS: dict[str, list[str]] = {"parse": []}


@dataclass(frozen=True)
class Click:
    """A parsed custom id: ``action`` is ``page`` (with ``status``, ``page``, ``workflow``) or one of ACTIONS."""

    action: str
    result_id: str | None = None
    status: str = DEFAULT_STATUS
    page: int = 0
    workflow: str | None = None


def page_id(status: str, page: int, workflow: str | None) -> str:
    """The custom id of a Previous/Next button (the workflow filter is cut to fit 100 characters)."""
    base = f"rr:page:{status}:{page}"
    return base if not workflow else f"{base}:{workflow}"[:CUSTOM_ID]


def action_id(action: str, result_id: str) -> str:
    """The custom id of a result's button."""
    return f"rr:{action}:{result_id}"


def parse_custom_id(custom_id: str) -> Click | None:
    """What a custom id asks for, or None for one this relay never made."""
    parts = custom_id.split(":", 4)
    if len(parts) < 3 or parts[0] != "rr":
        return None
    if parts[1] == "page" and len(parts) >= 4 and parts[2] in STATUS_CHOICES and parts[3].isdigit():
        return Click(action="page", status=parts[2], page=min(int(parts[3]), 10_000),
                     workflow=parts[4] if len(parts) == 5 and parts[4] else None)
    if parts[1] in ACTIONS and len(parts) == 3 and parts[2].startswith("res_"):
        return Click(action=parts[1], result_id=parts[2])
    return None


def _failure_words(d: DeliveryView) -> str:
    """Why one destination did not take the result, in a user's words."""
    where = {"webhook": "channel webhook", "dm": "DM", "interaction": "command follow-up"}.get(d.kind, d.kind)
    code, status = d.last_error_code, d.last_error_status
    expired = code == 50027 or status == 401 or "expired" in (d.last_error_message or "")
    if d.kind == "interaction" and expired:
        return f"{where}: the command had expired"
    reasons = {10015: "the webhook was deleted", 10003: "the channel is gone", 50007: "you do not accept DMs",
               50013: "the relay lacks permission", 50001: "the relay lacks access"}
    if code in reasons:
        return f"{where}: {reasons[code]}"
    if d.status == "cancelled":
        return f"{where}: cancelled"
    if d.last_error_message:
        return f"{where}: {d.last_error_message[:80]}"
    return f"{where}: {d.status}"


def why_not_delivered(result: ResultView) -> str:
    """One line on where a result stands: delivered where, on its way, or why it did not arrive."""
    if result.status == "delivered":
        kinds = [d.kind for d in result.deliveries if d.status == "delivered"]
        return "delivered " + (describe_destination(kinds[0]).replace("to you ", "") if kinds else "")
    if result.status == "picked_up":
        return "dismissed (picked up)"
    if result.status in ("pending", "delivering"):
        return "on its way"
    failed = [d for d in result.deliveries if d.status not in ("delivered", "pending", "waiting", "sending")]
    return "; ".join(_failure_words(d) for d in failed) or "no destination took it"


def _title(result: ResultView) -> str:
    text = (result.title or result.workflow_id or result.id).replace("\n", " ").strip()
    return text if len(text) <= 80 else text[:79] + "…"


def list_message(results: Sequence[ResultView], *, status: str, page: int, has_more: bool,
                 workflow: str | None, now: datetime) -> dict[str, Any]:
    """A page of ``/results``: one row per result (title, age, status, why), Previous/Next buttons."""
    scope = "" if status == "all" else f" {status.replace('_', ' ')}"
    if not results:
        text = "No results here." if page else f"You have no{scope} results" + (
            f" of workflow `{workflow}`." if workflow else ".")
        return {"content": text[:CONTENT], "components": [], "allowed_mentions": NO_MENTIONS}
    lines = [f"**Your{scope} results** (page {page + 1}) — open one with `/results show id:`"]
    for r in results:
        lines.append(f"• **{_escape(_title(r))}** · `{r.id}` · {age(r.created_at, now)} ago · {r.status} — "
                     f"{_escape(why_not_delivered(r))}")
    content = _fit(lines)
    buttons = [
        _button("Previous", page_id(status, page - 1, workflow), disabled=page == 0),
        _button("Next", page_id(status, page + 1, workflow), disabled=not has_more),
    ]
    return {"content": content, "components": [{"type": 1, "components": buttons}], "allowed_mentions": NO_MENTIONS}


def show_message(result: ResultView, preview: RenderInput, *, now: datetime, note: str | None = None,
                 actions: bool = True) -> dict[str, Any]:
    """``/results show``: the result's first message as the relay delivers it, its files, three buttons."""
    first = render(preview, destination="interaction")[0].payload
    lines = [f"`{result.id}` · {age(result.created_at, now)} ago · {result.status} — "
             f"{_escape(why_not_delivered(result))}"]
    if result.attachments:
        files = ", ".join(f"`{_escape(a.filename)}` ({human_size(a.size)})" for a in result.attachments)
        lines.append(f"Files: {files}")
    if note:
        lines.append(note)
    message: dict[str, Any] = {"content": _fit(lines), "embeds": first.get("embeds", []),
                               "allowed_mentions": NO_MENTIONS, "components": []}
    if actions and result.status != "picked_up":
        message["components"] = [{"type": 1, "components": [
            _button("Send here", action_id("send", result.id), style=1),
            _button("DM me", action_id("dm", result.id)),
            _button("Dismiss", action_id("dismiss", result.id), style=4),
        ]}]
    return message


def notice(text: str) -> dict[str, Any]:
    """A plain ephemeral answer (not found, not allowed, done)."""
    return {"content": text[:CONTENT], "embeds": [], "components": [], "allowed_mentions": NO_MENTIONS}


def choice(name: str, value: str) -> dict[str, str]:
    """An autocomplete choice, both halves cut to Discord's 100 characters."""
    name = name.replace("\n", " ").strip() or value
    return {"name": name if len(name) <= CHOICE_TEXT else name[: CHOICE_TEXT - 1] + "…", "value": value[:CHOICE_TEXT]}


def _button(label: str, custom_id: str, *, style: int = 2, disabled: bool = False) -> dict[str, Any]:
    return {"type": 2, "style": style, "label": label, "custom_id": custom_id, "disabled": disabled}


def _escape(text: str) -> str:
    """Markdown in a title must not break the list's own formatting (or ping anyone: mentions are off)."""
    for ch in ("\\", "*", "_", "`", "~", "|", ">"):
        text = text.replace(ch, "\\" + ch)
    return text


def _fit(lines: list[str]) -> str:
    """Lines joined within 2,000 characters; rows that do not fit are dropped with a count."""
    out: list[str] = []
    for i, line in enumerate(lines):
        line = line if len(line) <= 400 else line[:399] + "…"
        if len("\n".join([*out, line])) > CONTENT - 40:
            out.append(f"…and {len(lines) - i} more")
            break
        out.append(line)
    return "\n".join(out)

