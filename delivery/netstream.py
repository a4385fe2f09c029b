"""An httpcore network backend on asyncio's own transports, for the Discord client's pools.

httpcore's default backend on asyncio is anyio's socket streams: every read and write enters a
cancel scope, and before a pooled connection is reused (and again when a response closes) httpcore
asks whether its idle socket is readable, a ``poll`` system call through anyio's attribute lookup.
Measured under ``bench/delivery.py`` (py-spy, 2026-12-07): that poll alone was 18 % of the event
loop and anyio's layer another 12 %. asyncio already reads every connected socket as data
arrives, so the answer is in hand: an idle connection is "readable" when the server sent bytes or
closed it, which this protocol has recorded. Everything else is httpcore's documented extension
point (``AsyncNetworkBackend``/``AsyncNetworkStream``); HTTP itself stays httpcore's and h11's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

# Reading pauses while this much is buffered and unread (a large response arriving faster than it
# is consumed), and resumes below the low mark: memory stays bounded whatever the server sends.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024

# httpcore's names for what it asks of a stream, as asyncio's transports name them.
_EXTRA_INFO = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername", "socket": "socket"}

SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]


@contextlib.contextmanager
def _mapped(timeout_error: type[Exception], other_error: type[Exception]) -> Iterator[None]:
    """asyncio's errors as the httpcore exceptions httpx maps to its own (``httpx.ReadTimeout`` …)."""
    try:
        yield
    except TimeoutError as exc:
        raise timeout_error(str(exc) or "timed out") from exc
    except (OSError, EOFError, ssl.SSLError) as exc:  # ssl.SSLError is an OSError; named for the reader
        raise other_error(str(exc) or type(exc).__name__) from exc


class _Protocol(asyncio.Protocol):
    """The bytes and the state of one connection, as the event loop delivers them."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.attach(transport)

    def attach(self, transport: asyncio.BaseTransport) -> None:
        """Also called with what ``create_connection`` returned: uvloop may call ``connection_made``
        only after it returned (asyncio's loop calls it before)."""
        if self.transport is None:
            self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and not self._reading_paused and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        _wake(self._readable)

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self._readable)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        _wake(self._readable)
        _wake(self._writable)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        _wake(self._writable)

    def take(self, max_bytes: int) -> bytes:
        data = bytes(self.buffer[:max_bytes])
        del self.buffer[:max_bytes]
        if self._reading_paused and len(self.buffer) < _LOW_WATER and self.transport is not None:
            self.transport.resume_reading()
            self._reading_paused = False
        return data

    async def readable(self) -> None:
        """Until bytes are buffered or the connection ended."""
        while not self.buffer and not self.eof:
            self._readable = asyncio.get_running_loop().create_future()
            try:
                await self._readable
            finally:
                self._readable = None

    async def writable(self) -> None:
        """Until the transport's write buffer drained below its high mark (or the connection ended)."""
        while self._writing_paused and not self.eof:
            self._writable = asyncio.get_running_loop().create_future()
            try:
                await self._writable
            finally:
                self._writable = None


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class AsyncioStream(AsyncNetworkStream):
    """One connection; ``read``/``write`` honour httpcore's per-call timeouts."""

    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol

    @property
    def _transport(self) -> asyncio.Transport:
        transport = self._protocol.transport
        assert transport is not None
        return transport

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 - httpcore's interface
        protocol = self._protocol
        if not protocol.buffer and not protocol.eof:
            with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
                async with asyncio.timeout(timeout):
                    await protocol.readable()
        if protocol.buffer:
            return protocol.take(max_bytes)
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error) or type(protocol.error).__name__)
        return b""  # the server closed the connection: h11 reads that as the end

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 - httpcore's interface
        if not buffer:
            return
        protocol = self._protocol
        if protocol.eof or self._transport.is_closing():
            raise httpcore.WriteError(str(protocol.error) if protocol.error else "connection closed")
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            self._transport.write(buffer)
            if protocol.eof:
                raise httpcore.WriteError("connection lost while writing")
            async with asyncio.timeout(timeout):
                await protocol.writable()

    async def aclose(self) -> None:
        transport = self._protocol.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> AsyncNetworkStream:  # noqa: ASYNC109 - httpcore's interface
        loop = asyncio.get_running_loop()
        try:
            with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
                async with asyncio.timeout(timeout):
                    tls = await loop.start_tls(self._transport, self._protocol, ssl_context,
                                               server_hostname=server_hostname)
        except BaseException:
            await self.aclose()
            raise
        if tls is None:  # pragma: no cover - only when the loop was closing
            raise httpcore.ConnectError("TLS could not start")
        self._protocol.transport = tls  # uvloop's transports are not asyncio.Transport subclasses
        return self

    def get_extra_info(self, info: str) -> Any:
        protocol = self._protocol
        if info == "is_readable":
            # Asked of idle connections only: bytes or an end the server sent while nobody asked.
            return protocol.eof or bool(protocol.buffer)
        transport = protocol.transport
        if transport is None:
            return None
        name = _EXTRA_INFO.get(info)
        return transport.get_extra_info(name) if name else None


class AsyncioBackend(AsyncNetworkBackend):
    """Connections as asyncio transports (see the module's docstring for why)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,  # noqa: ASYNC109 - httpcore's interface
                          socket_options: Iterable[SocketOption] | None = None) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol, host, port, local_addr=(local_address, 0) if local_address else None)
        protocol.attach(transport)
        _apply(protocol, socket_options)
        return AsyncioStream(protocol)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
                                  socket_options: Iterable[SocketOption] | None = None) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_unix_connection(_Protocol, path)
        protocol.attach(transport)
        _apply(protocol, socket_options)
        return AsyncioStream(protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _apply(protocol: _Protocol, options: Iterable[SocketOption] | None) -> None:
    """``setsockopt`` each option, as httpcore's own backends do once connected."""
    sock: socket.socket | None = protocol.transport.get_extra_info("socket") if protocol.transport else None
    for option in options or ():
        if sock is not None:
            sock.setsockopt(*option)
