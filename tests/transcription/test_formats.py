"""The subtitle writers produce well-formed files for any segments Whisper could return."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transcription.formats import format_timestamp, render, subtitle_cues, to_srt, to_txt, to_vtt
from transcription.transcript import Segment

SRT_TIME = r"(\d{2,}):(\d{2}):(\d{2}),(\d{3})"
VTT_TIME = r"(\d{2,}):(\d{2}):(\d{2})\.(\d{3})"

times = st.floats(min_value=0, max_value=400_000, allow_nan=False, allow_infinity=False)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["", "  ", "line one\n\nline two", "a --> b", " hello world ", "\r\n"]
)
segments = st.lists(st.builds(Segment, start=times, end=times, text=texts), max_size=25)


def _ms(match: tuple[str, str, str, str]) -> int:
    hours, minutes, seconds, millis = (int(part) for part in match)
    assert minutes < 60 and seconds < 60
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis


def parse_srt(document: str) -> list[tuple[int, int, int, str]]:
    """(index, start ms, end ms, text) per cue; asserts the block structure on the way."""
    if not document:
        return []
    assert document.endswith("\n") and not document.endswith("\n\n\n")
    cues = []
    for block in document.rstrip("\n").split("\n\n"):
        index, timing, text = block.split("\n")
        match = re.fullmatch(f"{SRT_TIME} --> {SRT_TIME}", timing)
        assert match, timing
        groups = match.groups()
        cues.append((int(index), _ms(groups[:4]), _ms(groups[4:]), text))
    return cues


def parse_vtt(document: str) -> list[tuple[int, int, str]]:
    """(start ms, end ms, text) per cue; asserts the header and block structure."""
    assert document.startswith("WEBVTT\n\n") or document == "WEBVTT\n"
    cues = []
    for block in document.removeprefix("WEBVTT\n").strip("\n").split("\n\n"):
        if not block:
            continue
        timing, text = block.split("\n")
        match = re.fullmatch(f"{VTT_TIME} --> {VTT_TIME}", timing)
        assert match, timing
        groups = match.groups()
        cues.append((_ms(groups[:4]), _ms(groups[4:]), text))
    return cues


def assert_well_timed(spans: list[tuple[int, int]]) -> None:
    previous_end = 0
    for start, end in spans:
        assert start < end
        assert start >= previous_end
        previous_end = end


@given(segments)
def test_srt_is_well_formed(items: list[Segment]) -> None:
    cues = parse_srt(to_srt(items))
    assert [cue[0] for cue in cues] == list(range(1, len(cues) + 1))
    assert all(cue[3].strip() and "\n" not in cue[3] for cue in cues)
    assert_well_timed([(cue[1], cue[2]) for cue in cues])


@given(segments)
def test_vtt_is_well_formed(items: list[Segment]) -> None:
    cues = parse_vtt(to_vtt(items))
    assert all(text.strip() and "-->" not in text for _, _, text in cues)
    assert_well_timed([(start, end) for start, end, _ in cues])


@given(segments)
def test_all_formats_carry_the_same_cues(items: list[Segment]) -> None:
    srt = [(cue[1], cue[2], cue[3]) for cue in parse_srt(to_srt(items))]
    vtt = parse_vtt(to_vtt(items))
    txt = to_txt(items).splitlines()
    assert srt == vtt
    assert [text for _, _, text in vtt] == [line.replace("-->", "->") for line in txt]


@given(st.integers(min_value=0, max_value=10**9))
def test_timestamp_round_trips(milliseconds: int) -> None:
    match = re.fullmatch(SRT_TIME, format_timestamp(milliseconds, ","))
    assert match and _ms(match.groups()) == milliseconds  # type: ignore[arg-type]


def test_known_document() -> None:
    items = [
        Segment(0.0, 2.5, " Hello there."),
        Segment(2.4, 3661.0016, "Overlapping\n\nstart"),
        Segment(3661.0, 3661.0, ""),
    ]
    assert to_srt(items) == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n2\n00:00:02,500 --> 01:01:01,002\nOverlapping start\n"
    )
    assert to_vtt(items) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n\n00:00:02.500 --> 01:01:01.002\nOverlapping start\n"
    )
    assert to_txt(items) == "Hello there.\nOverlapping start\n"


def test_zero_length_and_reversed_segments_get_a_positive_duration() -> None:
    cues = subtitle_cues([Segment(5.0, 5.0, "a"), Segment(4.0, 1.0, "b")])
    assert [(c.start_ms, c.end_ms) for c in cues] == [(5000, 5001), (5001, 5002)]


def test_empty_input() -> None:
    assert to_srt([]) == ""
    assert to_vtt([]) == "WEBVTT\n"
    assert to_txt([]) == ""


def test_render_dispatches_and_rejects_unknown_formats() -> None:
    items = [Segment(0, 1, "x")]
    assert render(items, "vtt") == to_vtt(items)
    with pytest.raises(ValueError, match="unknown transcript format"):
        render(items, "docx")  # type: ignore[arg-type]
