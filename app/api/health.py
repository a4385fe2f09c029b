"""Liveness and readiness: what an orchestrator asks before it routes traffic here."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.db import schema_revisions
from app.deps import RuntimeDep
from app.store import StoreUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(runtime: RuntimeDep) -> JSONResponse:
    """Alive: the event loop answers and no supervised loop is stuck inside one step (or gone).

    A store outage is not a liveness problem (steps fail fast and back off; see ``/readyz``): only
    a loop wedged past ``RELAY_LOOP_STALL_SECONDS`` answers 503, so a liveness probe restarts a
    process that would otherwise accept results it never delivers.
    """
    problems = runtime.loops.problems()
    if problems:
        return JSONResponse({"status": "unhealthy", "loops": problems}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Store reachable, schema current, workers running: 200, else 503 naming what is not."""
    checks: dict[str, str] = {}
    try:
        current, head = await run_in_threadpool(schema_revisions, runtime.engine)
        checks["store"] = "ok"
        checks["migrations"] = "ok" if current == head else f"at {current}, need {head}: run relay migrate"
    except StoreUnavailable as exc:
        checks["store"] = f"unreachable: {exc}"
    except Exception as exc:  # noqa: BLE001 - any driver error means "not ready", never a 500
        checks["store"] = f"unreachable: {type(exc).__name__}"
    checks["workers"] = "ok" if runtime.workers_running() else "not running"
    for loop, failures in runtime.loops.failing().items():
        checks[f"loop:{loop}"] = f"{failures} failed passes in a row"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                        status_code=200 if ready else 503)
