"""Store views → API responses. The only place that decides what a producer sees; secrets masked."""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import quote

from fastapi.responses import Response, StreamingResponse

from schemas.api import AttachmentOut, DeliveryOut, LastError, ResultContent, ResultOut
from schemas.bounds import check_media_type
from schemas.targets import public_destination
from store.results import ResultStore
from store.views import AttachmentMeta, DeliveryView, ResultContentView, ResultView

# A producer's file is never a page of the relay: no sniffing it into HTML, and even if a browser
# renders it (an uploaded text/html or image/svg+xml), no script, form or same-origin access.
DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}


def accepted_response(result_id: str, status: str, headers: Mapping[str, str] | None = None) -> Response:
    """The ``202`` of ``POST /v1/results``: the ``Accepted`` body, written straight to JSON bytes.

    Same bytes as FastAPI would produce from ``schemas.api.Accepted`` (a test holds them equal),
    without its validate-then-serialise round per request on the ingest hot path.
    """
    body = {"id": result_id, "status": status, "links": {"self": f"/v1/results/{result_id}"}}
    return Response(json.dumps(body, separators=(",", ":")).encode(), status_code=202, headers=headers,
                    media_type="application/json")


def attachment_download(results: ResultStore, result_id: str, meta: AttachmentMeta, *,
                        media_type: str | None = None) -> StreamingResponse:
    """The bytes of one attachment, streamed in pieces, as a download that cannot run in our origin."""
    if media_type is None:
        # Stored before media types were checked, a value that is not one is served as plain bytes.
        try:
            media_type = check_media_type(meta.content_type)
        except ValueError:
            media_type = "application/octet-stream"
    return StreamingResponse(
        results.stream_attachment(result_id, meta.index, meta.size), media_type=media_type,
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(meta.filename)}",
                 "Content-Length": str(meta.size), "X-Content-SHA256": meta.sha256, **DOWNLOAD_HEADERS},
    )


def attachment_out(result_id: str, meta: AttachmentMeta) -> AttachmentOut:
    """An attachment's metadata with its download link."""
    return AttachmentOut(index=meta.index, filename=meta.filename, content_type=meta.content_type, size=meta.size,
                         sha256=meta.sha256, download=f"/v1/results/{result_id}/attachments/{meta.index}")


def delivery_out(view: DeliveryView) -> DeliveryOut:
    """One delivery, its destination masked."""
    has_error = view.last_error_status is not None or view.last_error_message is not None
    return DeliveryOut(
        destination=public_destination(view.kind, view.stored), status=view.status, attempts=view.attempts,
        message_ids=view.message_ids,
        last_error=LastError(http_status=view.last_error_status, discord_code=view.last_error_code,
                             message=view.last_error_message) if has_error else None,
        next_attempt_at=view.next_attempt_at,
    )


def result_out(view: ResultView) -> ResultOut:
    """``GET /v1/results/{id}``."""
    return ResultOut(
        id=view.id, status=view.status, workflow_id=view.workflow_id, title=view.title, mode=view.mode,
        created_at=view.created_at, updated_at=view.updated_at,
        deliveries=[delivery_out(d) for d in view.deliveries],
        attachments=[attachment_out(view.id, a) for a in view.attachments],
    )


def content_out(view: ResultContentView) -> ResultContent:
    """``GET /v1/results/{id}/content``."""
    return ResultContent(
        id=view.id, workflow_id=view.workflow_id, content=view.content, embeds=view.embeds, title=view.title,
        summary=view.summary, body=view.body,
        fields=view.fields, url=view.url, color=view.color, level=view.level, metadata=view.metadata,
        attachments=[attachment_out(view.id, a) for a in view.attachments], silent=view.silent,
    )
