"""Renderer benchmark: messages used against a lower bound, and render throughput, per kind of result.

Run: ``.venv/bin/python bench/render.py``. The corpus is generated (seeded), nothing is read
or sent. For each kind it prints the messages rendered, the lower bound, their ratio and the
throughput in MB of input text per second; then the same overall.

Lower bound of one result, given how the renderer chose to send its body (embeds or
``result.md``): ``max(ceil(embed characters / 6000), ceil(file parts / 10),
ceil(file bytes / max_request_bytes))``, where embed characters are the title, summary,
workflow id, field names and values, and the body when it went in embeds, and file parts are
``ceil(size / max_attachment_bytes)`` per file. Native embeds add their text to the embed
characters and bound the messages by ``ceil(embeds / 10)``; native content by
``ceil(content / 2000)``. No renderer can use fewer messages than that.
The "chunked" kinds set ``max_body_messages`` very high, so multi-megabyte bodies are really
cut into embeds: that is where splitting quality and speed show.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from delivery.render import AttachmentRef, Field, Limits, RenderInput, render  # noqa: E402
from delivery.split import utf16_len  # noqa: E402

MB = 1_000_000
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "analysis",
    "frame",
    "scene",
    "object",
    "detected",
    "model",
]


def _prose(rnd: random.Random, chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        sentence = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(5, 18))).capitalize() + ". "
        out.append(sentence)
        size += len(sentence)
        if rnd.random() < 0.15:
            out.append("\n\n")
    return "".join(out)


def _markdown_report(rnd: random.Random, chars: int) -> str:
    parts: list[str] = []
    size = 0
    section = 0
    while size < chars:
        section += 1
        parts.append(f"## Section {section}\n\n{_prose(rnd, 800)}\n\n")
        parts.append("".join(f"- item {i}: [details](https://example.com/{section}/{i}) `ok`\n" for i in range(8)))
        lang = rnd.choice(["python", "json", "bash", ""])
        code = "\n".join(f"    value_{i} = compute({i}, {section})  # step" for i in range(rnd.randint(5, 80)))
        parts.append(f"\n```{lang}\n{code}\n```\n\n")
        size = sum(map(len, parts))
    return "".join(parts)


def _log(rnd: random.Random, chars: int) -> str:
    lines = []
    size = 0
    n = 0
    while size < chars:
        n += 1
        level = rnd.choice(["INFO", "INFO", "DEBUG", "WARN", "ERROR"])
        line = f"2025-01-01T12:{n // 3600 % 60:02d}:{n % 60:02d}Z {level} worker[{n % 7}] processed frame {n}\n"
        lines.append(line)
        size += len(line)
    return "".join(lines)


def _unicode(rnd: random.Random, chars: int) -> str:
    pieces = [
        "日本語のテキスト。",
        "Ünïcödé tëxt ",
        "👨‍👩‍👧‍👦 ",
        "🇺🇸🇯🇵 ",
        "e\u0301\u0323 ",
        "Привет мир. ",
        "مرحبا بالعالم ",
        "😀😃😄 ",
    ]
    out: list[str] = []
    size = 0
    while size < chars:
        piece = rnd.choice(pieces)
        out.append(piece)
        size += len(piece)
        if rnd.random() < 0.05:
            out.append("\n")
    return "".join(out)


def corpus() -> list[tuple[str, RenderInput, Limits]]:
    """(kind, result, limits) triples; seeded so runs compare."""
    rnd = random.Random(20250101)
    default = Limits()
    chunked = Limits(max_body_messages=10**9)
    items: list[tuple[str, RenderInput, Limits]] = []
    for i in range(300):
        items.append(
            (
                "short",
                RenderInput(
                    title=f"Job {i} done",
                    summary=_prose(rnd, 200),
                    level="success",
                    workflow_id=f"wf_{i}",
                    fields=(Field("took", f"{i}s", True),),
                ),
                default,
            )
        )
    for i in range(20):
        body = _markdown_report(rnd, rnd.randint(4_000, 17_000))
        items.append(("markdown (embeds)", RenderInput(title=f"Report {i}", body=body, level="info"), default))
    for i in range(10):
        body = _markdown_report(rnd, 400_000)
        items.append(("markdown 400 KB", RenderInput(title=f"Report {i}", summary="see file", body=body), default))
        items.append(("markdown 400 KB chunked", RenderInput(title=f"Report {i}", body=body), chunked))
    for i in range(3):
        body = _log(rnd, 5 * MB)
        items.append(("log 5 MB", RenderInput(title=f"Log {i}", body=body, level="warning"), default))
        items.append(("log 5 MB chunked", RenderInput(title=f"Log {i}", body=body), chunked))
    for _ in range(10):
        body = _unicode(rnd, rnd.randint(3_000, 12_000))
        items.append(("unicode (embeds)", RenderInput(title="Ünïcode 🌍", body=body), default))
        big = _unicode(rnd, 500_000)
        items.append(("unicode 500 K chunked", RenderInput(title="Ünïcode 🌍", body=big), chunked))
    for i in range(20):
        fields = tuple(
            Field(f"metric {j}", _prose(rnd, rnd.randint(10, 900)).strip(), rnd.random() < 0.3)
            for j in range(rnd.randint(30, 150))
        )
        items.append(("field-heavy", RenderInput(title=f"Metrics {i}", fields=fields), default))
    for i in range(40):
        embeds = tuple(
            {"title": f"Scene {i}.{j}", "description": _prose(rnd, rnd.choice([200, 1500, 5000, 12_000])).strip(),
             "color": 0x5865F2, "fields": [{"name": f"metric {k}", "value": _prose(rnd, 80).strip(), "inline": True}
                                           for k in range(rnd.randint(0, 12))]}
            for j in range(rnd.randint(3, 30)))
        content = _prose(rnd, rnd.choice([100, 5000])).strip()
        items.append(("native embeds", RenderInput(content=content, embeds=embeds), default))
    size = 20 * MB
    attachment = AttachmentRef(0, "recording.mp4", "video/mp4", size, hashlib.sha256(b"").hexdigest())
    for limits in (default, dataclasses.replace(default, max_attachment_bytes=4 * 1024 * 1024)):
        items.append(("attachment 20 MB", RenderInput(title="Recording", attachments=(attachment,)), limits))
    return items


def lower_bound(result: RenderInput, limits: Limits, body_in_embeds: bool) -> int:
    """The fewest messages any renderer could use for this result (see module docstring)."""
    texts = [result.title or "", result.summary or "", result.workflow_id or ""]
    texts += [t for f in result.fields for t in (f.name, f.value)]
    if body_in_embeds:
        texts.append(result.body or "")
    for embed in result.embeds:
        texts += [embed.get("title", ""), embed.get("description", "")]
        texts += [t for f in embed.get("fields", ()) for t in (f["name"], f["value"])]
    chars = sum(utf16_len(t) for t in texts)
    sizes = [a.size for a in result.attachments]
    if result.body and not body_in_embeds:
        sizes.append(len(result.body.encode()))
    parts = sum(max(1, math.ceil(s / limits.max_attachment_bytes)) for s in sizes)
    return max(
        1,
        math.ceil(chars / limits.embed_total),
        math.ceil(parts / limits.files_per_message),
        math.ceil(sum(sizes) / limits.max_request_bytes),
        math.ceil(len(result.embeds) / limits.embeds_per_message),
        math.ceil(utf16_len(result.content or "") / limits.content),
    )


def main() -> None:
    """Render the corpus and print the table."""
    rows: dict[str, list[float]] = {}
    for kind, result, limits in corpus():
        text_bytes = sum(len((t or "").encode()) for t in (result.title, result.summary, result.body))
        text_bytes += sum(len(f.name.encode()) + len(f.value.encode()) for f in result.fields)
        text_bytes += len((result.content or "").encode()) + len(json.dumps(result.embeds).encode())
        start = time.perf_counter()
        plans = render(result, limits)
        elapsed = time.perf_counter() - start
        body_in_embeds = not any(p.filename.startswith("result.md") for plan in plans for p in plan.files)
        bound = lower_bound(result, limits, body_in_embeds)
        row = rows.setdefault(kind, [0, 0, 0, 0.0, 0])
        row[0] += 1
        row[1] += len(plans)
        row[2] += bound
        row[3] += elapsed
        row[4] += text_bytes
        json.dumps([p.payload for p in plans])  # the plans must serialise
    header = f"{'kind':<26}{'results':>8}{'messages':>10}{'bound':>8}{'ratio':>8}{'text MB':>10}{'MB/s':>9}"
    print(header)
    print("-" * len(header))
    total = [0, 0, 0, 0.0, 0]
    for kind, (count, messages, bound, elapsed, size) in rows.items():
        total = [total[0] + count, total[1] + messages, total[2] + bound, total[3] + elapsed, total[4] + size]
        print(
            f"{kind:<26}{count:>8}{messages:>10}{bound:>8}{messages / bound:>8.3f}"
            f"{size / MB:>10.2f}{size / MB / elapsed:>9.1f}"
        )
    print("-" * len(header))
    count, messages, bound, elapsed, size = total
    print(
        f"{'overall':<26}{count:>8}{messages:>10}{bound:>8}{messages / bound:>8.3f}"
        f"{size / MB:>10.2f}{size / MB / elapsed:>9.1f}"
    )


if __name__ == "__main__":
    main()
