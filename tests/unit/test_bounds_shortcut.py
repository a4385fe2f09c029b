"""``check_body``'s shortcut on the raw JSON text never lets through what the full walk refuses.

The shortcut skips the walk over a decoded body when its text cannot hold a NUL, an unpaired
surrogate or a nesting deeper than ``MAX_NESTING``. Property: for any JSON value, written in every
way ``json.loads`` reads (ASCII escapes, raw UTF-8, surrogates passed through as bytes, UTF-16 and
UTF-32, as ``bytes`` or ``str``), the verdict with the text equals the verdict without it.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.bounds import MAX_NESTING, check_body

# Text with the characters that matter: NUL, lone surrogates, brackets, backslashes, ED-lead letters.
_TEXT = st.text(alphabet=st.sampled_from(["a", "\x00", "\ud800", "\udfff", "[", "{", "\\", "u", "\ud7ff", "\ud55c",
                                          "é", "\U0001f600"]), max_size=6)
_LEAF = st.none() | st.booleans() | st.integers() | _TEXT
_VALUE = st.recursive(_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
                      max_leaves=12)


def _deep(levels: int, leaf: Any) -> Any:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def _encodings(payload: dict[str, Any]) -> list[bytes | str]:
    ascii_text = json.dumps(payload)
    raw_text = json.dumps(payload, ensure_ascii=False)
    return [ascii_text, ascii_text.encode(), raw_text, raw_text.encode("utf-8", "surrogatepass"),
            raw_text.encode("utf-16", "surrogatepass"), raw_text.encode("utf-32", "surrogatepass")]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_TEXT, _VALUE, max_size=4), st.integers(0, MAX_NESTING + 2))
def test_the_raw_text_shortcut_agrees_with_the_full_walk(payload: dict[str, Any], depth: int) -> None:
    payload = {**payload, "deep": _deep(depth, "x")}
    for raw in _encodings(payload):
        decoded = json.loads(raw)  # (a split surrogate pair written raw may come back joined)
        assert check_body(decoded, raw) == check_body(decoded), raw


def test_the_shortcut_still_refuses_each_kind_of_bad_body() -> None:
    bad = [{"a": "nul\u0000"}, {"a": "half \ud83d"}, {"k\u0000": 1}, {"a": _deep(MAX_NESTING + 1, 1)}]
    for payload in bad:
        for raw in _encodings(payload):
            assert check_body(json.loads(raw), raw) is not None, raw
    assert check_body({"a": _deep(MAX_NESTING, 1)}, json.dumps({"a": _deep(MAX_NESTING, 1)})) is None
