"""The package stays importable and cheap without the optional extra; errors cross processes intact."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

import transcription
from transcription import (
    EngineClosed,
    InvalidAudio,
    ModelLoadError,
    ModelNotAvailable,
    TranscriptionCrashed,
    TranscriptionError,
    TranscriptionUnavailable,
)


def test_importing_the_package_does_not_import_the_heavy_dependencies() -> None:
    code = (
        "import sys, transcription, transcription.engine\n"
        "heavy = [m for m in ('faster_whisper', 'ctranslate2', 'av') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_available_checks_each_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("faster_whisper")
    assert transcription.available() is True
    monkeypatch.setattr(transcription, "_REQUIRED_MODULES", ("av", "a_package_that_is_not_installed"))
    assert transcription.available() is False


@pytest.mark.parametrize(
    "error",
    [
        TranscriptionUnavailable("faster_whisper"),
        ModelNotAvailable("large-v3", "not cached"),
        ModelLoadError("tiny.en", "RuntimeError: bad file"),
        InvalidAudio("the file is empty"),
        TranscriptionCrashed(),
        EngineClosed(),
    ],
    ids=lambda error: type(error).__name__,
)
def test_errors_survive_pickling(error: TranscriptionError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
    assert isinstance(copy, TranscriptionError)
