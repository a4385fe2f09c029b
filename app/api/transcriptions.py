"""``/v1/transcriptions``: accept an audio file for transcription and report how the job is going.

Uploads are bounded by ``RELAY_MAX_AUDIO_BYTES`` rather than ``RELAY_MAX_RESULT_BYTES``: a
recording is routinely larger than any result, so ``TranscriptionBodyLimit`` gives this path its
own limit (the audio limit plus a little room for ``payload_json`` and the multipart framing),
still enforced before the body is read, and the ``file`` part itself is checked exactly.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import BinaryIO

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Receive, Scope, Send

import transcription
from app.deps import ProducerDep, RuntimeDep, TranscriptionsDep
from app.errors import ApiError, error_response, invalid, validation_details
from app.ingest import BodyLimitMiddleware, build_targets, parse_json_object
from app.openapi import TRANSCRIPTION_BODY
from app.runtime import Runtime
from app.transcription_jobs import request_json
from schemas.api import ErrorBody, TranscriptionAccepted, TranscriptionIn, TranscriptionOut, clean_filename
from store.errors import NotFound
from store.keys import Producer
from store.transcriptions import NewTranscription, TranscriptionView

PREFIX = "/v1/transcriptions"
FORM_OVERHEAD = 1024 * 1024  # payload_json (its own part is capped at this) and multipart headers
NOT_INSTALLED = ("transcription is not available on this relay: install result-relay with the "
                 "[transcription] extra (faster-whisper)")

router = APIRouter(prefix=PREFIX, tags=["transcriptions"],
                   responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 503: {"model": ErrorBody}})

class _AudioBodyLimit(BodyLimitMiddleware):
    """The body limit of upload requests, whose 413 names the setting that governs it."""

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "too_large", f"the upload is over {self.limit} bytes "
                                  "(RELAY_MAX_AUDIO_BYTES plus room for payload_json)",
                                  {"limit": self.limit, "field": "file"}, {"Connection": "close"})
        await response(scope, receive, send)


class TranscriptionBodyLimit:
    """``BodyLimitMiddleware`` with the audio limit on ``/v1/transcriptions`` and the result limit elsewhere."""

    def __init__(self, app: ASGIApp, limit: int, audio_limit: int) -> None:
        self._default = BodyLimitMiddleware(app, limit)
        self._audio = _AudioBodyLimit(app, audio_limit + FORM_OVERHEAD)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        audio = path == PREFIX or path.startswith(PREFIX + "/")
        await (self._audio if audio else self._default)(scope, receive, send)




@router.post("", status_code=202, response_model=TranscriptionAccepted,
             openapi_extra={"requestBody": TRANSCRIPTION_BODY},
             responses={400: {"model": ErrorBody}, 413: {"model": ErrorBody}, 415: {"model": ErrorBody},
                        422: {"model": ErrorBody}, 501: {"model": ErrorBody}})
async def create_transcription(
    request: Request, runtime: RuntimeDep, producer: ProducerDep, store: TranscriptionsDep
) -> TranscriptionAccepted:
    """Store a recording durably (committed before this answers) and queue its transcription."""
    if not transcription.available():
        raise ApiError(501, "not_implemented", NOT_INSTALLED)
    new = await read_upload(request, producer=producer, runtime=runtime)
    tr_id = await asyncio.to_thread(store.create, new)
    service = getattr(request.app.state, "transcriptions", None)
    if service is not None:  # otherwise a `relay worker` finds the job at its next poll
        service.wake()
    return TranscriptionAccepted(id=tr_id, status="queued", links={"self": f"{PREFIX}/{tr_id}"})


@router.get("/{tr_id}", response_model=TranscriptionOut, responses={404: {"model": ErrorBody}})
async def get_transcription(tr_id: str, store: TranscriptionsDep, producer: ProducerDep) -> TranscriptionOut:
    """A job's status, progress (seconds of audio done / total), language, result id or error."""
    try:
        view = await asyncio.to_thread(lambda: store.get(tr_id, tenant=producer.tenant))
    except NotFound:
        raise ApiError(404, "not_found", f"no such transcription: {tr_id}") from None
    return transcription_out(view)


def transcription_out(view: TranscriptionView) -> TranscriptionOut:
    """The API's view of a job."""
    links = {"self": f"{PREFIX}/{view.id}"}
    if view.result_id:
        links["result"] = f"/v1/results/{view.result_id}"
    return TranscriptionOut(
        id=view.id, status=view.status, filename=view.filename, size=view.size,  # type: ignore[arg-type]
        duration=view.duration, processed=view.processed, progress=view.progress, language=view.language,
        result_id=view.result_id, error=view.error, attempts=view.attempts, workflow_id=view.workflow_id,
        created_at=view.created_at, updated_at=view.updated_at, links=links)


async def read_upload(request: Request, *, producer: Producer, runtime: Runtime) -> NewTranscription:
    """Parse, validate and probe an upload; every refusal names the part (``payload_json``, ``file``) and why.

    The cheap checks (payload, route, size) come before the probe, which reads the audio.
    """
    settings = runtime.settings
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type",
                       "send multipart/form-data with a payload_json part and the audio in a file part")
    form = await request.form(max_files=2, max_fields=2, max_part_size=FORM_OVERHEAD)
    try:
        for name in form:
            if name not in ("payload_json", "file"):
                raise invalid([{"field": name, "message": "unexpected form part; send payload_json and file"}],
                              status=400)
        body = _payload(await _text(form.get("payload_json")))
        if body.model is not None and body.model != settings.whisper_model:
            raise invalid([{"field": "model", "message": f"this relay transcribes with {settings.whisper_model!r} "
                                                         "(RELAY_WHISPER_MODEL); omit model or use that"}])
        targets = build_targets(body.route, settings, runtime.cipher, tenant=producer.tenant)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise invalid([{"field": "file", "message": "is required: send the audio as a file part named file"}])
        size = upload.size or 0
        if size > settings.max_audio_bytes:
            raise ApiError(413, "too_large", f"file: the audio is {size} bytes, over the limit of "
                           f"{settings.max_audio_bytes} bytes (RELAY_MAX_AUDIO_BYTES)",
                           {"field": "file", "limit": settings.max_audio_bytes})
        filename = _filename(upload.filename)
        try:
            audio, info = await asyncio.to_thread(_read_and_probe, upload.file, Path(filename).suffix)
        except transcription.InvalidAudio as exc:
            raise invalid([{"field": "file", "message": exc.reason}]) from None
        except transcription.TranscriptionUnavailable:
            raise ApiError(501, "not_implemented", NOT_INSTALLED) from None
    finally:
        await form.close()
    options = {"language": body.language, "task": body.task, "vad_filter": body.vad_filter,
               "word_timestamps": body.word_timestamps, "model": settings.whisper_model,
               "format": info.format, "codec": info.codec}
    return NewTranscription(
        key_id=producer.key_id, tenant=producer.tenant, filename=filename,
        content_type=(upload.content_type or "application/octet-stream")[:255],
        audio=audio, duration=info.duration, options=options,
        request=request_json(targets=targets, mode=body.mode, workflow_id=body.workflow_id, title=body.title,
                             metadata=body.metadata))


async def _text(part: str | UploadFile | None) -> str:
    if part is None:
        raise invalid([{"field": "payload_json", "message": "is required: the route and options as JSON"}],
                      status=400)
    if isinstance(part, str):
        return part
    return (await part.read()).decode("utf-8", "replace")


def _payload(text: str) -> TranscriptionIn:
    raw = parse_json_object(text, "payload_json")
    try:
        return TranscriptionIn.model_validate(raw)
    except ValidationError as exc:
        raise invalid(validation_details(exc)) from None


def _filename(raw: str | None) -> str:
    try:
        return clean_filename(raw or "")[:255]
    except ValueError:
        return "audio"


def _read_and_probe(file: BinaryIO, suffix: str) -> tuple[bytes, transcription.AudioInfo]:
    """The upload's bytes and what PyAV makes of them (PyAV wants a path, so a private temp copy)."""
    file.seek(0)
    data = file.read()
    safe_suffix = suffix if 1 < len(suffix) <= 8 and suffix[1:].isalnum() else ""
    with tempfile.TemporaryDirectory(prefix="relay-upload-") as directory:
        path = Path(directory) / f"upload{safe_suffix}"
        path.write_bytes(data)
        return data, transcription.probe_audio(path)
