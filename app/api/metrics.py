"""``/metrics``: Prometheus exposition; bearer ``RELAY_METRICS_TOKEN`` when one is set."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.auth import bearer_token
from app.deps import SettingsDep
from app.errors import ApiError

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, settings: SettingsDep) -> Response:
    """Counters, histograms and gauges of this process (cluster-internal by default)."""
    if settings.metrics_token is not None:
        presented = bearer_token(request) or ""
        if not hmac.compare_digest(presented.encode(), settings.metrics_token.get_secret_value().encode()):
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <RELAY_METRICS_TOKEN>")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
