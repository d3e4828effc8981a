"""A load balancer for the push tests: a small real reverse proxy over push listeners.

An aiohttp server on its own loopback address, thread and event loop: it forwards each
request's method, path, query and body to a listener, relays the listener's status, body
and ``Date`` header and, when a listener refuses or drops the connection, tries the next
(all down: 503), as a balancer with health checks does. It routes by the ``SN`` of the
query (round-robin per serial, or pinned to one listener) and knows nothing else of the
protocol. It is a part of the system under test, not a mock. A test can arm it to kill a
listener's process just after handing it an upload (a crash with an upload in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from yarl import URL


@dataclass(frozen=True)
class Relayed:
    """One call the balancer answered: which listener took it, and what it said."""

    backend: int
    serial: str
    method: str
    path: str
    table: str
    status: int
    #: listeners tried before this one (refused, reset or dropped the connection)
    failed_over: int


@dataclass
class Balancer:
    """A round-robin reverse proxy over the listeners, with failover (see the module)."""

    backends: list[str]
    host: str
    port: int
    #: serials sent to one listener (client affinity), to the next only when it is down
    pinned: dict[str, int] = field(default_factory=dict)
    relayed: list[Relayed] = field(default_factory=list)
    #: attempts that found a listener refusing or dropping the connection, by listener
    failovers: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: the test's trigger: listener -> (pid, delay): SIGKILL that pid this long after an
    #: ATTLOG upload was handed to that listener (a crash with an upload in flight)
    _armed: dict[int, tuple[int, float]] = field(default_factory=dict)
    _fired: set[int] = field(default_factory=set)
    _turns: dict[str, Iterator[int]] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _session: aiohttp.ClientSession | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Where the terminals dial."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Serve on a thread of its own, with its own event loop."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def main() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start())
            except BaseException as e:  # told to the starting thread
                failed.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._stop())
            self._loop.close()

        self._thread = threading.Thread(target=main, name="balancer", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            raise failed[0]

    def stop(self) -> None:
        """Stop serving (the thread ends)."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)

    def arm(self, backend: int, pid: int, after_s: float) -> None:
        """SIGKILL ``pid`` ``after_s`` after the next ATTLOG upload is sent to ``backend``."""
        with self.lock:
            self._armed[backend] = (pid, after_s)

    def fired(self, pid: int) -> bool:
        """Whether the trigger armed for ``pid`` has sent its signal."""
        with self.lock:
            return pid in self._fired

    async def _chunk_sent(self, _session: aiohttp.ClientSession, _context: object,
                          params: aiohttp.TraceRequestChunkSentParams) -> None:
        """(Called as the upload's body is written.)"""
        if params.method != "POST" or params.url.query.get("table") != "ATTLOG":
            return
        origin = f"http://{params.url.host}:{params.url.port}"
        if origin not in self.backends:
            return
        with self.lock:
            armed = self._armed.pop(self.backends.index(origin), None)
        if armed is not None:
            pid, after_s = armed
            self._loop.call_later(after_s, self._kill, pid)

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with self.lock:
            self._fired.add(pid)

    async def _start(self) -> None:
        trace = aiohttp.TraceConfig()
        trace.on_request_chunk_sent.append(self._chunk_sent)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), auto_decompress=False,
            trace_configs=[trace])
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _turn(self, serial: str) -> int:
        """The listener to try first for this call: the device's own, if pinned; else the
        next one after the device's last."""
        if serial in self.pinned:
            return self.pinned[serial]
        with self.lock:
            turn = self._turns.setdefault(serial, itertools.count())
            return next(turn) % len(self.backends)

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        serial = request.query.get("SN", "")
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "user-agent")}
        headers["X-Forwarded-For"] = request.remote or ""
        first = self._turn(serial)
        for step in range(len(self.backends)):
            n = (first + step) % len(self.backends)
            target = URL(self.backends[n] + request.raw_path, encoded=True)
            try:
                async with self._session.request(
                        request.method, target, data=body if body else None, headers=headers,
                        allow_redirects=False) as answer:
                    payload = await answer.read()
                    status = answer.status
                    passed = {k: v for k, v in answer.headers.items()
                              if k.lower() in ("content-type", "date")}
            except (aiohttp.ClientError, TimeoutError):
                with self.lock:  # refused, reset, dropped or cut short: the next listener
                    self.failovers[n] += 1
                continue
            with self.lock:
                self.relayed.append(Relayed(n, serial, request.method, request.path,
                                            request.query.get("table", ""), status, step))
            return web.Response(status=status, body=payload, headers=passed)
        return web.Response(status=503, text="NO BACKEND\n")

    def answers(self) -> list[Relayed]:
        """Every call relayed so far."""
        with self.lock:
            return list(self.relayed)
