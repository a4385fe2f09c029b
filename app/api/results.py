"""``/v1/results``: accept, read, list, acknowledge, redeliver and delete results."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from app.auth import authenticate
from app.deps import ProducerDep, ResultsDep, RuntimeDep, runtime_of
from app.errors import ApiError, invalid, validation_details
from app.ingest import build_targets, read_result
from app.openapi import RESULT_BODY
from app.present import accepted_response, attachment_download, content_out, result_out
from delivery.metrics import RESULTS_RECEIVED
from schemas.api import (
    Accepted,
    BulkRedeliverIn,
    ErrorBody,
    RedeliverIn,
    ResultContent,
    ResultOut,
    ResultPage,
    ResultStatus,
)
from schemas.bounds import IsoDatetime
from schemas.targets import tenant_key
from store.views import ResultFilter

router = APIRouter(prefix="/v1/results", tags=["results"],
                   responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 503: {"model": ErrorBody}})

@router.post("", status_code=202, response_model=Accepted, openapi_extra={"requestBody": RESULT_BODY},
             responses={400: {"model": ErrorBody}, 409: {"model": ErrorBody}, 413: {"model": ErrorBody},
                        415: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def create_result(request: Request) -> Response:
    """Store a result durably (committed before this answers) and queue its delivery.

    The hot path of ingest, so it takes only the request: the runtime and the producer come from
    the same functions the typed dependencies call, without FastAPI resolving a dependency graph per
    request, and the answer is written as bytes instead of through the response model (which still
    documents it). Both were a third of this route's CPU.
    """
    runtime = runtime_of(request)
    producer = await authenticate(request, runtime.keys)
    new = await read_result(request, producer=producer, settings=runtime.settings, cipher=runtime.cipher)
    result_id, created = await runtime.results.create_async(new)
    headers = None
    if created:
        RESULTS_RECEIVED.inc()
        runtime.wake_workers()
        status = "pending"  # just committed: nothing can have touched it yet, no need to read it back
    else:
        headers = {"Idempotent-Replayed": "true"}
        status = (await run_in_threadpool(lambda: runtime.results.get(result_id, tenant=producer.tenant))).status
    return accepted_response(result_id, status, headers)


@router.get("", response_model=ResultPage)
async def list_results(
    results: ResultsDep, producer: ProducerDep,
    status: Annotated[list[ResultStatus] | None, Query(description="repeat or comma-separate")] = None,
    workflow_id: str | None = None,
    since: IsoDatetime | None = None,
    destination: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ResultPage:
    """Results newest first (pickup listing); filter by status, workflow, creation time, destination."""
    flt = ResultFilter(tenant=producer.tenant, status=tuple(status or ()), workflow_id=workflow_id, since=since,
                       destination=tenant_key(producer.tenant, destination) if destination else None)
    try:
        views, next_cursor = await run_in_threadpool(results.list, flt, cursor=cursor, limit=limit)
    except ValueError as exc:
        raise invalid([{"field": "cursor", "message": str(exc)}], status=400) from None
    return ResultPage(items=[result_out(v) for v in views], next_cursor=next_cursor)


@router.post("/redeliver", responses={422: {"model": ErrorBody}})
async def redeliver_matching(runtime: RuntimeDep, producer: ProducerDep, body: BulkRedeliverIn) -> dict[str, Any]:
    """Queue again every result of this tenant matching the filter (default: all undelivered)."""
    flt = ResultFilter(tenant=producer.tenant, status=(body.status,), workflow_id=body.workflow_id, since=body.since,
                       destination=tenant_key(producer.tenant, body.destination) if body.destination else None)
    ids = await run_in_threadpool(runtime.results.redeliver_matching, flt, limit=body.limit)
    if ids:
        runtime.wake_workers()
    return {"queued": len(ids), "ids": ids}


@router.get("/{result_id}", response_model=ResultOut, responses={404: {"model": ErrorBody}})
async def get_result(result_id: str, results: ResultsDep, producer: ProducerDep) -> ResultOut:
    """A result's status and every delivery's state and last error (secrets masked)."""
    return result_out(await run_in_threadpool(lambda: results.get(result_id, tenant=producer.tenant)))


@router.get("/{result_id}/content", response_model=ResultContent, responses={404: {"model": ErrorBody}})
async def get_content(result_id: str, results: ResultsDep, producer: ProducerDep) -> ResultContent:
    """The full original result: summary, body, fields, metadata, attachment list."""
    return content_out(await run_in_threadpool(lambda: results.content(result_id, tenant=producer.tenant)))


@router.get("/{result_id}/attachments/{index}", response_class=StreamingResponse,
            responses={200: {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "the file, with the content type it was stored with"},
                       404: {"model": ErrorBody}})
async def get_attachment(result_id: str, index: int, results: ResultsDep, producer: ProducerDep) -> StreamingResponse:
    """The bytes of one attachment, streamed in pieces, with its content type and filename."""
    meta = await run_in_threadpool(lambda: results.attachment(result_id, index, tenant=producer.tenant))
    return attachment_download(results, result_id, meta)


@router.post("/{result_id}/ack", response_model=ResultOut, responses={404: {"model": ErrorBody}})
async def ack_result(result_id: str, results: ResultsDep, producer: ProducerDep) -> ResultOut:
    """A pickup client took the result: it becomes ``picked_up``."""
    return result_out(await run_in_threadpool(lambda: results.ack(result_id, tenant=producer.tenant)))


@router.post("/{result_id}/redeliver", response_model=ResultOut, status_code=202,
             responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def redeliver_result(result_id: str, request: Request, runtime: RuntimeDep, producer: ProducerDep) -> ResultOut:
    """Queue a result again, to its route or to a new one (``{"route": [...]}``)."""
    raw = await request.body()
    try:
        body = RedeliverIn.model_validate_json(raw) if raw.strip() else RedeliverIn()
    except ValidationError as exc:
        details = validation_details(exc)
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            raise ApiError(400, "invalid_json", "body is not valid JSON") from None
        raise invalid(details) from None
    targets = (build_targets(body.route, runtime.settings, runtime.cipher, tenant=producer.tenant)
               if body.route else None)
    view = await run_in_threadpool(
        lambda: runtime.results.redeliver(result_id, targets=targets, mode=body.mode, tenant=producer.tenant))
    runtime.wake_workers()
    return result_out(view)


@router.delete("/{result_id}", status_code=204, responses={404: {"model": ErrorBody}})
async def delete_result(result_id: str, results: ResultsDep, producer: ProducerDep) -> Response:
    """Purge a result and its files now."""
    await run_in_threadpool(lambda: results.delete(result_id, tenant=producer.tenant))
    return Response(status_code=204)


