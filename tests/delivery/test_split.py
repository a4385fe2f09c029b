"""The piece codec and the cutter: losslessness is proven here on adversarial text."""

from __future__ import annotations

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery.split import (
    WHITESPACE,
    ZWSP,
    Cutter,
    decode_piece,
    discord_trim,
    encode_piece,
    truncate,
    utf16_len,
)

# Text made of the characters the codec treats specially, so collisions are likely.
tricky = st.text(alphabet=st.sampled_from(["`", "\n", "\r", " ", "\t", ZWSP, "\ufeff", "\xa0", "a", "p"]), min_size=1)
langs = st.sampled_from([None, "```\n", "```py\n", "```c++\n"])


@settings(max_examples=500)
@given(piece=tricky, reopen=langs, close=st.booleans())
def test_codec_round_trips_for_any_flags(piece: str, reopen: str | None, close: bool) -> None:
    encoded = encode_piece(piece, reopen=reopen, close=close)
    assert decode_piece(encoded) == piece
    # What Discord shows is what we planned: nothing left for its trim to remove.
    assert encoded == discord_trim(encoded) and encoded
    assert decode_piece(discord_trim(encoded)) == piece


@given(st.text(min_size=1))
def test_codec_round_trips_on_any_unicode(piece: str) -> None:
    for reopen in (None, "```js\n"):
        for close in (False, True):
            assert decode_piece(encode_piece(piece, reopen=reopen, close=close)) == piece


def test_guards_keep_edge_whitespace() -> None:
    assert encode_piece("  indented\n\n", reopen=None, close=False) == f"{ZWSP}  indented\n\n{ZWSP}"
    assert encode_piece("x = 1", reopen="```py\n", close=True) == "```py\nx = 1\n```"


def _cut_all(text: str, room: int, *, tight: bool = False) -> list[str]:
    cutter = Cutter(text)
    pieces = []
    while not cutter.done:
        piece = cutter.next_piece(room, tight=tight, force=True)
        assert piece is not None
        assert utf16_len(piece) <= room
        pieces.append(piece)
    return pieces


chunks = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "```",
            "```python\n",
            "\n```\n",
            "\r\n",
            "\n\n",
            "   ",
            ZWSP,
            "👨‍👩‍👧‍👦",
            "🇺🇸🇫🇷",
            "e\u0301\u0302",
            "[a link](https://example.com/a_b)",
            "`inline code`",
            "x" * 300,
            "word " * 30,
            "End. Next! ",
            "日本語。",
        ]
    ),
)
documents = st.lists(chunks, max_size=120).map("".join)


@settings(max_examples=150, deadline=None)
@given(text=documents, room=st.integers(min_value=64, max_value=700), tight=st.booleans())
def test_cutter_is_lossless_and_respects_room(text: str, room: int, tight: bool) -> None:
    pieces = _cut_all(text, room, tight=tight)
    assert "".join(decode_piece(p) for p in pieces) == text


@settings(max_examples=100, deadline=None)
@given(text=documents)
def test_cuts_fall_on_grapheme_boundaries(text: str) -> None:
    boundaries = {0}
    for match in regex.finditer(r"\X", text):
        boundaries.add(match.end())
    position = 0
    for piece in _cut_all(text, 200):
        position += len(decode_piece(piece))
        assert position in boundaries
    assert position == len(text)


def test_prefers_paragraphs_then_lines_then_words() -> None:
    paragraphs = "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(20))
    for piece in _cut_all(paragraphs, 1000)[:-1]:
        assert decode_piece(piece).endswith("\n\n")
    lines = "\n".join("line " * 20 for _ in range(100))
    for piece in _cut_all(lines, 1000)[:-1]:
        assert decode_piece(piece).endswith("\n")
    words = "word " * 1000
    for piece in _cut_all(words, 1000)[:-1]:
        assert decode_piece(piece).endswith(" ")


def test_does_not_cut_links_or_inline_code() -> None:
    text = " ".join(["[see the docs](https://example.com/some/long/path)", "`a b c d e f`"] * 200)
    for piece in _cut_all(text, 500):
        plain = decode_piece(piece)
        assert plain.count("`") % 2 == 0
        assert plain.count("[") == plain.count("](") == plain.count(")")


def test_code_block_is_closed_and_reopened_with_its_language() -> None:
    text = "Intro\n\n```rust\n" + "\n".join(f"let x{i} = {i};" for i in range(400)) + "\n```\nAfter"
    pieces = _cut_all(text, 1500)
    assert len(pieces) > 3
    for i, piece in enumerate(pieces):
        assert piece.count("```") % 2 == 0, piece
        if i > 0:
            assert piece.startswith("```rust\n") or not decode_piece(pieces[i - 1]).count("```") % 2
    assert "".join(decode_piece(p) for p in pieces) == text


def test_huge_grapheme_is_cut_only_when_it_cannot_fit() -> None:
    monster = "a" + "\u0301" * 5000
    pieces = _cut_all(monster + " tail", 4096)
    assert "".join(decode_piece(p) for p in pieces) == monster + " tail"


def test_truncate_keeps_graphemes_and_limit() -> None:
    family = "👨‍👩‍👧‍👦"
    text = family * 100
    short = truncate(text, 256)
    assert utf16_len(short) <= 256 and short.endswith("…")
    assert short[:-1] == family * (len(short[:-1]) // len(family))
    assert truncate("short", 256) == "short"
    assert truncate("a" + "\u0301" * 400, 50).endswith("…")


def test_whitespace_set_covers_python_strip() -> None:
    for code in range(0x3001):
        char = chr(code)
        if char.isspace():
            assert char in WHITESPACE
