"""``AsyncRelayClient``: the same methods as ``RelayClient``, as coroutines; its flusher is a task.

The spool is SQLite through the stdlib, so its calls run in a worker thread (``asyncio.to_thread``)
and never block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from relay_client._backoff import Backoff
from relay_client._base import (
    DEFAULT_MAX_RETRIES,
    FLUSH_IDLE_S,
    SPOOL_DEFAULTS,
    Config,
    as_payload,
    judge,
    new_idempotency_key,
    receipt,
    result_request,
    transport_failure,
)
from relay_client._exceptions import RelayAPIError, RelayUnavailable, WaitTimeout
from relay_client._files import FileArg, FileSpec, Progress, file_specs, multipart_files
from relay_client._models import Destination, ProgressReceipt, Receipt, Result, ResultInfo, TranscriptionReceipt
from relay_client._spool import Spool, SpoolEntry, SpoolStats

log = logging.getLogger("relay_client")


class AsyncRelayClient:
    """The asyncio client; ``async with AsyncRelayClient(...) as relay``. See ``RelayClient``."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 spool: str | os.PathLike[str] | Spool | None = None, timeout: float | httpx.Timeout | None = None,
                 max_retries: int = DEFAULT_MAX_RETRIES, backoff: Backoff | None = None,
                 spool_max_bytes: int = SPOOL_DEFAULTS["spool_max_bytes"],  # type: ignore[assignment]
                 spool_max_age: float = SPOOL_DEFAULTS["spool_max_age"],
                 flush_interval: float = FLUSH_IDLE_S, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._config = Config.build(base_url, api_key, spool=spool, timeout=timeout, max_retries=max_retries,
                                    backoff=backoff, spool_max_bytes=spool_max_bytes, spool_max_age=spool_max_age)
        self._http = httpx.AsyncClient(base_url=self._config.base_url, headers=self._config.headers(),
                                       timeout=self._config.timeout, transport=transport)
        self._flush_interval = flush_interval
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"AsyncRelayClient({self._config.base_url!r}, spool={self.spool!r})"

    @property
    def spool(self) -> Spool | None:
        """The spool, if the client has one."""
        return self._config.spool

    async def __aenter__(self) -> AsyncRelayClient:
        if self.spool is not None and (await asyncio.to_thread(self.spool.stats)).pending:
            self._start_flusher()  # entries left by an earlier run go as soon as the client opens
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the flusher (spooled entries stay for the next run) and close connections."""
        self._stop.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._http.aclose()
        if self.spool is not None:
            self.spool.close()

    async def _request(self, method: str, path: str, *, retries: int | None = None, files: Sequence[FileSpec] = (),
                       progress: Progress | None = None, file_field: str | None = None,
                       **kwargs: Any) -> httpx.Response:
        retries = self._config.max_retries if retries is None else retries
        attempt = 0
        while True:
            try:
                with multipart_files(files, progress, file_field) as parts:
                    response = await self._http.request(method, path, files=parts or None, **kwargs)
                outcome = judge(response)
            except httpx.TransportError as exc:
                outcome = transport_failure(exc, self._config.base_url)
            if outcome.response is not None:
                return outcome.response
            assert outcome.error is not None
            if attempt >= retries:
                raise outcome.error
            delay = self._config.backoff.delay(attempt, outcome.retry_after)
            log.info("relay %s %s failed (%s); retrying in %.2f s", method, path, outcome.error, delay)
            await asyncio.sleep(delay)
            attempt += 1

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self._request(method, path, **kwargs)).json()

    async def send(self, result: Result | Mapping[str, Any], *, files: Sequence[FileArg] | None = None,
                   idempotency_key: str | None = None, progress: Progress | None = None) -> Receipt:
        """Hand a result over; see ``RelayClient.send``."""
        payload = as_payload(result)
        specs = file_specs(files)
        key = idempotency_key or new_idempotency_key()
        try:
            response = await self._request("POST", "/v1/results", files=specs, progress=progress,
                                           headers={"Idempotency-Key": key}, **result_request(payload, bool(specs)))
        except RelayUnavailable as exc:
            if self.spool is None:
                raise
            await asyncio.to_thread(self.spool.put, key, payload, specs)
            log.warning("relay unavailable (%s): result %s spooled in %s", exc, key, self.spool.path)
            self._start_flusher()
            return Receipt(id=None, spooled=True, idempotency_key=key)
        return receipt(response, key)

    async def get(self, result_id: str) -> ResultInfo:
        """A result's status and deliveries."""
        return ResultInfo.from_dict(await self._json("GET", f"/v1/results/{result_id}"))

    async def list(self, *, status: str | Sequence[str] | None = None, workflow_id: str | None = None,
                   since: datetime | None = None, page_size: int = 50) -> AsyncIterator[ResultInfo]:
        """Every matching result, newest first, following cursors (``async for``)."""
        params: dict[str, Any] = {"limit": page_size}
        if status:
            params["status"] = status if isinstance(status, str) else ",".join(status)
        if workflow_id:
            params["workflow_id"] = workflow_id
        if since:
            params["since"] = since.isoformat()
        while True:
            page = await self._json("GET", "/v1/results", params=params)
            for item in page["items"]:
                yield ResultInfo.from_dict(item)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    async def ack(self, result_id: str) -> ResultInfo:
        """Mark a result picked up."""
        return ResultInfo.from_dict(await self._json("POST", f"/v1/results/{result_id}/ack"))

    async def redeliver(self, result_id: str, route: Sequence[Destination] | None = None) -> ResultInfo:
        """Queue a result again, to its own route or to ``route``."""
        body = {"route": list(route)} if route else {}
        return ResultInfo.from_dict(await self._json("POST", f"/v1/results/{result_id}/redeliver", json=body))

    async def wait(self, result_id: str, timeout: float = 60.0, *,  # noqa: ASYNC109 - RelayClient.wait's twin
                   interval: float = 0.5) -> ResultInfo:
        """Poll until the result is final; ``WaitTimeout`` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            info = await self.get(result_id)
            if info.final:
                return info
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"result {result_id} is still {info.status} after {timeout} s")
            await asyncio.sleep(min(interval, max(deadline - time.monotonic(), 0)))

    async def progress(self, workflow_id: str, route: Sequence[Destination], stage: str = "Working",
                       current: float | None = None, total: float | None = None,
                       message: str | None = None) -> ProgressReceipt:
        """Show a workflow's progress in one edited message."""
        body = {"workflow_id": workflow_id, "route": list(route), "stage": stage, "current": current,
                "total": total, "message": message}
        return ProgressReceipt.from_dict(await self._json("POST", "/v1/progress", json=body))

    async def transcribe(self, path: str | os.PathLike[str], route: Sequence[Destination], **options: Any
                         ) -> TranscriptionReceipt:
        """Upload an audio file for transcription; see ``RelayClient.transcribe``."""
        payload = {"route": list(route), **options}
        return TranscriptionReceipt.from_dict(await self._json(
            "POST", "/v1/transcriptions", files=file_specs([path]), file_field="file",
            data={"payload_json": json.dumps(payload)}))

    async def stats(self) -> SpoolStats | None:
        """The spool's counts (``None`` without a spool)."""
        return await asyncio.to_thread(self.spool.stats) if self.spool is not None else None

    async def _send_entry(self, entry: SpoolEntry) -> bool:
        assert self.spool is not None
        try:
            await self._request("POST", "/v1/results", retries=0, files=entry.files,
                                headers={"Idempotency-Key": entry.idempotency_key},
                                **result_request(entry.payload, bool(entry.files)))
        except RelayAPIError as exc:
            await asyncio.to_thread(self.spool.reject, entry.id, str(exc))
            return True
        except RelayUnavailable as exc:
            await asyncio.to_thread(self.spool.release, entry, str(exc))
            return False
        await asyncio.to_thread(self.spool.done, entry.id)
        return True

    async def flush(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109 - RelayClient.flush's twin
        """Send every spooled result now, oldest first; how many the relay took before ``timeout``."""
        if self.spool is None:
            return 0
        sent, deadline, attempt = 0, time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            entry = await asyncio.to_thread(self.spool.claim)
            if entry is None:
                if not await asyncio.to_thread(self.spool.in_flight_here):
                    break
                await asyncio.sleep(0.05)  # the flusher task is sending one: wait until all have gone
                continue
            if await self._send_entry(entry):
                sent, attempt = sent + 1, 0
                continue
            await asyncio.sleep(min(self._config.backoff.delay(attempt), max(deadline - time.monotonic(), 0)))
            attempt += 1
        return sent

    def _start_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(), name="relay-spool-flusher")
        self._wake.set()

    async def _flush_loop(self) -> None:
        assert self.spool is not None
        attempt = 0
        while not self._stop.is_set():
            try:
                entry = await asyncio.to_thread(self.spool.claim)
                went = await self._send_entry(entry) if entry is not None else None
            except Exception:  # the task's outermost boundary: log, back off, keep flushing
                log.exception("spool flusher failed; entries stay spooled")
                went = False
            if went:
                attempt = 0
                continue
            if went is False:
                await asyncio.sleep(self._config.backoff.delay(attempt))
                attempt += 1
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            self._wake.clear()
