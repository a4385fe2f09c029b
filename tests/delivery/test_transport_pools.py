"""The Discord client's connection pools: shards of one budget, a destination's requests on one pool.

``ShardedTransport`` splits the pool so httpcore's per-request walk over idle connections covers a
quarter of them. What must hold: the budget is the same in all (no more connections than before),
one path always uses one pool (its connection is reused, never a new one per request), and many
destinations spread over every pool. The server below is real HTTP/1.1 over loopback and counts
the connections it accepts.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from delivery.transport import POOL_LIMITS, POOL_SHARDS, ShardedTransport, make_client


class CountingServer:
    """A keep-alive HTTP/1.1 server that answers ``200 {}`` to everything and counts connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> CountingServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.requests += 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def test_the_shards_share_the_budget_of_one_pool() -> None:
    transport = ShardedTransport(POOL_LIMITS, POOL_SHARDS)
    limits = [pool._pool._max_keepalive_connections for pool in transport.pools]
    assert len(transport.pools) == POOL_SHARDS
    assert sum(limits) == POOL_LIMITS.max_keepalive_connections
    assert sum(pool._pool._max_connections for pool in transport.pools) == POOL_LIMITS.max_connections


def test_a_path_always_picks_one_pool_and_many_paths_spread_over_all() -> None:
    transport = ShardedTransport(POOL_LIMITS, POOL_SHARDS)
    count = 50 * POOL_SHARDS
    paths = [f"/api/v10/webhooks/{1200000000000000000 + i}/tok{i}" for i in range(count)]
    assert all(transport.pool_for(p) is transport.pool_for(p) for p in paths)
    spread = Counter(id(transport.pool_for(p)) for p in paths)
    assert len(spread) == POOL_SHARDS
    mean = count / POOL_SHARDS
    assert mean / 2 < min(spread.values()) and max(spread.values()) < mean * 2  # none starved, none carrying the rest


def test_every_pool_stays_small_however_many_destinations_send_at_once() -> None:
    """The CPU of a request grows with the connections of its pool (see ``POOL_SHARDS``)."""
    async def scenario() -> tuple[int, int]:
        async with CountingServer() as server:
            transport = ShardedTransport(POOL_LIMITS, POOL_SHARDS)
            client = httpx.AsyncClient(transport=transport)
            try:
                answers = await asyncio.gather(*(client.post(f"{server.url}/webhooks/{i}/t", json={})
                                                 for i in range(600)))
                assert all(a.status_code == 200 for a in answers)
                return max(len(pool._pool.connections) for pool in transport.pools), server.requests
            finally:
                await client.aclose()

    largest, requests = asyncio.run(scenario())
    assert requests == 600
    assert largest <= -(-POOL_LIMITS.max_connections // POOL_SHARDS) <= 2


def test_one_destination_reuses_its_connection_and_many_share_the_pools() -> None:
    async def scenario() -> tuple[int, int, int]:
        async with CountingServer() as server:
            client = make_client()
            try:
                for _ in range(20):  # one destination, one after the other: one connection
                    assert (await client.post(f"{server.url}/webhooks/1/a", json={})).status_code == 200
                alone = server.connections
                # 40 destinations at once: a connection per request in flight at most, kept for the next round
                for _ in range(3):
                    answers = await asyncio.gather(*(client.post(f"{server.url}/webhooks/{i}/t", json={})
                                                     for i in range(40)))
                    assert all(a.status_code == 200 for a in answers)
                return alone, server.connections, server.requests
            finally:
                await client.aclose()

    alone, total, requests = asyncio.run(scenario())
    assert alone == 1
    assert requests == 20 + 120
    assert total <= 1 + 40 * 3  # never more than a connection per request
    assert total < 1 + 120  # and kept-alive connections were reused across rounds


def test_a_closed_client_closes_every_pool() -> None:
    async def scenario() -> list[int]:
        async with CountingServer() as server:
            transport = ShardedTransport(POOL_LIMITS, POOL_SHARDS)
            client = httpx.AsyncClient(transport=transport)
            await asyncio.gather(*(client.get(f"{server.url}/channels/{i}/messages") for i in range(16)))
            await client.aclose()
            return [len(pool._pool.connections) for pool in transport.pools]

    assert asyncio.run(scenario()) == [0] * POOL_SHARDS
