"""What the admin templates show, computed in Python: error words, ages, safe markdown, the chart, the preview.

Templates only lay these out. Markdown goes through markdown-it with raw HTML off and links
restricted to http(s), so producer text can never inject markup or ``javascript:`` links; every
other string is escaped by Jinja's autoescape.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

from app.settings import Settings
from store.admin import HourBucket
from store.views import ResultContentView

log = logging.getLogger("relay.admin")
ZWSP = "\u200b"

_CODE_WORDS = {
    10003: "channel deleted",
    10015: "webhook deleted",
    10062: "unknown interaction",
    40005: "too large",
    50001: "missing access",
    50006: "empty message",
    50007: "DMs closed",
    50013: "missing permission",
    50027: "interaction expired",
    50035: "invalid payload",
    50045: "file too large",
    50109: "invalid JSON",
}
_FIELD_PATH = re.compile(r"\b[a-z_]+(?:\.[A-Za-z0-9_]+)+\b")


def describe_error(status: int | None, code: int | None, message: str | None) -> str | None:
    """A delivery's last error in words, e.g. ``webhook deleted (Discord 10015)``; None without one."""
    if status is None and code is None and not message:
        return None
    if code in _CODE_WORDS:
        words = _CODE_WORDS[code]
        if code == 50035 and message and (path := _FIELD_PATH.search(message)):
            return f"{words} ({code}: {path.group(0)})"
        return f"{words} (Discord {code})" if code in (10003, 10015) else f"{words} ({code})"
    if status == 429:
        return "rate limited"
    if status is not None and status >= 500:
        return f"Discord unavailable ({status})"
    if status == 401:
        return "unauthorized (401)"
    if status == 413:
        return "too large (413)"
    if status is not None:
        detail = f": {message}" if message else ""
        return f"HTTP {status}{f' / {code}' if code else ''}{detail}"
    return message


def age(then: datetime | None, now: datetime) -> str:
    """A short human age: ``45 s``, ``12 min``, ``3 h``, ``5 d``."""
    if then is None:
        return ""
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def human_size(size: int) -> str:
    """Bytes as ``532 B``, ``1.2 KiB``, ``8.0 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _http_only(url: str) -> bool:
    return url.strip().lower().startswith(("http://", "https://"))


def _link_open(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    tokens[idx].attrSet("rel", "nofollow noopener noreferrer")
    return str(self.renderToken(tokens, idx, options, env))


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"]).disable("image")
    md.validateLink = _http_only  # type: ignore[method-assign]
    md.add_render_rule("link_open", _link_open)
    return md


_MD = _markdown()


def markdown(text: str | None) -> Markup:
    """Producer markdown as safe HTML: no raw HTML, no images, links only to http(s)."""
    return Markup(_MD.render(text or ""))  # markdown-it escapes all text with html=False


# --- chart --------------------------------------------------------------------------------------

CHART_W, CHART_H, CHART_PAD = 720, 180, 28


@dataclass(frozen=True)
class Bar:
    """One hour of the chart: a delivered and a failed bar side by side."""

    x: float
    width: float
    ok_y: float
    ok_h: float
    fail_x: float
    fail_y: float
    fail_h: float
    label: str
    tick: str | None


@dataclass(frozen=True)
class Chart:
    """Geometry of the 24-hour SVG chart, computed here so the template only draws rectangles."""

    width: int
    height: int
    base_y: float
    top: int
    delivered: int
    failed: int
    bars: list[Bar] = field(default_factory=list)


def chart(buckets: list[HourBucket]) -> Chart:
    """Scale hourly counts into bars (the y axis tops at the busiest hour, at least 1)."""
    top = max([1, *(max(b.delivered, b.failed) for b in buckets)])
    plot_h = CHART_H - 2 * CHART_PAD
    slot = (CHART_W - 2 * CHART_PAD) / max(1, len(buckets))
    bar_w = slot * 0.38
    bars = []
    for i, b in enumerate(buckets):
        x = CHART_PAD + i * slot + slot * 0.1
        ok_h = plot_h * b.delivered / top
        fail_h = plot_h * b.failed / top
        base = CHART_H - CHART_PAD
        bars.append(Bar(
            x=round(x, 1), width=round(bar_w, 1), ok_y=round(base - ok_h, 1), ok_h=round(ok_h, 1),
            fail_x=round(x + bar_w, 1), fail_y=round(base - fail_h, 1), fail_h=round(fail_h, 1),
            label=f"{b.start:%H}:00 UTC: {b.delivered} delivered, {b.failed} failed",
            tick=f"{b.start:%H}h" if i % 4 == 0 else None,
        ))
    return Chart(width=CHART_W, height=CHART_H, base_y=CHART_H - CHART_PAD, top=top,
                 delivered=sum(b.delivered for b in buckets), failed=sum(b.failed for b in buckets), bars=bars)


# --- Discord preview ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbedPreview:
    """One embed as the template draws it."""

    color: str
    author: str | None
    title: str | None
    url: str | None
    description: Markup | None
    fields: list[dict[str, Any]]
    footer: str | None
    image: str | None = None
    thumbnail: str | None = None


@dataclass(frozen=True)
class MessagePreview:
    """One Discord message: optional content, its embeds and file chips."""

    content: Markup | None
    embeds: list[EmbedPreview]
    files: list[tuple[str, str]]
    silent: bool = False  # sent with SUPPRESS_NOTIFICATIONS: nobody is notified


def _shown(text: str) -> str:
    # The renderer guards whitespace with ZWSP so Discord's trimming keeps it; Discord draws nothing
    # for a ZWSP-only line, and neither should the preview (markdown-it would draw an empty paragraph).
    return "\n".join(line for line in text.split("\n") if ZWSP not in line or line.strip(ZWSP + " ")).strip(ZWSP)


def _embed(embed: dict[str, Any]) -> EmbedPreview:
    color = embed.get("color")
    url = embed.get("url")
    return EmbedPreview(
        color=f"#{color:06x}" if isinstance(color, int) else "#4f545c",
        author=(embed.get("author") or {}).get("name"), title=embed.get("title"),
        url=url if isinstance(url, str) and _http_only(url) else None,
        description=markdown(_shown(embed["description"])) if embed.get("description") else None,
        fields=[{"name": f.get("name", ""), "value": markdown(f.get("value", "")), "inline": bool(f.get("inline"))}
                for f in embed.get("fields", ())],
        footer=(embed.get("footer") or {}).get("text", "").strip(ZWSP) or None,  # a lone ZWSP: no footer
        image=(embed.get("image") or {}).get("url"), thumbnail=(embed.get("thumbnail") or {}).get("url"),
    )


def preview(content: ResultContentView, settings: Settings) -> tuple[list[MessagePreview], str | None]:
    """The result as the delivery engine would send it, or ``([], why)`` when rendering failed."""
    from delivery.render import SUPPRESS_NOTIFICATIONS, AttachmentRef, Field, Limits, RenderInput, render

    level = content.level if content.level in ("info", "success", "warning", "error") else None
    source = RenderInput(
        title=content.title, summary=content.summary, body=content.body,
        fields=tuple(Field(name=str(f.get("name", "")), value=str(f.get("value", "")), inline=bool(f.get("inline")))
                     for f in content.fields),
        url=content.url, color=content.color, level=level, workflow_id=content.workflow_id,  # type: ignore[arg-type]
        attachments=tuple(AttachmentRef(index=a.index, filename=a.filename, content_type=a.content_type,
                                        size=a.size, sha256=a.sha256) for a in content.attachments),
        content=content.content, embeds=tuple(content.embeds),
    )
    limits = Limits(max_attachment_bytes=settings.max_attachment_bytes, max_body_messages=settings.max_body_messages)
    try:
        plans = render(source, limits)
    except Exception as exc:  # a preview must never take the detail page down with it
        log.exception("preview of %s failed", content.id)
        return [], f"the renderer failed: {type(exc).__name__}"
    return [
        MessagePreview(
            content=markdown(plan.payload["content"]) if plan.payload.get("content") else None,
            embeds=[_embed(e) for e in plan.payload.get("embeds", ())],
            files=[(part.filename, human_size(part.length if part.data is None else len(part.data)))
                   for part in plan.files],
            silent=content.silent or bool(int(plan.payload.get("flags") or 0) & SUPPRESS_NOTIFICATIONS),
        )
        for plan in plans
    ], None
