"""How the webhook dispatcher keeps many requests in flight through httpx cheaply.

httpcore's connection pool walks every connection it holds, checking each
idle one for readability (a system call), whenever a request starts or ends,
so each request costs more the bigger the pool. Measured on 2 cores against
a fast local receiver (the backlog of ``python bench/webhooks.py``, 20,000
events): one pool of 16 connections carried 963 deliveries/s, one of 2
1,911/s. ``SpreadTransport`` keeps several small pools per origin and gives
each request the least busy one, so 16 requests in flight cost what 2 do.
The dispatcher calls it directly (no ``httpx.AsyncClient`` above it: no
cookies kept, no redirects followed); timeouts come with each request, and
errors are httpx's, as its transports raise them.

It is also where the egress rule (``fleettui/egress.py``) meets the address
actually connected to. httpcore opens every connection through a network
backend's ``connect_tcp(host, port, ...)``, then wraps TLS over it with
``server_hostname`` taken from the URL, not from the address. ``GuardedBackend``
is that backend: it resolves the name itself, refuses the connection when any
address it resolves to is refused (a name rebound to 10.0.0.1 since it was
configured is refused then), and connects to an address it checked, so no
second resolution happens behind the check. TLS still verifies the name, and
the ``Host`` header is the request's. httpx builds its httpcore pool without
a way to pass a backend, so each small pool is built here with the same
settings plus the backend (``test_webhooks_safety`` proves it is the one used).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from fleettui.egress import address_refusal, host_refusal, numeric_address

#: resolves (host, port) to the addresses to try, in order (the system's, or a test's)
Resolver = Callable[[str, int], Awaitable[list[str]]]

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


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system's resolver gives ``host`` (getaddrinfo, off the loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class RefusedTarget(httpcore.ConnectError):
    """A connection fleettui refused to open: the target is not one webhooks may reach.

    httpx turns it into an ``httpx.ConnectError`` whose ``__cause__`` is this.
    """


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the egress rule in front of every connection.

    ``resolve`` is the system's resolver unless a test gives its own; the
    connection itself goes through ``inner`` (anyio's backend) to a checked address.
    """

    def __init__(self, allow_private: bool, resolve: Resolver = system_resolver,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.allow_private = allow_private
        self._resolve = resolve
        #: what opens the connections once checked (a test may put a tripwire here)
        self.inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve ``host``, check every address, connect to the first that answers."""
        why = host_refusal(host, self.allow_private)
        if why is not None:
            raise RefusedTarget(why.message(host))
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        literal = numeric_address(host)
        try:
            async with asyncio.timeout_at(deadline):
                addresses = ([str(literal)] if literal is not None
                             else await self._resolve(host, port))
        except TimeoutError:
            raise httpcore.ConnectTimeout("timed out resolving the host name") from None
        except OSError as e:  # socket.gaierror among them
            raise httpcore.ConnectError(f"name resolution failed: {e.strerror or e}") from None
        if not addresses:
            raise httpcore.ConnectError("name resolution failed: no address")
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            refused = address_refusal(ip, self.allow_private)
            if refused is not None:
                shown = host if str(ip) == host else f"{host} (resolved to {ip})"
                raise RefusedTarget(refused.message(shown))
        failure: Exception | None = None
        for address in addresses:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout=left, local_address=local_address,
                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                failure = e
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never: a webhook goes over TCP."""
        raise RefusedTarget("refused target: a unix socket is not a webhook target")

    async def sleep(self, seconds: float) -> None:
        """httpcore's retry pause."""
        await self.inner.sleep(seconds)


class SpreadTransport(httpx.AsyncBaseTransport):
    """Requests to one origin spread over ``ceil(in_flight / PER_POOL)`` small pools.

    A request goes to the pool with the fewest requests open (sent and not yet
    closed); each pool holds at most ``PER_POOL`` kept-alive connections, so
    ``in_flight`` requests at once never wait for a connection nor churn one.
    """

    def __init__(self, in_flight: int, *,
                 network_backend: httpcore.AsyncNetworkBackend | None = None,
                 **transport_options: Any) -> None:
        self._count = max(1, -(-in_flight // PER_POOL))
        # one TLS context for every pool: building one (loading the CA bundle) takes
        # 15-25 ms, and eight of them on a first request made it 140 ms late
        transport_options.setdefault("verify", httpx.create_ssl_context())
        self._options = transport_options
        #: every connection of every pool is opened through it (None: httpcore's own)
        self.network_backend = network_backend
        self._pools: dict[tuple[bytes, bytes, int | None], list[httpx.AsyncHTTPTransport]] = {}
        self._open: dict[tuple[bytes, bytes, int | None], list[int]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the least busy pool of its origin."""
        url = request.url
        origin = (url.raw_scheme, url.raw_host, url.port)
        pools = self._pools.get(origin)
        if pools is None:
            limits = httpx.Limits(max_connections=PER_POOL, max_keepalive_connections=PER_POOL)
            pools = self._pools[origin] = [self._pool(limits) for _ in range(self._count)]
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

    def _pool(self, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
        """One small pool: httpx's transport, its httpcore pool given our backend."""
        transport = httpx.AsyncHTTPTransport(limits=limits, **self._options)
        if self.network_backend is not None:
            verify = self._options["verify"]
            context = verify if isinstance(verify, ssl.SSLContext) else (
                httpx.create_ssl_context(verify=verify))
            transport._pool = httpcore.AsyncConnectionPool(
                ssl_context=context, max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=self.network_backend)
        return transport

    async def aclose(self) -> None:
        """Close every pool's connections."""
        for pools in self._pools.values():
            for pool in pools:
                await pool.aclose()
        self._pools.clear()
        self._open.clear()
