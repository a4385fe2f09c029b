"""probe_audio accepts the formats people upload and rejects what is not audio."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from transcription.audio import probe_audio
from transcription.errors import InvalidAudio

from .conftest import Speech

media = pytest.importorskip("tests.transcription.media", reason="PyAV (the [transcription] extra) is missing")


def test_wav(speech: Speech) -> None:
    info = probe_audio(speech.short)
    assert (info.format, info.codec, info.channels) == ("wav", "pcm_s16le", 1)
    assert 3 < info.duration < 8
    assert info.size_bytes == speech.short.stat().st_size


@pytest.mark.parametrize("name", sorted(media.ENCODINGS))
def test_other_formats_probe_to_the_same_duration(name: str, speech: Speech, tmp_path: Path) -> None:
    reference = probe_audio(speech.short).duration
    info = probe_audio(media.encode_audio(speech.short, tmp_path, name))
    # Encoders pad the start and end by up to a frame or two.
    assert info.duration == pytest.approx(reference, abs=0.15)
    assert info.sample_rate > 0 and info.channels == 1


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_random_bytes(tmp_path: Path) -> None:
    data = random.Random(1234).randbytes(8192)
    with pytest.raises(InvalidAudio):
        probe_audio(write(tmp_path / "noise.mp3", data))


def test_text_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidAudio, match="not a recognisable audio"):
        probe_audio(write(tmp_path / "notes.wav", b"Meeting notes\nnot audio at all\n" * 20))


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidAudio, match="empty"):
        probe_audio(write(tmp_path / "empty.ogg", b""))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidAudio, match="no such file"):
        probe_audio(tmp_path / "gone.wav")


@pytest.mark.parametrize("name", ["wav", "mp3", "ogg-opus", "flac"])
def test_truncated_to_its_header(name: str, speech: Speech, tmp_path: Path) -> None:
    # 44 bytes is exactly a WAV header: the format is recognised, the samples are gone.
    source = speech.short if name == "wav" else media.encode_audio(speech.short, tmp_path, name)
    truncated = write(tmp_path / f"cut{source.suffix}", source.read_bytes()[:44])
    with pytest.raises(InvalidAudio):
        probe_audio(truncated)


def test_a_cut_off_file_reports_what_it_holds(speech: Speech, tmp_path: Path) -> None:
    data = speech.short.read_bytes()
    half = write(tmp_path / "half.wav", data[: len(data) // 2])
    assert probe_audio(half).duration == pytest.approx(probe_audio(speech.short).duration / 2, rel=0.05)


def test_video_without_audio(tmp_path: Path) -> None:
    with pytest.raises(InvalidAudio, match="no audio stream"):
        probe_audio(media.silent_video(tmp_path / "screen.mp4"))


def test_message_does_not_leak_the_server_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidAudio) as info:
        probe_audio(write(tmp_path / "upload-123.wav", b"plain text"))
    assert str(tmp_path) not in str(info.value)
