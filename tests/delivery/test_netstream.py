"""The Discord client's network backend (``delivery.netstream``) against real sockets on loopback.

What httpx and httpcore need of a backend, each on asyncio's loop and on uvloop (``relay serve``
runs on uvloop): requests and keep-alive, TLS with a certificate checked against its authority,
a read timeout, a connection refused, a server closing an idle kept-alive connection (the next
request goes out on a new one instead of failing), bodies far larger than the read buffer's high
mark both ways (reading pauses and resumes; writing waits for the transport to drain).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from delivery.netstream import AsyncioBackend
from delivery.transport import POOL_LIMITS, POOL_SHARDS, ShardedTransport, make_client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LOOPS = ["asyncio", "uvloop"]


def run(loop: str, main: Callable[[], Awaitable[Any]]) -> Any:
    return uvloop.run(main()) if loop == "uvloop" else asyncio.run(main())


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 request's body (Content-Length framed, as httpx sends JSON and files)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return await reader.readexactly(length) if length else b""


def answer(body: bytes, *, close: bool = False) -> bytes:
    extra = b"connection: close\r\n" if close else b""
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n" + extra
            + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class Server:
    """An asyncio server on 127.0.0.1 running ``handler`` per connection; counts connections."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler, self.tls, self.connections = handler, tls, 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()

    def url(self, path: str = "/") -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}{path}"


async def echo_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        body = await read_request(reader)
        writer.write(answer(str(len(body)).encode()))
        await writer.drain()


@pytest.mark.parametrize("loop", LOOPS)
def test_requests_reuse_a_kept_alive_connection(loop: str) -> None:
    async def main() -> tuple[list[str], int]:
        async with Server(echo_forever) as server:
            client = make_client()
            try:
                sizes = [(await client.post(server.url("/webhooks/1/t"), json={"n": i})).text for i in range(5)]
            finally:
                await client.aclose()
            return sizes, server.connections

    sizes, connections = run(loop, main)
    assert sizes == ["7"] * 5 and connections == 1  # {"n":0}


@pytest.mark.parametrize("loop", LOOPS)
def test_an_idle_connection_the_server_closed_is_replaced_not_failed(loop: str) -> None:
    """httpcore asks whether an idle connection is readable before reusing it: the close is seen."""
    async def one_answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"ok"))  # kept alive as far as the client knows, then closed by the server
        await writer.drain()

    async def main() -> tuple[list[int], int]:
        async with Server(one_answer_then_close) as server:
            client = make_client()
            try:
                statuses = []
                for _ in range(3):
                    statuses.append((await client.get(server.url("/webhooks/1/t"))).status_code)
                    await asyncio.sleep(0.05)  # the close arrives while the connection sits idle
            finally:
                await client.aclose()
            return statuses, server.connections

    statuses, connections = run(loop, main)
    assert statuses == [200, 200, 200] and connections == 3


@pytest.mark.parametrize("loop", LOOPS)
def test_large_bodies_go_both_ways_whole(loop: str) -> None:
    """8 MiB up (Discord's file limit; the transport's write buffer fills and drains) and 3 MiB down
    (reading pauses above the high mark and resumes as httpcore consumes)."""
    down = bytes(range(256)) * (3 * 4096)
    up = b"\x00\xff" * (4 * 1024 * 1024)

    async def sized_then_big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            body = await read_request(reader)
            writer.write(answer(str(len(body)).encode() if body else down))
            await writer.drain()

    async def main() -> tuple[str, bytes]:
        async with Server(sized_then_big) as server:
            client = make_client()
            try:
                sent = (await client.post(server.url("/webhooks/1/t"), content=up)).text
                got = (await client.get(server.url("/webhooks/1/t"))).content
            finally:
                await client.aclose()
            return sent, got

    sent, got = run(loop, main)
    assert sent == str(len(up)) and got == down


@pytest.mark.parametrize("loop", LOOPS)
def test_a_silent_server_is_a_read_timeout_and_a_closed_port_a_connect_error(loop: str) -> None:
    async def never_answers(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async def main() -> tuple[type[BaseException], type[BaseException]]:
        client = make_client(read_timeout=0.2)
        try:
            async with Server(never_answers) as server:
                with pytest.raises(httpx.ReadTimeout) as slow:
                    await client.post(server.url("/webhooks/1/t"), json={})
            with pytest.raises(httpx.ConnectError) as refused:
                await client.get(f"http://127.0.0.1:{unused_port()}/webhooks/1/t")
        finally:
            await client.aclose()
        return slow.type, refused.type

    assert run(loop, main) == (httpx.ReadTimeout, httpx.ConnectError)


def unused_port() -> int:
    """A port nothing listens on (bound, read, closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _certificate(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, ssl.SSLContext]:
    """A server context for 127.0.0.1, a client context trusting it, and one trusting nothing of ours."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    trusting = ssl.create_default_context(cafile=str(tmp / "cert.pem"))
    return server, trusting, ssl.create_default_context()


@pytest.mark.parametrize("loop", LOOPS)
def test_tls_checks_the_certificate_and_then_carries_requests(loop: str, tmp_path: Path) -> None:
    server_tls, trusting, default = _certificate(tmp_path)

    async def main() -> tuple[list[bytes], type[BaseException], str]:
        async with Server(echo_forever, tls=server_tls) as server:
            async with httpcore.AsyncConnectionPool(ssl_context=trusting, network_backend=AsyncioBackend()) as pool:
                bodies = []
                for _ in range(3):
                    response = await pool.request("POST", server.url("/webhooks/1/t"), content=b"hello")
                    bodies.append(response.content)
                [connection] = pool.connections
                version = connection._connection._network_stream.get_extra_info("ssl_object").version()
            async with httpcore.AsyncConnectionPool(ssl_context=default, network_backend=AsyncioBackend()) as pool:
                with pytest.raises(httpcore.ConnectError) as untrusted:
                    await pool.request("GET", server.url("/"))
            return bodies, untrusted.type, version

    bodies, untrusted, version = run(loop, main)
    assert bodies == [b"5"] * 3 and untrusted is httpcore.ConnectError and version.startswith("TLSv1.")


def test_every_pool_of_the_client_runs_on_this_backend() -> None:
    """httpx takes no network backend, so ``ShardedTransport`` replaces each pool's (private) one:
    an httpx upgrade that renames it fails here, not silently in production."""
    transport = ShardedTransport(POOL_LIMITS, POOL_SHARDS)
    pools = [pool._pool for pool in transport.pools]
    assert all(isinstance(pool, httpcore.AsyncConnectionPool) for pool in pools)
    assert all(isinstance(pool._network_backend, AsyncioBackend) for pool in pools)
    assert all(pool._max_connections == -(-POOL_LIMITS.max_connections // POOL_SHARDS) for pool in pools)
