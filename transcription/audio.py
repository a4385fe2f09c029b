"""Checking an upload is decodable audio before it occupies a worker.

Probing runs in the parent (in a thread, it does file I/O) so a text file or
a truncated upload is rejected in milliseconds with a reason the client can
act on, instead of failing deep inside faster-whisper in a child process.
Uses PyAV, which faster-whisper already depends on to decode audio, so
anything that probes cleanly here is something the worker can read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import InvalidAudio, TranscriptionUnavailable

# Decoding a handful of packets proves the codec can read the data; decoding
# everything would cost as much as the worker's own decode.
_PACKETS_TO_DECODE = 8


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What a probe learned about an audio file.

    ``format`` is FFmpeg's demuxer name (``wav``, ``mp3``, ``ogg``, ``flac``,
    ``matroska,webm``, ``mov,mp4,m4a,3gp,3g2,mj2``); ``codec`` the audio codec
    (``pcm_s16le``, ``opus``, ``aac`` ...). ``duration`` is measured from the
    packets actually present, so a cut-off upload reports what it holds, not
    what its header promised.
    """

    duration: float
    format: str
    codec: str
    sample_rate: int
    channels: int
    size_bytes: int


def probe_audio(path: str | os.PathLike[str]) -> AudioInfo:
    """Open ``path`` with PyAV, demux its first audio stream and decode a few packets.

    Raises ``InvalidAudio`` for a missing or empty file, data FFmpeg cannot
    parse, a container without an audio stream (e.g. a silent video) and
    audio whose packets decode to nothing (e.g. a header without data).
    """
    try:
        import av
    except ImportError as exc:
        raise TranscriptionUnavailable("av") from exc

    file = Path(path)
    try:
        size = file.stat().st_size
    except FileNotFoundError as exc:
        raise InvalidAudio(f"no such file: {file.name}") from exc
    if size == 0:
        raise InvalidAudio("the file is empty")

    try:
        container = av.open(str(file), mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise InvalidAudio(f"not a recognisable audio or video file ({_ffmpeg_reason(exc)})") from exc
    with container:
        if not container.streams.audio:
            kinds = ", ".join(sorted({str(s.type) for s in container.streams})) or "none"
            raise InvalidAudio(f"the file has no audio stream (streams found: {kinds})")
        stream = container.streams.audio[0]
        try:
            duration = _measure(container, stream)
        except av.FFmpegError as exc:
            raise InvalidAudio(f"the audio data cannot be decoded ({_ffmpeg_reason(exc)})") from exc
        return AudioInfo(
            duration=duration,
            format=container.format.name,
            codec=stream.codec_context.name,
            sample_rate=stream.codec_context.sample_rate or 0,
            channels=stream.codec_context.channels or 0,
            size_bytes=size,
        )


def _measure(container: Any, stream: Any) -> float:
    """Demux every packet (cheap, no decoding) and decode the first few.

    Measuring from packets also covers containers that carry no duration in
    their header, such as WebM written by a browser's MediaRecorder.
    """
    first_pts: int | None = None
    end_pts: int | None = None
    decoded_samples = 0
    decoded_packets = 0
    for packet in container.demux(stream):
        if packet.size == 0:  # the flush packet PyAV yields at the end
            continue
        if packet.pts is not None:
            first_pts = packet.pts if first_pts is None else min(first_pts, packet.pts)
            end = packet.pts + (packet.duration or 0)
            end_pts = end if end_pts is None else max(end_pts, end)
        if decoded_packets < _PACKETS_TO_DECODE:
            decoded_packets += 1
            decoded_samples += sum(frame.samples for frame in packet.decode())
    if decoded_samples == 0:
        raise InvalidAudio("the audio stream holds no decodable samples (truncated or empty file?)")
    if first_pts is not None and end_pts is not None and stream.time_base is not None and end_pts > first_pts:
        return float((end_pts - first_pts) * Fraction(stream.time_base))
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE is microseconds
    raise InvalidAudio("the duration of the audio cannot be determined")


def _ffmpeg_reason(exc: Exception) -> str:
    # FFmpegError's str() ends with the full path of a temporary upload; keep only the cause.
    return getattr(exc, "strerror", None) or type(exc).__name__
