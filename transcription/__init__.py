"""Speech-to-text for uploaded recordings: faster-whisper in a process pool.

Importing this package is cheap and works without the optional
``[transcription]`` extra: faster-whisper is imported only inside worker
processes and when a model name is resolved. Call ``available()`` first and
answer 501 when it is False.
"""

from __future__ import annotations

import importlib.util

from .audio import AudioInfo, probe_audio
from .engine import ProgressCallback, TranscriptionEngine
from .errors import (
    EngineClosed,
    InvalidAudio,
    ModelLoadError,
    ModelNotAvailable,
    TranscriptionCrashed,
    TranscriptionError,
    TranscriptionUnavailable,
)
from .formats import FORMATS, MEDIA_TYPES, Format, render, to_srt, to_txt, to_vtt
from .model import BUNDLED_MODEL_NAME, ModelSpec, resolve_model
from .transcript import Segment, Task, TranscribeOptions, Transcript, Word

__all__ = [
    "BUNDLED_MODEL_NAME",
    "FORMATS",
    "MEDIA_TYPES",
    "AudioInfo",
    "EngineClosed",
    "Format",
    "InvalidAudio",
    "ModelLoadError",
    "ModelNotAvailable",
    "ModelSpec",
    "ProgressCallback",
    "Segment",
    "Task",
    "TranscribeOptions",
    "Transcript",
    "TranscriptionCrashed",
    "TranscriptionEngine",
    "TranscriptionError",
    "TranscriptionUnavailable",
    "Word",
    "available",
    "probe_audio",
    "render",
    "resolve_model",
    "to_srt",
    "to_txt",
    "to_vtt",
]

_REQUIRED_MODULES = ("faster_whisper", "ctranslate2", "av")


def available() -> bool:
    """Whether the optional dependencies are installed.

    Uses ``importlib.util.find_spec``, which locates the packages without
    importing them, so the API process does not pay faster-whisper's import
    time and memory just to answer this. A broken installation that is
    present but fails to import shows up as ``ModelLoadError`` at ``start()``.
    """
    return all(importlib.util.find_spec(name) is not None for name in _REQUIRED_MODULES)
