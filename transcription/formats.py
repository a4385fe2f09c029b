"""Rendering segments as plain text, SubRip (.srt) and WebVTT (.vtt).

Pure functions, no I/O, so they are tested with hypothesis. Whisper's
timestamps are not guaranteed to be well-formed subtitles: consecutive
segments may overlap by a few milliseconds, a segment may have zero length,
and text may contain blank lines (which end a cue early in both formats) or
``-->`` (which a WebVTT parser reads as a timing line). ``subtitle_cues``
repairs all of that once, and both subtitle writers use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

Format = Literal["txt", "srt", "vtt"]
FORMATS: tuple[Format, ...] = ("txt", "srt", "vtt")
MEDIA_TYPES: dict[Format, str] = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


class TimedText(Protocol):
    """Anything with a start, an end (seconds) and text, such as ``transcript.Segment``."""

    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...

    @property
    def text(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Cue:
    """A subtitle cue in whole milliseconds; ``start_ms < end_ms`` always holds."""

    start_ms: int
    end_ms: int
    text: str


def render(segments: Iterable[TimedText], fmt: Format) -> str:
    """Render ``segments`` in one of ``FORMATS``."""
    if fmt == "txt":
        return to_txt(segments)
    if fmt == "srt":
        return to_srt(segments)
    if fmt == "vtt":
        return to_vtt(segments)
    raise ValueError(f"unknown transcript format {fmt!r}; expected one of {', '.join(FORMATS)}")


def to_txt(segments: Iterable[TimedText]) -> str:
    """One line per non-empty segment, whitespace collapsed, with a trailing newline."""
    lines = [line for line in (_one_line(s.text) for s in segments) if line]
    return "\n".join(lines) + "\n" if lines else ""


def to_srt(segments: Iterable[TimedText]) -> str:
    """SubRip: 1-based index, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, text, blank line."""
    blocks = [
        f"{index}\n{format_timestamp(cue.start_ms, ',')} --> {format_timestamp(cue.end_ms, ',')}\n{cue.text}\n"
        for index, cue in enumerate(subtitle_cues(segments), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Iterable[TimedText]) -> str:
    """WebVTT: the ``WEBVTT`` header, then ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues."""
    blocks = [
        f"{format_timestamp(cue.start_ms, '.')} --> {format_timestamp(cue.end_ms, '.')}\n{cue.text}\n"
        for cue in subtitle_cues(segments)
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def subtitle_cues(segments: Iterable[TimedText]) -> list[Cue]:
    """Turn segments into cues with non-empty single-line text and strictly increasing times.

    Segments with no text are dropped. A cue starts no earlier than the
    previous one ends (an overlap is cut from the later cue's start) and lasts
    at least one millisecond, so players never show two cues at once or a cue
    that ends before it begins.
    """
    cues: list[Cue] = []
    previous_end = 0
    for segment in segments:
        text = _one_line(segment.text).replace("-->", "->")
        if not text:
            continue
        start = max(_to_ms(segment.start), previous_end)
        end = max(_to_ms(segment.end), start + 1)
        cues.append(Cue(start, end, text))
        previous_end = end
    return cues


def format_timestamp(milliseconds: int, decimal_marker: str) -> str:
    """``HH:MM:SS<marker>mmm``; hours grow past two digits rather than wrapping."""
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal_marker}{millis:03d}"


def _to_ms(seconds: float) -> int:
    if not math.isfinite(seconds) or seconds <= 0:
        return 0
    return round(seconds * 1000)


def _one_line(text: str) -> str:
    # Collapsing all whitespace removes the blank lines that would end a cue early.
    return " ".join(text.split())
