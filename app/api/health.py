"""Liveness and readiness: what an orchestrator asks before it routes traffic here."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import RuntimeDep
from app.probes import liveness, readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(runtime: RuntimeDep) -> JSONResponse:
    """Alive: the event loop answers and no supervised loop is stuck inside one step (or gone).

    A store outage is not a liveness problem (steps fail fast and back off; see ``/readyz``): only
    a loop wedged past ``RELAY_LOOP_STALL_SECONDS`` answers 503, so a liveness probe restarts a
    process that would otherwise accept results it never delivers.
    """
    status, body = liveness(runtime)
    return JSONResponse(body, status_code=status)


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Store reachable, schema current, workers running, no loop failing: 200, else 503 naming what is not."""
    status, body = await readiness(runtime)
    return JSONResponse(body, status_code=status)
