"""Exceptions raised by the transcription engine.

The tree, so callers can catch as broadly or narrowly as they need::

    TranscriptionError
    ├── TranscriptionUnavailable   the optional [transcription] extra is not installed
    ├── ModelNotAvailable          the configured model is not on this machine
    ├── ModelLoadError             the model exists but a worker could not load it
    ├── InvalidAudio               the file cannot be decoded as audio (a client error)
    ├── TranscriptionCrashed       the worker process died while running the job
    └── EngineClosed               the engine was closed before or during the job

Every exception keeps its constructor arguments in ``args`` so it survives the
pickling round trip from a worker process back to the parent unchanged.
"""

from __future__ import annotations


class TranscriptionError(Exception):
    """Base class of every error this package raises on purpose."""


class TranscriptionUnavailable(TranscriptionError):
    """faster-whisper (the optional ``[transcription]`` extra) is not installed.

    The API maps this to 501 Not Implemented: the deployment chose not to
    ship the heavy dependency, so the feature does not exist there.
    """

    def __init__(self, missing: str) -> None:
        super().__init__(missing)
        self.missing = missing

    def __str__(self) -> str:
        return (
            f"transcription is not available: the Python package {self.missing!r} is not installed "
            "(install result-relay with the [transcription] extra)"
        )


class ModelNotAvailable(TranscriptionError):
    """The configured model name or path cannot be found locally.

    Raised instead of downloading: the service never fetches models at run
    time, so a missing model is a deployment error that must be loud.
    """

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(model, reason)
        self.model = model
        self.reason = reason

    def __str__(self) -> str:
        return f"Whisper model {self.model!r} is not available: {self.reason}"


class ModelLoadError(TranscriptionError):
    """The model was found but loading it in a worker process failed."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(model, reason)
        self.model = model
        self.reason = reason

    def __str__(self) -> str:
        return f"could not load Whisper model {self.model!r}: {self.reason}"


class InvalidAudio(TranscriptionError):
    """The file is not decodable audio (text, random bytes, empty, truncated, video without sound)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid audio: {self.reason}"


class TranscriptionCrashed(TranscriptionError):
    """The worker process running this job died (killed, out of memory, native crash).

    The engine has already replaced its process pool when this is raised, so
    the next job runs normally; only the job in flight is lost.
    """

    def __init__(self, reason: str = "the worker process terminated abruptly") -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"transcription crashed: {self.reason}"


class EngineClosed(TranscriptionError):
    """The engine was closed; it accepts no new jobs and abandons running ones."""

    def __str__(self) -> str:
        return "the transcription engine is closed"
