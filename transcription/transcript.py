"""Value classes that cross the process boundary: job options in, transcript out.

They are frozen dataclasses of plain Python values (no faster-whisper types)
so they pickle cheaply between the worker and the parent, and so code that
only renders or stores transcripts never needs the optional dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Task = Literal["transcribe", "translate"]


@dataclass(frozen=True, slots=True)
class TranscribeOptions:
    """What to ask Whisper for one job.

    ``language`` is an ISO 639-1 code or ``None`` to let the model detect it
    (English-only models such as ``tiny.en`` always answer ``"en"``).
    ``task="translate"`` translates into English. ``vad_filter`` skips silence
    with Silero VAD first, which speeds up recordings with long pauses.
    """

    language: str | None = None
    task: Task = "transcribe"
    vad_filter: bool = False
    word_timestamps: bool = False

    def __post_init__(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', not {self.task!r}")


@dataclass(frozen=True, slots=True)
class Word:
    """One word with its timing, present when ``word_timestamps`` was requested."""

    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of speech with its text; times are seconds from the start of the audio."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class Transcript:
    """The result of one transcription job."""

    segments: tuple[Segment, ...]
    language: str
    language_probability: float
    duration: float
    text: str
