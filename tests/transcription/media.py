"""Making test media with PyAV: re-encoding speech into other formats, and a silent video."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class Encoding:
    """How to write one audio format; ``rate`` is forced where the codec demands it (Opus)."""

    suffix: str
    container: str
    codec: str
    rate: int | None = None


ENCODINGS: dict[str, Encoding] = {
    "flac": Encoding(".flac", "flac", "flac"),
    "mp3": Encoding(".mp3", "mp3", "libmp3lame"),
    "ogg-opus": Encoding(".ogg", "ogg", "libopus", rate=48_000),
    "m4a-aac": Encoding(".m4a", "ipod", "aac"),
    "webm-opus": Encoding(".webm", "webm", "libopus", rate=48_000),
}


def encode_audio(source: Path, target_dir: Path, name: str) -> Path:
    """Re-encode ``source`` (any PyAV-readable audio) as the format ``ENCODINGS[name]``."""
    encoding = ENCODINGS[name]
    target = target_dir / f"{source.stem}-{name}{encoding.suffix}"
    with av.open(str(source)) as inp, av.open(str(target), "w", format=encoding.container) as out:
        in_stream = inp.streams.audio[0]
        rate = encoding.rate or in_stream.codec_context.sample_rate
        out_stream = out.add_stream(encoding.codec, rate=rate)
        out_stream.codec_context.layout = "mono"
        sample_format = out_stream.codec_context.codec.audio_formats[0].name
        out_stream.codec_context.format = sample_format
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=rate)
        for frame in inp.decode(in_stream):
            frame.pts = None
            for resampled in resampler.resample(frame):
                out.mux(out_stream.encode(resampled))
        for resampled in resampler.resample(None):
            out.mux(out_stream.encode(resampled))
        out.mux(out_stream.encode(None))
    return target


def silent_video(path: Path, frames: int = 10) -> Path:
    """An MP4 with a video stream and no audio stream."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(frames):
            image = np.full((64, 64, 3), i * 20, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path
