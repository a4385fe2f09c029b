"""Dependencies declared once: settings, stores and the authenticated producer.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in the thread pool,
a thread hop per dependency per request for what is only an attribute lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.auth import require_producer
from app.results import ResultStore
from app.runtime import Runtime
from app.settings import Settings
from app.store import Producer


async def get_runtime(request: Request) -> Runtime:
    """The process's runtime (store, settings, workers), built in the lifespan."""
    return request.app.state.runtime


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.runtime.settings


async def get_results(request: Request) -> ResultStore:
    """The result store."""
    return request.app.state.runtime.results


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ResultsDep = Annotated[ResultStore, Depends(get_results)]
ProducerDep = Annotated[Producer, Depends(require_producer)]
