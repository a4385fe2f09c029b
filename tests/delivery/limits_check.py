"""A strict, independent check of rendered plans against Discord's limits and the renderer's promises.

Written separately from the renderer (it shares only ``utf16_len``-free arithmetic and the
whitespace set) so that a bug in the renderer's own bookkeeping cannot hide here. It is
stricter than Discord where that is cheap: every text must be unchanged by Discord's trim, so
what is shown is exactly what was planned.
"""

from __future__ import annotations

from typing import Any

from delivery.render import ALLOWED_PAYLOAD_KEYS, Limits, MessagePlan, RenderInput, plan_size
from delivery.split import WHITESPACE
from tests.fakes.discord_validation import DiscordLimits, validate_message

_VALIDATOR_KIND = {"webhook": "webhook", "interaction": "interaction", "dm": "channel"}


def units(text: str) -> int:
    """UTF-16 code units, computed the slow obvious way."""
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text)


def _text(value: Any, limit: int, where: str, *, required: bool = True) -> int:
    assert isinstance(value, str), f"{where}: not a string: {value!r}"
    assert units(value) <= limit, f"{where}: {units(value)} > {limit}"
    assert value == value.strip(WHITESPACE), f"{where}: Discord would trim {value[:40]!r}…"
    if required:
        assert value, f"{where}: empty"
    return units(value)


def check_plan(plan: MessagePlan, limits: Limits, destination: str = "webhook") -> None:
    """Raise AssertionError naming the first broken limit of one message plan."""
    payload = plan.payload
    assert payload.keys() <= ALLOWED_PAYLOAD_KEYS[destination], payload.keys()
    assert payload.get("allowed_mentions") == {"parse": []}, "mentions must be off"
    if "content" in payload:
        _text(payload["content"], limits.content, "content")
    embeds = payload.get("embeds", [])
    assert len(embeds) <= limits.embeds_per_message, f"{len(embeds)} embeds"
    total = 0
    for i, embed in enumerate(embeds):
        where = f"embeds[{i}]"
        seen = 0
        if "title" in embed:
            seen += _text(embed["title"], limits.title, f"{where}.title")
        if "url" in embed:
            assert "title" in embed and embed["url"].startswith(("http://", "https://"))
        if "description" in embed:
            seen += _text(embed["description"], limits.description, f"{where}.description")
        fields = embed.get("fields", [])
        assert len(fields) <= limits.fields_per_embed, f"{where}: {len(fields)} fields"
        for j, field in enumerate(fields):
            seen += _text(field["name"], limits.field_name, f"{where}.fields[{j}].name")
            seen += _text(field["value"], limits.field_value, f"{where}.fields[{j}].value")
            assert isinstance(field.get("inline", False), bool)
        if "footer" in embed:
            seen += _text(embed["footer"]["text"], limits.footer, f"{where}.footer")
        if "author" in embed:
            seen += _text(embed["author"]["name"], limits.author, f"{where}.author")
        if "color" in embed:
            assert 0 <= embed["color"] <= 0xFFFFFF
        media = any(isinstance(embed.get(k), dict) and embed[k].get("url") for k in ("image", "thumbnail"))
        assert seen or fields or media, f"{where} shows nothing"
        total += seen
    assert total <= limits.embed_total, f"{total} embed characters"
    files = plan.files
    assert embeds or files or payload.get("content"), "empty message"
    assert len(files) <= limits.files_per_message, f"{len(files)} files"
    if files:
        refs = payload["attachments"]
        assert [r["id"] for r in refs] == [str(i) for i in range(len(files))]  # snowflake strings
        assert [r["filename"] for r in refs] == [f.filename for f in files]
    else:
        assert "attachments" not in payload
    for part in files:
        assert part.filename and len(part.filename) <= 1024
        assert 0 <= part.length <= limits.max_attachment_bytes, f"{part.filename}: {part.length} bytes"
        if part.data is not None:
            assert part.attachment_index is None and len(part.data) == part.length
        else:
            assert part.attachment_index is not None and part.offset >= 0
    assert plan_size(plan) <= limits.max_request_bytes


def check_plans(plans: list[MessagePlan], result: RenderInput, limits: Limits, destination: str = "webhook") -> None:
    """Check every plan with both this checker and the Discord emulator's validator."""
    assert plans, "no message at all"
    discord = DiscordLimits(max_file_bytes=limits.max_attachment_bytes, max_request_bytes=limits.max_request_bytes)
    by_index = {a.index: a for a in result.attachments}
    for plan in plans:
        check_plan(plan, limits, destination)
        files = [(f"files[{i}]", part.length) for i, part in enumerate(plan.files)]
        validate_message(plan.payload, files, kind=_VALIDATOR_KIND[destination], limits=discord)  # type: ignore[arg-type]
        for part in plan.files:
            if part.attachment_index is not None:
                assert part.offset + part.length <= by_index[part.attachment_index].size
