"""Transcription jobs as values, and the pure step that turns a transcript into a Result.

Kept apart from the store and the service (``app.transcriptions``) because none of it does I/O:
what a Discord user finally reads — title, summary, body, the ``.txt``/``.srt``/``.vtt`` files — is
decided here and tested without a database or a model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any

from app.destinations import Target
from app.store import NewAttachment, NewResult, as_utc
from transcription import MEDIA_TYPES, TranscribeOptions, Transcript, to_srt, to_txt, to_vtt

MAX_ATTEMPTS = 2
"""Runs of one job before it fails: a worker crash or an interrupted relay is retried once."""
SUMMARY_LINES = 3
SUMMARY_CHARS = 600


@dataclass(frozen=True)
class NewTranscription:
    """An accepted upload, validated and probed, about to be stored."""

    key_id: str
    filename: str
    content_type: str
    audio: bytes
    duration: float
    options: dict[str, Any]
    request: dict[str, Any]


@dataclass(frozen=True)
class Job:
    """A claimed job: what the service needs to run it (the audio is read separately, in pieces)."""

    id: str
    key_id: str
    filename: str
    attempts: int
    options: dict[str, Any]
    request: dict[str, Any]
    duration: float | None

    @property
    def idempotency_key(self) -> str:
        """The key of the one Result this job may ever create."""
        return f"transcription:{self.id}"

    def transcribe_options(self) -> TranscribeOptions:
        """The engine's options from what the producer asked for."""
        o = self.options
        return TranscribeOptions(language=o.get("language"), task=o.get("task", "transcribe"),
                                 vad_filter=bool(o.get("vad_filter")), word_timestamps=bool(o.get("word_timestamps")))

    def targets(self) -> list[Target]:
        """The route as validated at upload time (tokens already encrypted when a secret key is set)."""
        return [Target(key=t["key"], kind=t["kind"], label=t["label"], stored=t["stored"])
                for t in self.request["targets"]]

    def audio_suffix(self) -> str:
        """The upload's extension, if it is a plain one: some demuxers use it as a hint."""
        suffix = PurePath(self.filename).suffix
        return suffix if 1 < len(suffix) <= 8 and suffix[1:].isalnum() else ""


@dataclass(frozen=True)
class TranscriptionView:
    """A job as ``GET /v1/transcriptions/{id}`` shows it (no audio, no route secrets)."""

    id: str
    status: str
    filename: str
    size: int
    duration: float | None
    processed: float
    language: str | None
    result_id: str | None
    error: str | None
    attempts: int
    workflow_id: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def progress(self) -> float:
        """Seconds processed over seconds of audio, 0..1."""
        if self.status == "done":
            return 1.0
        if not self.duration:
            return 0.0
        return max(0.0, min(1.0, self.processed / self.duration))

    @classmethod
    def from_row(cls, row: Any) -> TranscriptionView:
        """From a row of the table's columns."""
        return cls(id=row.id, status=row.status, filename=row.filename, size=row.size, duration=row.duration,
                   processed=row.processed, language=row.language, result_id=row.result_id, error=row.error,
                   attempts=row.attempts, workflow_id=(row.request_json or {}).get("workflow_id"),
                   created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at))  # type: ignore[arg-type]


def request_json(*, targets: list[Target], mode: str, workflow_id: str | None, title: str | None,
                 metadata: dict[str, Any]) -> dict[str, Any]:
    """What the job keeps of the producer's request to build its Result later."""
    return {"targets": [{"key": t.key, "kind": t.kind, "label": t.label, "stored": t.stored} for t in targets],
            "mode": mode, "workflow_id": workflow_id, "title": title, "metadata": metadata}


def clock(seconds: float) -> str:
    """``1:02:03`` or ``2:05``: how people read a recording's length."""
    total = round(max(0.0, seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _new_result(job: Job, *, title: str, summary: str, body: str | None, level: str, metadata: dict[str, Any],
                attachments: list[NewAttachment]) -> NewResult:
    req = job.request
    return NewResult(
        key_id=job.key_id, idempotency_key=job.idempotency_key,
        # Constant per job: a second attempt is a replay of the first, never an idempotency conflict,
        # even though Whisper's temperature fallback may word the transcript differently.
        request_hash=hashlib.sha256(job.idempotency_key.encode()).hexdigest(),
        workflow_id=req.get("workflow_id"), title=title, summary=summary, body=body,
        fields=[], url=None, color=None, level=level, metadata={**req.get("metadata", {}), **metadata},
        mode=req.get("mode", "first_success"), targets=job.targets(), attachments=attachments)


def transcript_result(job: Job, transcript: Transcript, *, model: str) -> NewResult:
    """The Result a finished job delivers: summary first, the text as body, and the three files."""
    text = to_txt(transcript.segments)
    lines = text.splitlines()
    heading = (f"**Duration** {clock(transcript.duration)} · **Language** {transcript.language} "
               f"({transcript.language_probability:.0%})")
    if lines:
        preview = "\n".join(f"> {line}" for line in lines[:SUMMARY_LINES])
        if len(preview) > SUMMARY_CHARS:
            preview = preview[:SUMMARY_CHARS - 1].rstrip() + "…"
        elif len(lines) > SUMMARY_LINES:
            preview += "\n> …"
        summary = f"{heading}\n\n{preview}"
    else:
        # A silent recording: a short result that says so, and no empty files (Discord refuses them).
        title = job.request.get("title") or f"Transcript: {job.filename}"
        return _new_result(job, title=f"{title} — no speech detected",
                           summary=f"{heading}\n\n*No speech detected in this recording.*", body=None,
                           level="info", metadata=_transcript_metadata(job, transcript, model), attachments=[])
    stem = PurePath(job.filename).stem or "transcript"
    files = [NewAttachment(f"{stem}.txt", MEDIA_TYPES["txt"], text.encode()),
             NewAttachment(f"{stem}.srt", MEDIA_TYPES["srt"], to_srt(transcript.segments).encode()),
             NewAttachment(f"{stem}.vtt", MEDIA_TYPES["vtt"], to_vtt(transcript.segments).encode())]
    title = job.request.get("title") or f"Transcript: {job.filename}"
    return _new_result(job, title=title, summary=summary, body=text or None, level="success",
                       metadata=_transcript_metadata(job, transcript, model), attachments=files)


def _transcript_metadata(job: Job, transcript: Transcript, model: str) -> dict[str, Any]:
    return {"transcription_id": job.id, "duration": transcript.duration, "language": transcript.language,
            "language_probability": transcript.language_probability, "model": model}


def failure_result(job: Job, reason: str) -> NewResult:
    """The notice a failed job delivers instead, so the person waiting learns it will not come."""
    name = job.request.get("title") or job.filename
    return _new_result(job, title=f"Transcription failed: {name}", summary=reason, body=None,
                       level="error", metadata={"transcription_id": job.id, "error": reason}, attachments=[])
