"""Cut long markdown into pieces that fit Discord, and a piece codec that makes the cut lossless.

Two things happen to a piece of text on its way into an embed description, and both would
break a naive "join the pieces back" check:

* Discord trims leading and trailing whitespace of every description (and title, field, …),
  so a piece ending in ``"\\n\\n"`` loses its paragraph break.
* A fenced code block cut in two must be closed at the end of one embed and reopened, with its
  language, at the start of the next, or the second half renders as prose.

:func:`encode_piece` adds both kinds of change in a form :func:`decode_piece` recognises from
the text alone (no state, no side channel), so ``"".join(decode_piece(d) for d in pieces)`` is
the original text exactly. Layers, applied in this order and undone in reverse:

1. *fence reopen* – ``"```lang\\n"`` in front of a piece that starts inside a code block; a piece
   that starts outside one but itself begins with ``ZWSP* "```"`` gets one ZWSP in front instead
   (an escape, so the decoder never mistakes it for a reopening).
2. *fence close* – ``"\\n```"`` after a piece that ends inside a code block; otherwise, if the text
   so far ends with ``"\\n```" ZWSP*``, one ZWSP (the same escape, mirrored).
3. *whitespace guards* – one ZWSP before leading whitespace and one after trailing whitespace
   (escaped the same way when the text already has ZWSPs there), so Discord's trim removes
   nothing. ZWSP (U+200B) is not whitespace for Python's, JavaScript's or Rust's ``trim`` and
   renders as nothing, so the reader sees at most an empty line where a paragraph was cut.

Each layer is injective on *any* input and its decoder needs nothing but the text, which is
what lets :func:`decode_piece` be proven by a property test instead of argued about.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import regex

ZWSP = "\u200b"

#: Everything any plausible ``trim`` treats as whitespace: Python's ``str.isspace`` (which adds
#: the C0 separators), Unicode ``White_Space`` (Rust), JavaScript's set (adds U+FEFF) and
#: U+180E, which older Unicode versions called a space.
WHITESPACE = (
    "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u180e"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_WS = frozenset(WHITESPACE)

_FENCE = "```"
_CLOSE = "\n```"
#: Languages longer than this are not repeated on reopening: the reopen line eats budget in
#: every continuation embed, and Discord only highlights short tags anyway.
_MAX_LANG = 32
_LANG = regex.compile(r"[A-Za-z0-9_+\-.#]{1," + str(_MAX_LANG) + r"}(?=\r?\n)")
_GRAPHEME = regex.compile(r"\X")
_SENTENCE = regex.compile(r"[.!?][\"')\]]*\s+|[。！？]+")
_SPACE = regex.compile(r"\s+")
#: Spans a cut should not fall into: inline code and markdown links (both single-line here).
_PROTECTED = regex.compile(r"`[^`\n]+`|\[[^\]\n]*\]\([^)\s]*\)")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: an astral character counts 2.

    Discord's documented limits are "characters"; counting UTF-16 units is never less than
    counting code points, so a piece that fits by this measure fits whichever Discord uses.
    """
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def discord_trim(text: str) -> str:
    """Strip what Discord may strip from a text field (used by tests and by the field code)."""
    return text.strip(WHITESPACE)


# --------------------------------------------------------------------------- piece codec


def encode_piece(piece: str, *, reopen: str | None, close: bool) -> str:
    """Wrap one cut piece for an embed description; :func:`decode_piece` undoes it exactly.

    ``reopen`` is the ``"```lang\\n"`` line when the piece starts inside a code block, ``close``
    whether it ends inside one.
    """
    text = piece
    if reopen is not None:
        text = reopen + text
    elif text.lstrip(ZWSP).startswith(_FENCE):
        text = ZWSP + text
    if close:
        text += _CLOSE
    elif text.rstrip(ZWSP).endswith(_CLOSE):
        text += ZWSP
    if text.lstrip(ZWSP)[:1] in _WS:
        text = ZWSP + text
    if text.rstrip(ZWSP)[-1:] in _WS:
        text += ZWSP
    return text


def decode_piece(text: str) -> str:
    """Inverse of :func:`encode_piece`; also correct after Discord trimmed the text."""
    stripped = text.rstrip(ZWSP)
    if len(stripped) < len(text) and stripped[-1:] in _WS:
        text = text[:-1]
    stripped = text.lstrip(ZWSP)
    if len(stripped) < len(text) and stripped[:1] in _WS:
        text = text[1:]
    stripped = text.rstrip(ZWSP)
    if stripped.endswith(_CLOSE):
        text = text[:-1] if len(stripped) < len(text) else text[: -len(_CLOSE)]
    stripped = text.lstrip(ZWSP)
    if stripped.startswith(_FENCE):
        if len(stripped) < len(text):
            text = text[1:]
        else:
            newline = text.find("\n")
            if newline < 0:
                raise ValueError("piece starts with a fence reopening that has no newline")
            text = text[newline + 1 :]
    return text


#: Worst-case characters encode_piece adds besides the reopen line: 1 start escape or guard
#: pair share, 4 for the close, 2 guards.
def piece_overhead(reopen: str | None) -> int:
    """Upper bound of the characters :func:`encode_piece` adds to a piece."""
    return (len(reopen) if reopen else 1) + len(_CLOSE) + 2


# --------------------------------------------------------------------------- cutting


@dataclass(frozen=True)
class _Fill:
    """How far into the window (0..1) a boundary of each kind must lie to be accepted.

    Loose thresholds apply when the description limit bounds the piece: an early cut there
    only moves text into the next embed of the same message, so nicer boundaries are free.
    Tight ones apply when the message's 6,000-character budget bounds it: an early cut there
    wastes room in a message, and messages are what we minimise.
    """

    paragraph: float
    line: float
    sentence: float
    word: float


_LOOSE = _Fill(paragraph=0.5, line=0.6, sentence=0.7, word=0.8)
_TIGHT = _Fill(paragraph=0.9, line=0.93, sentence=0.95, word=0.97)
_MAX_TRIES = 8


class Cutter:
    """Hands out consecutive encoded pieces of ``text``, each within a caller-given budget.

    Work per piece is proportional to the piece (plus a bisect over fence positions), so
    cutting a multi-megabyte body is linear.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        # Discord's code-block rule pairs "```" tokens left to right, wherever they are.
        fences: list[int] = []
        find = text.find
        at = find(_FENCE)
        while at >= 0:
            fences.append(at)
            at = find(_FENCE, at + 3)
        self._fence_ends = [f + 3 for f in fences]

    @property
    def done(self) -> bool:
        """Whether the whole text has been handed out."""
        return self.pos >= len(self.text)

    def reopen_at(self, index: int) -> str | None:
        """The line that reopens the code block ``index`` lies in, or None outside blocks."""
        count = bisect_right(self._fence_ends, index)
        if count % 2 == 0:
            return None
        opened = self._fence_ends[count - 1]
        lang = _LANG.match(self.text, opened)
        return _FENCE + (lang.group() if lang else "") + "\n"

    def next_piece(self, room: int, *, tight: bool, force: bool) -> str | None:
        """Cut the next piece so that its encoded form is at most ``room`` UTF-16 units.

        Returns None when nothing sensible fits (the first grapheme cluster alone is larger
        than the room) unless ``force``, which the caller passes when the room is already as
        large as it gets; then a cluster that exceeds a whole description is cut between
        code points, the only case where a grapheme is ever split.
        """
        text, start, end_of_text = self.text, self.pos, len(self.text)
        reopen = self.reopen_at(start)
        budget = room - piece_overhead(reopen)
        if budget <= 0:
            if not force:
                return None
            budget = 1
        end = self._window_end(start, budget)
        if end >= end_of_text:
            cut: int | None = end_of_text
        elif end <= start:
            cut = None
        else:
            cut = self._choose(start, end, _TIGHT if tight else _LOOSE)
        if cut is None:
            if not force:
                return None
            cut = max(end, start + 1)
        self.pos = cut
        close = self.reopen_at(cut) is not None
        return encode_piece(text[start:cut], reopen=reopen, close=close)

    def _window_end(self, start: int, budget: int) -> int:
        end = min(len(self.text), start + budget)
        excess = utf16_len(self.text[start:end]) - budget
        # Dropping k code points drops at least k units, so one correction is enough.
        return end - excess if excess > 0 else end

    def _choose(self, start: int, end: int, fill: _Fill) -> int | None:
        span = end - start
        cut = self._paragraph(start, end, start + int(span * fill.paragraph))
        if cut is None:
            newline = self.text.rfind("\n", start + int(span * fill.line), end)
            cut = newline + 1 if newline >= 0 else None
        if cut is None:
            cut = self._after_match(_SENTENCE, start, end, start + int(span * fill.sentence))
        if cut is None:
            cut = self._after_match(_SPACE, start, end, start + int(span * fill.word))
        if cut is None:
            cut = self._last_grapheme(start, end)
        if cut is not None:
            cut = self._keep_block_whole(start, end, cut, fill)
            cut = self._before_newline_in_code(start, cut)
        return cut

    def _before_newline_in_code(self, start: int, cut: int) -> int:
        """Inside a code block, cut before a line break rather than after it.

        The added close is ``"\\n```"``; after a line break that would show an empty last
        line in the block, while the moved break is swallowed by Discord at the start of the
        reopened block.
        """
        text = self.text
        if text[cut - 1] != "\n" or self.reopen_at(cut) is None:
            return cut
        moved = cut - 1
        if text[moved - 1 : moved] == "\r":
            moved -= 1
        return moved if moved > start and self.reopen_at(moved) is not None else cut

    def _paragraph(self, start: int, end: int, low: int) -> int | None:
        """End of the last blank line (``\\n`` [ \\t\\r]* ``\\n``) inside [low, end)."""
        text = self.text
        newline = text.rfind("\n", low, end)
        while newline >= low:
            back = newline - 1
            while back >= start and text[back] in " \t\r":
                back -= 1
            if back >= low and text[back] == "\n":
                return newline + 1
            newline = text.rfind("\n", low, back + 1) if back >= low else -1
        return None

    def _after_match(self, pattern: regex.Pattern[str], start: int, end: int, low: int) -> int | None:
        """The last end of ``pattern`` in [low, end) that is a clean boundary."""
        ends = [m.end() for m in pattern.finditer(self.text, low, end)]
        for cut in reversed(ends[-_MAX_TRIES:]):
            if cut > start and self._is_boundary(start, cut) and not self._protected(start, cut):
                return int(cut)
        return None

    def _last_grapheme(self, start: int, end: int) -> int | None:
        """The last grapheme boundary in (start, end], moved before a link or code span."""
        text = self.text
        line = text.rfind("\n", start, end)
        scan = start if line < 0 else line + 1  # after LF is always a grapheme boundary
        last = scan if scan > start else None
        for match in _GRAPHEME.finditer(text, scan):
            if match.end() > end:
                break
            last = match.end()
        if last is None:
            return None
        span = self._protected(start, last)
        if span is not None and span > start and self._is_boundary(start, span):
            return span
        return last

    def _keep_block_whole(self, start: int, end: int, cut: int, fill: _Fill) -> int:
        """Move a cut that would split a code block opened late in this piece to before it.

        A block that starts in the last part of a piece is better shown whole in the next
        embed than closed after three lines; only done where the cut is loose (it costs room).
        """
        if fill is _TIGHT or self.reopen_at(cut) is None or self.reopen_at(start) is not None:
            return cut
        count = bisect_right(self._fence_ends, cut)
        opened = self._fence_ends[count - 1] - 3
        line_start = self.text.rfind("\n", start, opened) + 1
        if line_start > start + (end - start) // 2:
            return line_start
        return cut

    def _is_boundary(self, start: int, cut: int) -> bool:
        """Whether ``cut`` lies between two grapheme clusters (``start`` is known to)."""
        text = self.text
        before, after = text[cut - 1], text[cut]
        if before < "\x7f" and after < "\x7f":
            # Between two ASCII characters only CR LF forms a cluster.
            return not (before == "\r" and after == "\n")
        line = text.rfind("\n", start, cut)
        scan = start if line < 0 else line + 1
        for match in _GRAPHEME.finditer(text, scan):
            if match.end() >= cut:
                return bool(match.end() == cut)
        return True

    def _protected(self, start: int, cut: int) -> int | None:
        """Start of the inline-code span, link or backtick run that ``cut`` falls inside."""
        text = self.text
        if text[cut - 1] == "`" and text[cut] == "`":
            run = cut - 1
            while run > start and text[run - 1] == "`":
                run -= 1
            return run
        line_start = text.rfind("\n", start, cut) + 1
        line_start = max(line_start, start)
        line_end = text.find("\n", cut, cut + 2048)
        if line_end < 0:
            line_end = min(len(text), cut + 2048)
        for match in _PROTECTED.finditer(text, line_start, line_end):
            if match.start() < cut < match.end():
                return int(match.start())
            if match.start() >= cut:
                break
        return None


def truncate(text: str, limit: int, ellipsis: str = "…") -> str:
    """Shorten ``text`` to ``limit`` UTF-16 units at a grapheme boundary, marking the cut.

    Used for labels (titles, field names, author) where losing the tail is acceptable and a
    second embed is not.
    """
    if utf16_len(text) <= limit:
        return text
    room = limit - utf16_len(ellipsis)
    kept = 0
    end = 0
    for match in _GRAPHEME.finditer(text, 0, min(len(text), limit + 64)):
        size = utf16_len(match.group())
        if kept + size > room:
            break
        kept += size
        end = match.end()
    if end == 0:  # a single cluster larger than the label: cut between code points
        while end < len(text) and kept + utf16_len(text[end]) <= room:
            kept += utf16_len(text[end])
            end += 1
    return text[:end].rstrip(WHITESPACE) + ellipsis
