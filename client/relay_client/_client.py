"""``RelayClient``: the blocking client, with its spool flusher on a thread."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
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
from relay_client._models import (
    Destination,
    ProgressReceipt,
    Receipt,
    Result,
    ResultInfo,
    TranscriptionReceipt,
)
from relay_client._spool import Spool, SpoolEntry, SpoolStats

log = logging.getLogger("relay_client")


class RelayClient:
    """A blocking client of result-relay; use it as a context manager (``with RelayClient(...) as relay``).

    With ``spool=`` a result the relay cannot take after ``max_retries`` quick retries is kept in
    that SQLite file and sent by a background thread while the client is open; ``send`` then
    returns ``Receipt(spooled=True)`` instead of raising. Without a spool it raises
    ``RelayUnavailable``. A 4xx (other than 429) always raises and is never spooled.
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 spool: str | os.PathLike[str] | Spool | None = None, timeout: float | httpx.Timeout | None = None,
                 max_retries: int = DEFAULT_MAX_RETRIES, backoff: Backoff | None = None,
                 spool_max_bytes: int = SPOOL_DEFAULTS["spool_max_bytes"],  # type: ignore[assignment]
                 spool_max_age: float = SPOOL_DEFAULTS["spool_max_age"],
                 flush_interval: float = FLUSH_IDLE_S, transport: httpx.BaseTransport | None = None) -> None:
        self._config = Config.build(base_url, api_key, spool=spool, timeout=timeout, max_retries=max_retries,
                                    backoff=backoff, spool_max_bytes=spool_max_bytes, spool_max_age=spool_max_age)
        self._http = httpx.Client(base_url=self._config.base_url, headers=self._config.headers(),
                                  timeout=self._config.timeout, transport=transport)
        self._flush_interval = flush_interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        self._flusher_lock = threading.Lock()
        if self.spool is not None and self.spool.stats().pending:
            self._start_flusher()  # a spool left with entries by an earlier run is flushed right away

    def __repr__(self) -> str:
        return f"RelayClient({self._config.base_url!r}, spool={self.spool!r})"

    @property
    def spool(self) -> Spool | None:
        """The spool, if the client has one."""
        return self._config.spool

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self, *, timeout: float = 5.0) -> None:
        """Stop the flusher (spooled entries stay in the file for the next run) and close connections."""
        self._stop.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join(timeout)
        self._http.close()
        if self.spool is not None:
            self.spool.close()

    # -- the one retry loop ------------------------------------------------------------------

    def _request(self, method: str, path: str, *, retries: int | None = None, files: Sequence[FileSpec] = (),
                 progress: Progress | None = None, stop: threading.Event | None = None,
                 file_field: str | None = None, **kwargs: Any) -> httpx.Response:
        retries = self._config.max_retries if retries is None else retries
        attempt = 0
        while True:
            try:
                with multipart_files(files, progress, file_field) as parts:
                    response = self._http.request(method, path, files=parts or None, **kwargs)
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
            if (stop or threading.Event()).wait(delay):
                raise outcome.error
            attempt += 1

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # -- results -----------------------------------------------------------------------------

    def send(self, result: Result | Mapping[str, Any], *, files: Sequence[FileArg] | None = None,
             idempotency_key: str | None = None, progress: Progress | None = None) -> Receipt:
        """Hand a result over; ``Receipt.id`` once the relay stored it, or ``spooled=True``.

        The idempotency key (generated when not given) is sent on every retry and kept with a
        spooled entry, so the relay creates this result once however often it is sent.
        """
        payload = as_payload(result)
        specs = file_specs(files)
        key = idempotency_key or new_idempotency_key()
        try:
            response = self._request("POST", "/v1/results", files=specs, progress=progress,
                                     headers={"Idempotency-Key": key}, **result_request(payload, bool(specs)))
        except RelayUnavailable as exc:
            if self.spool is None:
                raise
            self.spool.put(key, payload, specs)
            log.warning("relay unavailable (%s): result %s spooled in %s", exc, key, self.spool.path)
            self._start_flusher()
            return Receipt(id=None, spooled=True, idempotency_key=key)
        return receipt(response, key)

    def get(self, result_id: str) -> ResultInfo:
        """A result's status and deliveries."""
        return ResultInfo.from_dict(self._json("GET", f"/v1/results/{result_id}"))

    def list(self, *, status: str | Sequence[str] | None = None, workflow_id: str | None = None,
             since: datetime | None = None, page_size: int = 50) -> Iterator[ResultInfo]:
        """Every matching result, newest first, following ``next_cursor`` page by page."""
        params: dict[str, Any] = {"limit": page_size}
        if status:
            params["status"] = status if isinstance(status, str) else ",".join(status)
        if workflow_id:
            params["workflow_id"] = workflow_id
        if since:
            params["since"] = since.isoformat()
        while True:
            page = self._json("GET", "/v1/results", params=params)
            for item in page["items"]:
                yield ResultInfo.from_dict(item)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def ack(self, result_id: str) -> ResultInfo:
        """Mark a result picked up."""
        return ResultInfo.from_dict(self._json("POST", f"/v1/results/{result_id}/ack"))

    def redeliver(self, result_id: str, route: Sequence[Destination] | None = None) -> ResultInfo:
        """Queue a result again, to its own route or to ``route``."""
        body = {"route": list(route)} if route else {}
        return ResultInfo.from_dict(self._json("POST", f"/v1/results/{result_id}/redeliver", json=body))

    def wait(self, result_id: str, timeout: float = 60.0, *, interval: float = 0.5) -> ResultInfo:
        """Poll until the result is delivered, undelivered or picked up; ``WaitTimeout`` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.get(result_id)
            if info.final:
                return info
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"result {result_id} is still {info.status} after {timeout} s")
            time.sleep(min(interval, max(deadline - time.monotonic(), 0)))

    def progress(self, workflow_id: str, route: Sequence[Destination], stage: str = "Working",
                 current: float | None = None, total: float | None = None,
                 message: str | None = None) -> ProgressReceipt:
        """Show a workflow's progress in one message the relay edits in place (never spooled: only news)."""
        body = {"workflow_id": workflow_id, "route": list(route), "stage": stage, "current": current,
                "total": total, "message": message}
        return ProgressReceipt.from_dict(self._json("POST", "/v1/progress", json=body))

    def transcribe(self, path: str | os.PathLike[str], route: Sequence[Destination], **options: Any
                   ) -> TranscriptionReceipt:
        """Upload an audio file for transcription; the transcript arrives on ``route`` as a result.

        ``options`` are the other ``payload_json`` keys: ``title``, ``language``, ``workflow_id``, …
        """
        payload = {"route": list(route), **options}
        return TranscriptionReceipt.from_dict(self._json(
            "POST", "/v1/transcriptions", files=file_specs([path]), file_field="file",
            data={"payload_json": json.dumps(payload)}))

    # -- the spool ---------------------------------------------------------------------------

    def stats(self) -> SpoolStats | None:
        """The spool's counts (``None`` without a spool)."""
        return self.spool.stats() if self.spool is not None else None

    def _send_entry(self, entry: SpoolEntry, stop: threading.Event | None) -> bool:
        assert self.spool is not None
        try:
            self._request("POST", "/v1/results", retries=0, files=entry.files, stop=stop,
                          headers={"Idempotency-Key": entry.idempotency_key},
                          **result_request(entry.payload, bool(entry.files)))
        except RelayAPIError as exc:
            self.spool.reject(entry.id, str(exc))
            return True  # handled (reported); the next entry may well go
        except RelayUnavailable as exc:
            self.spool.release(entry, str(exc))
            return False
        self.spool.done(entry.id)
        return True

    def flush(self, timeout: float = 30.0) -> int:
        """Send every spooled result now, oldest first; how many the relay took before ``timeout``."""
        if self.spool is None:
            return 0
        sent, deadline, attempt = 0, time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            entry = self.spool.claim()
            if entry is None:
                if not self.spool.in_flight_here():
                    break
                time.sleep(0.05)  # the flusher thread is sending one: flush() means "all of them have gone"
                continue
            if self._send_entry(entry, None):
                sent += 1
                attempt = 0
                continue
            time.sleep(min(self._config.backoff.delay(attempt), max(deadline - time.monotonic(), 0)))
            attempt += 1
        return sent

    def _start_flusher(self) -> None:
        with self._flusher_lock:
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(target=self._flush_loop, name="relay-spool-flusher", daemon=True)
                self._flusher.start()
        self._wake.set()

    def _flush_loop(self) -> None:
        assert self.spool is not None
        attempt = 0
        while not self._stop.is_set():
            try:
                entry = self.spool.claim()
            except Exception:  # a locked or broken spool file: log, back off, keep the thread alive
                log.exception("spool flusher could not read %s", self.spool.path)
                entry = None
            if entry is not None:
                try:
                    went = self._send_entry(entry, self._stop)
                except Exception as exc:  # the thread's outermost boundary: keep it, and the entry, alive
                    log.exception("spool flusher failed on entry %d; it stays spooled", entry.id)
                    self.spool.release(entry, repr(exc))
                    went = False
                if went:
                    attempt = 0
                    continue
                self._stop.wait(self._config.backoff.delay(attempt))
                attempt += 1
                continue
            self._wake.wait(self._flush_interval)
            self._wake.clear()
