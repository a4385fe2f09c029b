"""Transcription jobs as values, and the pure step that turns a transcript into a Result.

Kept apart from the store and the service (``app.transcriptions``) because none of it does I/O:
what a Discord user finally reads — title, summary, body, the ``.txt``/``.srt``/``.vtt`` files — is
decided here and tested without a database or a model.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePath
from typing import Any

from schemas.targets import Target
from store.transcriptions import Job
from store.views import NewAttachment, NewResult
from transcription import MEDIA_TYPES, TranscribeOptions, Transcript, to_srt, to_txt, to_vtt

MAX_ATTEMPTS = 2
"""Runs of one job before it fails: a worker crash or an interrupted relay is retried once."""
SUMMARY_LINES = 3
SUMMARY_CHARS = 600


def transcribe_options(job: Job) -> TranscribeOptions:
    """The engine's options from what the producer asked for."""
    o = job.options
    return TranscribeOptions(language=o.get("language"), task=o.get("task", "transcribe"),
                             vad_filter=bool(o.get("vad_filter")), word_timestamps=bool(o.get("word_timestamps")))


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
        key_id=job.key_id, tenant=job.tenant, idempotency_key=job.idempotency_key,
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
