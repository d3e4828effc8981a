"""How the webhook dispatcher keeps many requests in flight through httpx cheaply.

httpcore's connection pool walks every connection it holds, checking each
idle one for readability (a system call), whenever a request starts or ends,
so each request costs more the bigger the pool. Measured on 2 cores against
a fast local receiver (the backlog of ``python bench/webhooks.py``, 20,000
events): one pool of 16 connections carried 963 deliveries/s, one of 2
1,911/s. ``SpreadTransport`` keeps several small pools per origin and gives
each request the least busy one, so 16 requests in flight cost what 2 do.
It sits under the dispatcher's one shared ``httpx.AsyncClient``: redirects,
timeouts and errors are the client's as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

#: connections per small pool; the pool's bookkeeping per request grows with this
PER_POOL = 2


class _Released(httpx.AsyncByteStream):
    """A response body that tells its pool's counter when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._release is not None:
                self._release()
                self._release = None


class SpreadTransport(httpx.AsyncBaseTransport):
    """Requests to one origin spread over ``ceil(in_flight / PER_POOL)`` small pools.

    A request goes to the pool with the fewest requests open (sent and not yet
    closed); each pool holds at most ``PER_POOL`` kept-alive connections, so
    ``in_flight`` requests at once never wait for a connection nor churn one.
    """

    def __init__(self, in_flight: int, **transport_options: Any) -> None:
        self._count = max(1, -(-in_flight // PER_POOL))
        # one TLS context for every pool: building one (loading the CA bundle) takes
        # 15-25 ms, and eight of them on a first request made it 140 ms late
        transport_options.setdefault("verify", httpx.create_ssl_context())
        self._options = transport_options
        self._pools: dict[tuple[bytes, bytes, int | None], list[httpx.AsyncHTTPTransport]] = {}
        self._open: dict[tuple[bytes, bytes, int | None], list[int]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the least busy pool of its origin."""
        url = request.url
        origin = (url.raw_scheme, url.raw_host, url.port)
        pools = self._pools.get(origin)
        if pools is None:
            limits = httpx.Limits(max_connections=PER_POOL, max_keepalive_connections=PER_POOL)
            pools = self._pools[origin] = [
                httpx.AsyncHTTPTransport(limits=limits, **self._options)
                for _ in range(self._count)
            ]
            self._open[origin] = [0] * self._count
        open_ = self._open[origin]
        i = min(range(self._count), key=open_.__getitem__)
        open_[i] += 1

        def release() -> None:
            open_[i] -= 1

        try:
            response = await pools[i].handle_async_request(request)
        except BaseException:
            release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Released(response.stream, release)
        return response

    async def aclose(self) -> None:
        """Close every pool's connections."""
        for pools in self._pools.values():
            for pool in pools:
                await pool.aclose()
        self._pools.clear()
        self._open.clear()
