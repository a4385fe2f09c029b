"""Dependencies declared once: settings, every store and the authenticated producer.

Every store is built once in ``Runtime.build`` and handed to routes through these typed
dependencies; this is the one module that reads ``request.app.state``. They are ``async def`` on
purpose: FastAPI runs a plain ``def`` dependency in the thread pool, a thread hop per dependency
per request for what is only an attribute lookup.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from app.auth import authenticate
from app.runtime import Runtime
from app.settings import Settings
from store.admin import AdminStore
from store.keys import KeyStore, Producer
from store.pickup import PickupStore
from store.progress import ProgressStore
from store.results import ResultStore
from store.transcriptions import TranscriptionStore


def runtime_of(request: Request) -> Runtime:
    """The process's runtime (stores, settings, workers), built in the lifespan."""
    return cast(Runtime, request.app.state.runtime)


async def get_runtime(request: Request) -> Runtime:
    """The process's runtime (stores, settings, workers), built in the lifespan."""
    return runtime_of(request)


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return runtime_of(request).settings


async def get_results(request: Request) -> ResultStore:
    """Results, their deliveries and attachments."""
    return runtime_of(request).results


async def get_keys(request: Request) -> KeyStore:
    """Producer keys."""
    return runtime_of(request).keys


async def get_admin(request: Request) -> AdminStore:
    """The admin page's reads and writes (destinations, sessions, timelines)."""
    return runtime_of(request).admin


async def get_progress(request: Request) -> ProgressStore:
    """Progress states of running workflows."""
    return runtime_of(request).progress


async def get_transcriptions(request: Request) -> TranscriptionStore:
    """Transcription jobs."""
    return runtime_of(request).transcriptions


async def get_pickup(request: Request) -> PickupStore:
    """The ``/results`` command's reads."""
    return runtime_of(request).pickup


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ResultsDep = Annotated[ResultStore, Depends(get_results)]
KeysDep = Annotated[KeyStore, Depends(get_keys)]
AdminDep = Annotated[AdminStore, Depends(get_admin)]
ProgressDep = Annotated[ProgressStore, Depends(get_progress)]
TranscriptionsDep = Annotated[TranscriptionStore, Depends(get_transcriptions)]
PickupDep = Annotated[PickupStore, Depends(get_pickup)]


async def require_producer(request: Request, keys: KeysDep) -> Producer:
    """The authenticated key and its tenant; 401 without a valid key, 403 for a revoked one."""
    return await authenticate(request, keys)


ProducerDep = Annotated[Producer, Depends(require_producer)]
