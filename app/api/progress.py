"""``/v1/progress``: a workflow's progress, shown as one Discord message edited in place."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.deps import ProducerDep, ProgressDep, RuntimeDep
from app.ingest import build_targets
from schemas.api import ErrorBody, ProgressAccepted, ProgressIn

router = APIRouter(prefix="/v1/progress", tags=["progress"],
                   responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}})


@router.post("", status_code=202, response_model=ProgressAccepted)
async def post_progress(body: ProgressIn, runtime: RuntimeDep, store: ProgressDep,
                        producer: ProducerDep) -> ProgressAccepted:
    """Record the newest state; the relay edits the progress message when rate limits allow."""
    targets = build_targets(body.route, runtime.settings, runtime.cipher, tenant=producer.tenant)
    state = body.model_dump(include={"stage", "current", "total", "message"})
    recorded, skipped = await run_in_threadpool(store.record, body.workflow_id, targets, state)
    runtime.wake_workers()
    return ProgressAccepted(workflow_id=body.workflow_id, destinations=recorded, skipped=skipped)
