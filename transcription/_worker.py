"""Code that runs inside the worker processes.

Each worker loads the model once, in the pool initializer, into a module
global; loading takes about half a second for tiny.en and many seconds for
large models, far too long to pay per job. faster-whisper is imported here
only, so the API process never loads it unless it also resolves a model.

Messages on the progress queue are tuples whose first item says what they are:
``("start", job_id, pid)``, ``("progress", job_id, seconds, duration)`` and
``("done", job_id)``; ``done`` is sent before the result is returned, so the
parent can wait for it and deliver every progress update before returning.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any

from .errors import InvalidAudio, ModelLoadError
from .model import ModelSpec
from .transcript import Segment, TranscribeOptions, Transcript, Word

_model: Any = None
_load_error: str | None = None
_spec: ModelSpec | None = None
_progress: Any = None


WORKER_NICENESS = 10


def initialize(spec: ModelSpec, progress: Any, cpu_threads: int) -> None:
    """Pool initializer: load the model once for the life of this process.

    A failure is remembered rather than raised: an initializer that raises
    makes ProcessPoolExecutor report only "a child process terminated
    abruptly", while remembering it lets every job raise ``ModelLoadError``
    carrying the real reason.
    """
    global _model, _load_error, _spec, _progress
    # Ctrl-C reaches the whole process group; the parent decides how to stop
    # its workers, and a KeyboardInterrupt traceback per child is only noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Transcription is batch work sharing cores with the API's event loop: yield to it, so a
    # 20-minute recording never makes /healthz or a delivery wait (threads inherit the niceness).
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    _spec, _progress = spec, progress
    try:
        import tqdm
        from faster_whisper import WhisperModel

        # faster-whisper creates a tqdm bar even when disabled, and tqdm's
        # default lock is a named multiprocessing semaphore; a worker killed
        # while holding one makes the resource tracker report a leak at exit.
        tqdm.tqdm.set_lock(threading.RLock())

        _model = WhisperModel(
            spec.path,
            device=spec.device,
            compute_type=spec.compute_type,
            cpu_threads=cpu_threads,
            local_files_only=True,
        )
    except Exception as exc:  # the child's outermost boundary; re-raised per job below
        _load_error = f"{type(exc).__name__}: {exc}"


def ping() -> int:
    """Prove this worker has its model loaded; returns the worker's pid."""
    _require_model()
    return os.getpid()


def run_job(job_id: int, audio_path: str, options: TranscribeOptions) -> Transcript:
    """Transcribe one file, reporting progress per segment, and return plain values."""
    import av

    model = _require_model()
    _progress.put(("start", job_id, os.getpid()))
    try:
        segments_iter, info = model.transcribe(
            audio_path,
            language=options.language,
            task=options.task,
            vad_filter=options.vad_filter,
            word_timestamps=options.word_timestamps,
        )
        duration = float(info.duration)
        # transcribe() has decoded the whole file by now; this first update
        # tells the caller the job is running and how long the audio is.
        _progress.put(("progress", job_id, 0.0, duration))
        segments: list[Segment] = []
        # The generator decodes lazily, 30 s window by window: iterating it is
        # the transcription, which is what makes per-segment progress possible.
        for raw in segments_iter:
            segments.append(_segment(raw))
            _progress.put(("progress", job_id, min(float(raw.end), duration), duration))
    except av.FFmpegError as exc:
        # The parent probed the file already, so this is a file whose damage
        # starts after the probed packets; still the client's audio, not our bug.
        raise InvalidAudio(f"decoding failed part-way ({exc.strerror or type(exc).__name__})") from exc
    _progress.put(("progress", job_id, duration, duration))
    _progress.put(("done", job_id))
    return Transcript(
        segments=tuple(segments),
        language=info.language,
        language_probability=float(info.language_probability),
        duration=duration,
        text=" ".join(s.text for s in segments if s.text),
    )


def _require_model() -> Any:
    if _model is None:
        name = _spec.name if _spec else "?"
        raise ModelLoadError(name, _load_error or "the worker was not initialized")
    return _model


def _segment(raw: Any) -> Segment:
    words = tuple(Word(float(w.start), float(w.end), w.word, float(w.probability)) for w in raw.words or ())
    return Segment(start=float(raw.start), end=float(raw.end), text=raw.text.strip(), words=words)
