"""Rendering: every plan valid for Discord, the body lossless, attachments rejoin byte for byte."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delivery.render import (
    LEVEL_COLORS,
    AttachmentRef,
    Field,
    FilePart,
    Limits,
    MessagePlan,
    RenderInput,
    plan_size,
    reassemble_body,
    render,
    smaller,
)
from delivery.split import ZWSP, discord_trim, utf16_len
from tests.delivery.limits_check import check_plans
from tests.delivery.test_split import documents

MIB = 1024 * 1024
#: Scaled-down limits: many pieces, embeds and messages from small inputs.
TINY = Limits(
    embeds_per_message=4,
    title=64,
    description=300,
    fields_per_embed=5,
    field_name=64,
    field_value=200,
    author=64,
    embed_total=900,
    files_per_message=3,
    max_attachment_bytes=40_000,
    max_request_bytes=256 * 1024,
    max_body_messages=6,
)


def _trimmed(plans: list[MessagePlan]) -> list[MessagePlan]:
    """The plans as Discord stores them: every description trimmed."""
    out = []
    for plan in plans:
        payload = json.loads(json.dumps(plan.payload))
        for embed in payload.get("embeds", []):
            if "description" in embed:
                embed["description"] = discord_trim(embed["description"])
        out.append(MessagePlan(payload, plan.files))
    return out


def _attachment(index: int, size: int, name: str = "video.mp4") -> tuple[AttachmentRef, bytes]:
    data = random.Random(index * 7919 + size).randbytes(size)
    ref = AttachmentRef(index, name, "video/mp4", size, hashlib.sha256(data).hexdigest())
    return ref, data


def _rejoin(plans: list[MessagePlan], blobs: dict[int, bytes]) -> dict[int, bytes]:
    """Cut each attachment by its FileParts, in plan order, and glue the parts back together."""
    out: dict[int, bytearray] = {}
    for plan in plans:
        for part in plan.files:
            if part.attachment_index is None:
                continue
            joined = out.setdefault(part.attachment_index, bytearray())
            assert part.offset == len(joined), "parts out of order or overlapping"
            joined += blobs[part.attachment_index][part.offset : part.offset + part.length]
    return {k: bytes(v) for k, v in out.items()}


def _render_checked(result: RenderInput, limits: Limits = Limits(), destination: str = "webhook") -> list[MessagePlan]:
    plans = render(result, limits, destination=destination)  # type: ignore[arg-type]
    check_plans(plans, result, limits, destination)
    assert reassemble_body(plans) == (result.body or "")
    assert reassemble_body(_trimmed(plans)) == (result.body or "")
    assert plans == render(result, limits, destination=destination)  # type: ignore[arg-type]
    return plans


# --------------------------------------------------------------------------- properties

labels = st.one_of(st.none(), st.text(max_size=30), st.text(min_size=250, max_size=400), documents)
fields = st.builds(
    Field,
    name=st.one_of(st.text(max_size=20), st.text(min_size=250, max_size=300)),
    value=labels.map(lambda v: v or ""),
    inline=st.booleans(),
)
results = st.builds(
    RenderInput,
    title=labels,
    summary=st.one_of(st.none(), documents),
    body=st.one_of(st.none(), documents, documents.map(lambda d: d * 20)),
    fields=st.lists(fields, max_size=40).map(tuple),
    url=st.one_of(st.none(), st.just("https://example.com/run/1"), st.text(max_size=10)),
    color=st.one_of(st.none(), st.integers(min_value=-5, max_value=0x1000000)),
    level=st.one_of(st.none(), st.sampled_from(["info", "success", "warning", "error"])),
    workflow_id=st.one_of(st.none(), st.text(max_size=300)),
)
limit_sets = st.sampled_from([Limits(), TINY, dataclasses.replace(TINY, max_body_messages=0), smaller(Limits())])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(result=results, limits=limit_sets, destination=st.sampled_from(["webhook", "interaction", "dm"]))
def test_any_result_renders_valid_and_lossless(result: RenderInput, limits: Limits, destination: str) -> None:
    _render_checked(result, limits, destination)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=150_000), max_size=8),
    body=st.one_of(st.none(), documents),
    limits=st.sampled_from([TINY, smaller(smaller(Limits()))]),
)
def test_attachments_rejoin_byte_identical(sizes: list[int], body: str | None, limits: Limits) -> None:
    pairs = [_attachment(i, size, f"file{i}.bin") for i, size in enumerate(sizes)]
    result = RenderInput(title="files", body=body, attachments=tuple(ref for ref, _ in pairs))
    plans = _render_checked(result, limits)
    blobs = {ref.index: data for ref, data in pairs}
    rejoined = _rejoin(plans, blobs)
    for ref, _data in pairs:
        assert hashlib.sha256(rejoined[ref.index]).hexdigest() == ref.sha256
    files = sum(len(p.files) for p in plans)
    assert len(plans) <= max(1, math.ceil(files / limits.files_per_message)) + 2


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32), as_file=st.booleans())
def test_multi_megabyte_bodies(seed: int, as_file: bool) -> None:
    rnd = random.Random(seed)
    words = ["lorem", "ipsum", "\n\n", "\r\n", "```py\n", "```", "😀", "👩‍🔬", "é", "`x`", "[a](http://b)", "x" * 300]
    body = " ".join(rnd.choice(words) for _ in range(150_000 if as_file else 40_000))
    limits = Limits() if as_file else Limits(max_body_messages=10**6)
    plans = _render_checked(RenderInput(title="big", body=body), limits)
    if as_file:
        assert len(plans) == 1 and plans[0].files[0].filename == "result.md"
    else:
        # Fewest messages: within 5% of the character lower bound (plus the final partial one).
        assert len(plans) <= math.ceil(utf16_len(body) / 6000) * 1.05 + 1


# --------------------------------------------------------------------------- typical results


def _bodies(plans: list[MessagePlan]) -> list[dict]:
    return [e for p in plans for e in p.payload.get("embeds", []) if "footer" in e]


def test_video_analysis_report() -> None:
    scenes = "\n".join(
        f"- **{m:02d}:{s:02d}** scene {m * 3 + s // 20}: person walks past the car"
        for m in range(20)
        for s in (0, 20, 40)
    )
    body = (
        "## Timeline\n\n"
        + scenes
        + "\n\n## Objects\n\n"
        + "\n".join(f"* object {i}: car, 0.9{i % 10}" for i in range(150))
        + "\n\n## Notes\n\n"
        + "The footage is stable. " * 120
    )
    result = RenderInput(
        title="Video analysis: parking-lot.mp4",
        summary="20-minute video analysed: 60 scenes, 150 objects, no incidents.",
        body=body,
        fields=(Field("Duration", "20:00", True), Field("Scenes", "60", True), Field("Model", "yolo-v8", True)),
        url="https://example.com/runs/42",
        level="success",
        workflow_id="wf_video_42",
    )
    plans = _render_checked(result)
    assert len(plans) == 2 == math.ceil((utf16_len(body) + 200) / 6000)
    header = plans[0].payload["embeds"][0]
    assert header["title"] == "✅ Video analysis: parking-lot.mp4"
    assert header["author"]["name"] == "wf_video_42" and header["url"] == "https://example.com/runs/42"
    assert header["color"] == LEVEL_COLORS["success"] and [f["name"] for f in header["fields"]] == [
        "Duration",
        "Scenes",
        "Model",
    ]
    markers = [e["footer"]["text"] for e in _bodies(plans)]
    assert markers == [f"({k}/{len(markers)})" for k in range(1, len(markers) + 1)]
    assert _bodies(plans)[0]["description"].startswith("## Timeline")
    assert "flags" not in plans[0].payload and all(p.payload["flags"] == 4096 for p in plans[1:])


def test_stack_trace_fence_is_reopened_with_language() -> None:
    frames = "".join(
        f'  File "/app/worker/step_{i}.py", line {i}, in run_{i}\n    result = step_{i + 1}(data)\n' for i in range(120)
    )
    body = "The job failed:\n\n```python\nTraceback (most recent call last):\n" + frames + "KeyError: 'frame'\n```\n"
    plans = _render_checked(RenderInput(title="Job failed", level="error", body=body))
    pieces = [e["description"] for e in _bodies(plans)]
    assert len(pieces) >= 3
    assert pieces[0].startswith("The job failed:") and pieces[0].endswith("\n```")
    for piece in pieces[1:]:
        assert piece.startswith("```python\n")
    for piece in pieces:
        assert piece.count("```") == 2
    assert plans[0].payload["embeds"][0]["title"] == "❌ Job failed"


def test_json_dump_reassembles_to_valid_json() -> None:
    dump = json.dumps({"items": [{"id": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(150)]}, indent=2)
    body = "```json\n" + dump + "\n```"
    plans = _render_checked(RenderInput(title="Dump", body=body))
    pieces = [e["description"] for e in _bodies(plans)]
    assert len(pieces) > 1 and all(
        p.strip(ZWSP).startswith("```json\n") and p.strip(ZWSP).endswith("\n```") for p in pieces
    )
    assert json.loads(reassemble_body(plans)[len("```json\n") : -len("\n```")]) == json.loads(dump)


def test_long_body_goes_as_result_md_with_header_kept() -> None:
    body = "# Big report\r\n\r\n" + "line of the report\r\n" * 10_000
    result = RenderInput(title="Report", summary="short summary", body=body, fields=(Field("k", "v"),))
    plans = _render_checked(result)
    assert len(plans) == 1
    (part,) = plans[0].files
    assert part.filename == "result.md" and part.data == body.encode()
    embed = plans[0].payload["embeds"][0]
    assert embed["description"] == "short summary"
    assert [f["name"] for f in embed["fields"]] == ["k", "📄 Full text"]
    assert "result.md" in embed["fields"][1]["value"]


def test_result_md_is_split_when_over_the_file_limit() -> None:
    body = "word " * 200_000  # 1 MB
    limits = Limits(max_attachment_bytes=300_000)
    plans = _render_checked(RenderInput(body=body), limits)
    names = [p.filename for plan in plans for p in plan.files]
    assert names == ["result.md.001", "result.md.002", "result.md.003", "result.md.004"]
    assert "cat result.md.0* > result.md" in plans[0].payload["embeds"][0]["fields"][0]["value"]


def test_twenty_megabyte_attachment_is_split_in_parts() -> None:
    ref, data = _attachment(0, 20 * MIB, "screen recording.mp4")
    result = RenderInput(title="Recording", attachments=(ref,))
    plans = _render_checked(result)
    assert len(plans) == 1
    parts = plans[0].files
    assert [p.filename for p in parts] == [f"screen recording.mp4.00{i}" for i in (1, 2, 3)]
    assert all(p.length <= 8 * MIB for p in parts)
    assert hashlib.sha256(_rejoin(plans, {0: data})[0]).hexdigest() == ref.sha256
    field = plans[0].payload["embeds"][0]["fields"][0]
    assert "cat 'screen recording.mp4'.0* > 'screen recording.mp4'" in field["value"]
    assert ref.sha256 in field["value"]
    # After a 413 the engine re-renders smaller: more parts, more messages, still valid.
    small = smaller(Limits())
    plans = _render_checked(result, small)
    assert len([p for plan in plans for p in plan.files]) == 5 and len(plans) == 2


def test_smaller_rerender_keeps_the_text_of_messages() -> None:
    # The engine resumes after a 413 only if messages already sent would render the same.
    pairs = [_attachment(i, size, f"v{i}.mp4") for i, size in enumerate([9 * MIB, 30 * MIB, 2000])]
    result = RenderInput(
        title="t", body="word " * 2000, fields=(Field("a", "b"),), attachments=tuple(r for r, _ in pairs)
    )
    before = _render_checked(result)
    after = _render_checked(result, smaller(Limits()))
    assert len(after) > len(before)
    for old, new in zip(before, after, strict=False):
        assert {k: v for k, v in old.payload.items() if k != "attachments"} == {
            k: v for k, v in new.payload.items() if k != "attachments"
        }


def test_more_than_ten_files_take_more_messages() -> None:
    pairs = [_attachment(i, 1000, f"f{i}.txt") for i in range(23)]
    plans = _render_checked(RenderInput(title="many", attachments=tuple(r for r, _ in pairs)))
    assert [len(p.files) for p in plans] == [10, 10, 3]
    assert "embeds" not in plans[1].payload


def test_field_heavy_result_fills_embeds_and_messages() -> None:
    result = RenderInput(title="Fields", fields=tuple(Field(f"metric {i}", f"value {i} " * 20) for i in range(120)))
    plans = _render_checked(result)
    chars = sum(len(f"metric {i}") + len(f"value {i} " * 20) - 1 for i in range(120))
    assert len(plans) <= math.ceil(chars / 6000 * 1.05)
    names = [f["name"] for p in plans for e in p.payload["embeds"] for f in e.get("fields", [])]
    assert names == [f"metric {i}" for i in range(120)]


def test_long_field_value_continues_in_numbered_fields() -> None:
    plans = _render_checked(RenderInput(fields=(Field("log", "entry\n" * 600),)))
    names = [f["name"] for p in plans for e in p.payload["embeds"] for f in e.get("fields", [])]
    assert names == [f"log ({k}/{len(names)})" for k in range(1, len(names) + 1)] and len(names) >= 4


def test_blank_field_gets_placeholder() -> None:
    plans = _render_checked(RenderInput(fields=(Field("  ", "\n"),)))
    assert plans[0].payload["embeds"][0]["fields"] == [{"name": ZWSP, "value": ZWSP, "inline": False}]


@pytest.mark.parametrize("workflow_id", [None, "wf_7"])
def test_empty_result_still_renders_one_message(workflow_id: str | None) -> None:
    plans = _render_checked(RenderInput(workflow_id=workflow_id))
    assert len(plans) == 1
    embed = plans[0].payload["embeds"][0]
    assert embed["description"] == "(empty result)"
    assert embed.get("author", {}).get("name") == workflow_id


def test_level_colour_icon_and_override() -> None:
    for level, color in LEVEL_COLORS.items():
        embed = render(RenderInput(title="t", level=level))[0].payload["embeds"][0]  # type: ignore[arg-type]
        assert embed["color"] == color and embed["title"].endswith(" t") and embed["title"] != "t"
    embed = render(RenderInput(title="t", level="error", color=0x123456))[0].payload["embeds"][0]
    assert embed["color"] == 0x123456
    assert "color" not in render(RenderInput(title="t"))[0].payload["embeds"][0]


def test_crlf_and_edge_whitespace_round_trip() -> None:
    body = "\r\n\r\n  indented start\r\n" + ("text line\r\n" * 900) + "\r\n\r\n   "
    plans = _render_checked(RenderInput(body=body))
    assert len(_bodies(plans)) > 2


def test_whitespace_only_body_is_kept() -> None:
    _render_checked(RenderInput(body=" \n\t "))


def test_destinations_and_unknown_destination() -> None:
    for destination in ("webhook", "interaction", "dm"):
        _render_checked(RenderInput(title="x", body="y"), destination=destination)
    with pytest.raises(ValueError):
        render(RenderInput(), destination="email")  # type: ignore[arg-type]


def test_smaller_halves_with_a_floor() -> None:
    limits = smaller(Limits())
    assert limits.max_attachment_bytes == 4 * MIB and limits.max_request_bytes == 25 * MIB // 2
    for _ in range(10):
        limits = smaller(limits)
    assert limits.max_attachment_bytes == limits.max_request_bytes == 256 * 1024
    tiny = Limits(max_attachment_bytes=1000)
    assert smaller(tiny).max_attachment_bytes == 1000


def test_plan_size_counts_files_and_payload() -> None:
    part = FilePart("a.bin", "application/octet-stream", 0, 0, 5000)
    plan = MessagePlan({"embeds": [], "attachments": [{"id": 0, "filename": "a.bin"}]}, (part,))
    assert 5000 + len(json.dumps(plan.payload)) < plan_size(plan) < 5000 + 4096


@given(st.text(min_size=1, max_size=3000).filter(lambda s: s.strip()))
def test_a_body_in_one_piece_has_no_one_of_one_marker(body: str) -> None:
    plans = render(RenderInput(title="t", summary="s", body=body))
    footers = [(e.get("footer") or {}).get("text") for p in plans for e in p.payload.get("embeds", ())]
    assert not any(f and "/1)" in f for f in footers)
    if len([f for f in footers if f]) == 1:
        assert footers.count("\u200b") == 1
    assert reassemble_body(plans) == body


def test_a_longer_body_keeps_its_markers() -> None:
    plans = render(RenderInput(title="t", body="\n\n".join("p" * 3000 for _ in range(3))))
    footers = [e["footer"]["text"] for p in plans for e in p.payload["embeds"] if "footer" in e]
    assert footers == ["(1/3)", "(2/3)", "(3/3)"]


def test_attachment_ids_are_snowflake_strings() -> None:
    atts = tuple(AttachmentRef(i, f"f{i}.bin", "application/octet-stream", 10, "0" * 64) for i in range(12))
    plans = render(RenderInput(title="files", attachments=atts))
    ids = [a["id"] for p in plans for a in p.payload.get("attachments", ())]
    assert ids and all(isinstance(i, str) and i.isdigit() for i in ids)
    assert [a["id"] for a in plans[0].payload["attachments"]] == [str(i) for i in range(10)]
