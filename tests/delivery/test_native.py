"""Native embeds and content: valid by the emulator, lossless, in order, files beside the embeds that show them.

The expected embed is worked out here from the producer's input (Discord trims text and refuses
blank field text, so that is the only change allowed); the rendered plans are read back part by
part and must give it back exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from delivery.render import AttachmentRef, Limits, MessagePlan, RenderInput, reassemble_body, render, smaller
from delivery.split import ZWSP, decode_piece, discord_trim, utf16_len
from schemas.embeds import Embed
from tests.delivery.limits_check import check_plans
from tests.delivery.test_split import documents

#: Small message limits (per-embed text limits stay Discord's: those are validated, not split).
SMALL = Limits(embeds_per_message=3, description=500, fields_per_embed=6, embed_total=3000, content=300,
               files_per_message=3, max_attachment_bytes=40_000, max_request_bytes=256 * 1024)
LIMIT_SETS = [Limits(), SMALL, smaller(Limits()), dataclasses.replace(SMALL, max_attachment_bytes=300)]
FILES = [AttachmentRef(i, f"img{i}.png", "image/png", size, hashlib.sha256(bytes([i])).hexdigest())
         for i, size in enumerate([120, 2_000, 30_000, 5_000_000])]

short = st.text(max_size=60)
urls = st.sampled_from(["https://example.com/a.png", "http://example.org/b"])
file_urls = st.one_of(urls, st.sampled_from([f"attachment://{f.filename}" for f in FILES]))
long_text = st.one_of(documents, documents.map(lambda d: d * 8), st.just("word " * 1200))
fields = st.fixed_dictionaries(
    {"name": st.one_of(short, st.just(" "), st.text(min_size=200, max_size=256, alphabet="abc \n")),
     "value": st.one_of(short, st.just("\n"), st.text(min_size=900, max_size=1024, alphabet="xyz \n`"))},
    optional={"inline": st.booleans()})
embeds = st.fixed_dictionaries({}, optional={
    "type": st.just("rich"),
    "title": st.one_of(short, st.text(min_size=250, max_size=256, alphabet="T ")),
    "description": st.one_of(short, long_text),
    "url": urls,
    "color": st.integers(0, 0xFFFFFF),
    "timestamp": st.just("2026-12-02T18:00:00+00:00"),
    "fields": st.lists(fields, max_size=25),
    "footer": st.fixed_dictionaries({"text": st.one_of(short, st.text(min_size=2000, max_size=2048, alphabet="f "))},
                                    optional={"icon_url": file_urls}),
    "author": st.fixed_dictionaries({"name": short}, optional={"url": urls, "icon_url": file_urls}),
    "image": st.fixed_dictionaries({"url": file_urls}, optional={"width": st.integers(1, 99)}),
    "thumbnail": st.fixed_dictionaries({"url": file_urls}),
    "flags": st.just(0),
})


def _valid(embed: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return Embed.model_validate(embed).stored()
    except ValidationError:
        return None


def _whole(embed: dict[str, Any], limits: Limits) -> bool:
    texts = (embed.get("title", ""), embed.get("description", ""), embed.get("footer", {}).get("text", ""),
             embed.get("author", {}).get("name", ""))
    chars = sum(utf16_len(t) for t in texts)
    chars += sum(utf16_len(f["name"]) + utf16_len(f["value"]) for f in embed.get("fields", ()))
    return (chars <= limits.embed_total and utf16_len(embed.get("description", "")) <= limits.description
            and len(embed.get("fields", ())) <= limits.fields_per_embed)


def expected(embed: dict[str, Any]) -> dict[str, Any]:
    """What Discord should show of a stored embed: text trimmed, blank field text a ZWSP, nothing else changed."""
    out: dict[str, Any] = {k: embed[k] for k in ("type", "color", "timestamp") if k in embed}
    if title := discord_trim(embed.get("title", "")):
        out["title"] = title
        if "url" in embed:
            out["url"] = embed["url"]
    if description := discord_trim(embed.get("description", "")):
        out["description"] = description
    if embed.get("fields"):
        out["fields"] = [{"name": discord_trim(f["name"]) or ZWSP, "value": discord_trim(f["value"]) or ZWSP,
                          **({"inline": f["inline"]} if "inline" in f else {})} for f in embed["fields"]]
    if (name := discord_trim(embed.get("author", {}).get("name", ""))):
        out["author"] = {**embed["author"], "name": name}
    if (text := discord_trim(embed.get("footer", {}).get("text", ""))):
        out["footer"] = {**embed["footer"], "text": text}
    for key in ("image", "thumbnail"):
        if key in embed:
            out[key] = dict(embed[key])
    return out


def _unresolved(embed: dict[str, Any], plan: MessagePlan) -> dict[str, Any]:
    """The embed with each ``attachment://`` URL mapped back to the stored file it shows."""
    sent = {part.filename: part for part in plan.files}
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in embed.items()}
    for holder, key in (("author", "icon_url"), ("thumbnail", "url"), ("image", "url"), ("footer", "icon_url")):
        url = out.get(holder, {}).get(key, "")
        if url.startswith("attachment://") and url[13:] in sent:
            part = sent[url[13:]]
            assert part.attachment_index is not None and part.length == FILES[part.attachment_index].size
            out[holder][key] = f"attachment://{FILES[part.attachment_index].filename}"
    return out


def read_back(plans: list[MessagePlan], wanted: list[dict[str, Any]], limits: Limits) -> int:
    """Assert the plans show ``wanted`` in order, whole or in consecutive parts; the embeds they used."""
    stream = [(plan, embed) for plan in plans for embed in plan.payload.get("embeds", ())]
    at = 0
    for want in wanted:
        if _whole(want, limits):
            plan, got = stream[at]
            assert _unresolved(got, plan) == want
            at += 1
            continue
        parts = []
        text, seen_fields = "", []
        while True:
            plan, got = stream[at]
            at += 1
            got = _unresolved(got, plan)
            parts.append(got)
            assert {k: got[k] for k in ("type", "color") if k in got} == {
                k: want[k] for k in ("type", "color") if k in want}, "every part keeps the colour"
            if "description" in got:
                assert not seen_fields, "the description comes before the fields"
                text += decode_piece(got["description"])
            seen_fields += got.get("fields", [])
            foot = {"footer", "image", "timestamp"}
            if text == want.get("description", "") and seen_fields == want.get("fields", []) and (
                    not foot & want.keys() or foot & got.keys()):
                break
        head = {k: parts[0][k] for k in ("title", "url", "author", "thumbnail") if k in parts[0]}
        foot = {k: parts[-1][k] for k in ("image", "footer", "timestamp") if k in parts[-1]}
        assert head == {k: want[k] for k in ("title", "url", "author", "thumbnail") if k in want}
        assert foot == {k: want[k] for k in ("image", "footer", "timestamp") if k in want}
        for middle in parts[1:]:
            assert not {"title", "url", "author", "thumbnail"} & middle.keys()
        for middle in parts[:-1]:
            assert not {"image", "footer", "timestamp"} & middle.keys() or middle is parts[0] is parts[-1]
    return at


def _content_seen(plans: list[MessagePlan]) -> str:
    pieces = [plan.payload["content"] for plan in plans if "content" in plan.payload]
    return pieces[0] if len(pieces) == 1 else "".join(decode_piece(p) for p in pieces)


def _check(result: RenderInput, limits: Limits, destination: str = "webhook") -> list[MessagePlan]:
    plans = render(result, limits, destination=destination)  # type: ignore[arg-type]
    check_plans(plans, result, limits, destination)
    assert plans == render(result, limits, destination=destination)  # type: ignore[arg-type]
    # Content first, whole, and the embeds start no earlier than its last piece.
    assert _content_seen(plans) == discord_trim(result.content or "")
    with_content = [i for i, p in enumerate(plans) if "content" in p.payload]
    with_embeds = [i for i, p in enumerate(plans) if p.payload.get("embeds")]
    if with_content and with_embeds:
        assert with_content == list(range(len(with_content))) and with_embeds[0] >= with_content[-1]
    used = read_back(plans, [expected(e) for e in result.embeds], limits)
    # Whatever follows is the relay's own rendering, and its body is whole.
    own = [MessagePlan({"embeds": [e for e in p.payload.get("embeds", ())]}, p.files) for p in plans]
    skipped, rest = used, []
    for plan in own:
        keep = plan.payload["embeds"][skipped:]
        skipped = max(0, skipped - len(plan.payload["embeds"]))
        rest.append(MessagePlan({"embeds": keep}, plan.files))
    assert reassemble_body(rest) == (result.body or "")
    # Every file arrives: those an embed shows beside it, the others somewhere, whole or in parts.
    sent = {part.attachment_index for plan in plans for part in plan.files}
    assert {a.index for a in result.attachments} <= sent
    return plans


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw=st.lists(embeds, max_size=14), content=st.one_of(st.none(), short, long_text),
       limits=st.sampled_from(LIMIT_SETS), destination=st.sampled_from(["webhook", "interaction", "dm"]),
       own=st.sampled_from([{}, {"title": "Relay title", "body": "Body\n\n" * 300},
                            {"summary": "s", "level": "error"}]))
def test_native_embeds_render_valid_lossless_and_in_order(raw: list[dict[str, Any]], content: str | None,
                                                          limits: Limits, destination: str,
                                                          own: dict[str, Any]) -> None:
    valid = [_valid(e) for e in raw]
    assume(all(v is not None for v in valid))
    used_files = {e.get(h, {}).get(k, "")[13:] for e in raw for h, k in (("image", "url"), ("thumbnail", "url"),
                                                                          ("author", "icon_url"),
                                                                          ("footer", "icon_url"))}
    files = tuple(f for f in FILES if f.filename in used_files or f.index == 0)
    result = RenderInput(content=content, embeds=tuple(v for v in valid if v is not None), attachments=files, **own)
    _check(result, limits, destination)


def test_fifteen_embeds_and_a_long_description_in_order() -> None:
    embeds = tuple({"title": f"Embed {i}", "description": ("Long paragraph. " * 700 if i == 4 else f"text {i}"),
                    "color": 0x5865F2, "fields": [{"name": "n", "value": str(i)}]} for i in range(15))
    plans = _check(RenderInput(embeds=embeds), Limits())
    titles = [e.get("title") for p in plans for e in p.payload["embeds"]]
    assert [t for t in titles if t] == [f"Embed {i}" for i in range(15)]
    assert titles.count(None) >= 2  # "Long paragraph. " * 700 is 11,200 characters: three parts at least
    # 11,400 characters in 18 or so embeds: two messages could not hold them, three do.
    assert all(len(p.payload["embeds"]) <= 10 for p in plans) and len(plans) == 3


def test_over_long_content_continues_and_embeds_follow() -> None:
    content = "\n\n".join(f"Paragraph {i}: " + "word " * 80 for i in range(20))
    plans = _check(RenderInput(content=content, embeds=({"title": "after"},)), Limits())
    assert len([p for p in plans if "content" in p.payload]) == 5
    assert plans[-1].payload["embeds"] == [{"title": "after"}] and "content" in plans[-1].payload


def test_attachment_shown_by_an_embed_travels_with_it() -> None:
    embeds = tuple({"title": f"chart {i}", "description": "d" * 1500, "image": {"url": f"attachment://{f.filename}"}}
                   for i, f in enumerate(FILES[:3]))
    plans = _check(RenderInput(embeds=embeds * 3, attachments=FILES[:3]), Limits())
    for plan in plans:
        names = {p.filename for p in plan.files}
        for embed in plan.payload["embeds"]:
            assert embed["image"]["url"][13:] in names


def test_mixed_result_native_embeds_first_then_the_relay_rendering() -> None:
    result = RenderInput(title="Relay's own", summary="summary", embeds=({"title": "native", "color": 1},),
                         content="hi")
    plans = _check(result, Limits())
    assert len(plans) == 1 and plans[0].payload["content"] == "hi"
    assert [e["title"] for e in plans[0].payload["embeds"]] == ["native", "Relay's own"]


def test_an_embed_too_large_for_one_embed_splits_fields_and_keeps_its_foot_last() -> None:
    embed = {"title": "t", "author": {"name": "a"}, "thumbnail": {"url": "https://x.example/t.png"},
             "fields": [{"name": f"f{i}", "value": "v" * 1000} for i in range(25)],
             "footer": {"text": "foot"}, "image": {"url": "https://x.example/i.png"},
             "timestamp": "2026-12-02T18:00:00Z", "color": 7}
    plans = _check(RenderInput(embeds=(embed,)), Limits())
    parts = [e for p in plans for e in p.payload["embeds"]]
    assert len(parts) == 5 and all(part["color"] == 7 for part in parts)
    assert parts[0]["title"] == "t" and "footer" not in parts[0] and parts[-1]["footer"] == {"text": "foot"}


def test_keys_discord_sets_itself_are_not_sent() -> None:
    stored = _valid({"title": "t", "flags": 0, "image": {"url": "https://a.example/x.png", "proxy_url": "https://p/x",
                                                         "width": 4, "placeholder": "abc"}})
    assert stored is not None
    embed = render(RenderInput(embeds=(stored,)))[0].payload["embeds"][0]
    assert embed == {"title": "t", "image": {"url": "https://a.example/x.png", "width": 4}}


@pytest.mark.parametrize("limits", LIMIT_SETS)
def test_a_file_too_big_to_go_whole_is_still_delivered(limits: Limits) -> None:
    big = FILES[3]
    plans = _check(RenderInput(embeds=({"title": "t", "image": {"url": f"attachment://{big.filename}"}},),
                               attachments=(big,)), limits)
    assert sum(p.length for plan in plans for p in plan.files if p.attachment_index == big.index) == big.size
