"""``/v1/destinations``: see which destinations are disabled (a 404 Unknown Webhook) and re-enable them.

A producer sees its own tenant's destinations only, under the keys it knows (``webhook:<id>``),
never another tenant's record of the same webhook.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.deps import AdminDep, ProducerDep
from app.errors import ApiError
from schemas.api import DestinationOut, DestinationPage, ErrorBody
from schemas.targets import public_key, tenant_key
from store.admin import DestinationView

router = APIRouter(prefix="/v1/destinations", tags=["destinations"],
                   responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 503: {"model": ErrorBody}})


def _out(view: DestinationView) -> DestinationOut:
    return DestinationOut(key=public_key(view.key), kind=view.kind, label=view.label, disabled=view.disabled,
                          disabled_reason=view.disabled_reason, disabled_at=view.disabled_at)


@router.get("", response_model=DestinationPage)
async def list_destinations(store: AdminDep, producer: ProducerDep, disabled: bool = False) -> DestinationPage:
    """This tenant's destinations, disabled ones first; ``?disabled=true`` for the disabled ones only."""
    views = await run_in_threadpool(lambda: store.destinations(disabled_only=disabled, tenant=producer.tenant))
    return DestinationPage(items=[_out(v) for v in views])


@router.post("/{key}/enable", response_model=DestinationOut, responses={404: {"model": ErrorBody}})
async def enable_destination(key: str, store: AdminDep, producer: ProducerDep) -> DestinationOut:
    """Re-enable a destination disabled after a 404 (e.g. the webhook was re-created); later results use it again."""
    stored = tenant_key(producer.tenant, key)
    view = None if "/" in key else await run_in_threadpool(lambda: store.reenable(stored, tenant=producer.tenant))
    if view is None:
        raise ApiError(404, "not_found", f"no such destination: {key}")
    return _out(view)
