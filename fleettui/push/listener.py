"""The push listener's HTTP routes: ``/iclock/cdata``, ``getrequest``, ``devicecmd``, ``ping``.

Devices send no API key, so this is its own aiohttp application on its own
port, apart from the API. Routes match on the path's end (``/iclock/cdata``,
``/iclock/cdata.aspx``, with or without a trailing slash, behind any prefix a
reverse proxy adds). Every answer is plain text with a correct ``Date``
header, from which devices set their clocks. A bad request gets ``400`` with
no detail; an unknown serial ``403`` (so the device keeps its records); a
serial calling too fast, or a gateway that failed, ``503`` (the device waits
``ErrorDelay`` and sends again: nothing is acknowledged that was not stored).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate

from aiohttp import web

from fleettui.config import PushSettings
from fleettui.devices.push_wire import SERIAL
from fleettui.engine.push import PushAnswer, PushGateway

log = logging.getLogger(__name__)

BAD_REQUEST = PushAnswer(400, "BAD REQUEST\n")
BUSY = PushAnswer(503, "BUSY\n")
FAILED = PushAnswer(503, "ERROR\n")
NOT_HERE = PushAnswer(404, "NOT FOUND\n")


class RateLimiter:
    """A token bucket per serial: ``rate`` requests a second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 max_serials: int = 20_000) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_serials = max_serials
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, serial: str) -> bool:
        """Whether this serial may make one more request now."""
        now = self.clock()
        tokens, at = self._buckets.get(serial, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[serial] = (tokens, now)
            return False
        if len(self._buckets) >= self.max_serials and serial not in self._buckets:
            self._buckets.clear()  # a flood of invented serials: start over
        self._buckets[serial] = (tokens - 1, now)
        return True


@dataclass(frozen=True, slots=True)
class _Door:
    """What the listener checks before a call reaches the gateway, and its clock."""

    gateway: PushGateway
    limiter: RateLimiter
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    wall_clock: Callable[[], float]


DOOR_KEY: web.AppKey[_Door] = web.AppKey("push_door", _Door)


def _answer(request: web.Request, answer: PushAnswer) -> web.Response:
    wall = request.app[DOOR_KEY].wall_clock
    return web.Response(status=answer.status, text=answer.body, content_type="text/plain",
                        headers={"Date": formatdate(wall(), usegmt=True)})


def _route(path: str) -> str:
    """The call a path names: ``cdata``, ``getrequest``, ``devicecmd``, ``ping`` or ``""``."""
    tail = path.rstrip("/").rsplit("/", 2)
    if len(tail) < 2 or tail[-2] != "iclock":
        return ""
    name = tail[-1].removesuffix(".aspx")
    return name if name in ("cdata", "getrequest", "devicecmd", "ping", "fdata") else ""


async def _handle(request: web.Request) -> web.Response:
    route = _route(request.path)
    if not route:
        return _answer(request, NOT_HERE)
    door = request.app[DOOR_KEY]
    networks = door.networks
    remote = request.remote or ""
    if networks and not _allowed(remote, networks):
        return _answer(request, PushAnswer(403, "FORBIDDEN\n"))
    if route == "ping":
        return _answer(request, PushAnswer(200, "OK"))
    serial = request.query.get("SN", "")
    if not SERIAL.fullmatch(serial) or request.method not in ("GET", "POST"):
        return _answer(request, BAD_REQUEST)
    if not door.limiter.allow(serial):
        return _answer(request, BUSY)
    try:
        answer = await _call(request, route, serial, remote, door.gateway)
    except web.HTTPRequestEntityTooLarge:
        return _answer(request, PushAnswer(413, "TOO LARGE\n"))
    except Exception:
        log.exception("push %s from %s failed", route, serial)
        answer = FAILED
    return _answer(request, answer)


async def _call(request: web.Request, route: str, serial: str, remote: str,
                gateway: PushGateway) -> PushAnswer:
    query = request.query
    if route == "cdata" and request.method == "GET":
        return await gateway.handshake(serial, dict(query), remote)
    if route == "cdata":
        table = query.get("table", "")
        if not table or len(table) > 32:
            return BAD_REQUEST
        body = await request.read()
        return await gateway.upload(serial, table.upper() if table.upper() in (
            "ATTLOG", "OPERLOG") else table, query.get("Stamp", ""), body, remote)
    if route == "getrequest":
        return await gateway.heartbeat(serial, query.get("INFO"), remote)
    if route == "devicecmd" and request.method == "POST":
        return await gateway.results(serial, await request.read(), remote)
    if route == "fdata" and request.method == "POST":
        await request.read()  # fingerprint data: not kept (biometric data stays on devices)
        return PushAnswer(200, "OK")
    return BAD_REQUEST


def _allowed(remote: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
             ) -> bool:
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(address in net for net in networks)


def push_app(gateway: PushGateway, settings: PushSettings, *,
             wall_clock: Callable[[], float] = time.time,
             monotonic: Callable[[], float] = time.monotonic) -> web.Application:
    """The listener's application over ``gateway`` (``wall_clock`` dates the answers)."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[DOOR_KEY] = _Door(
        gateway, RateLimiter(settings.rate_per_serial, 4 * settings.rate_per_serial, monotonic),
        [ipaddress.ip_network(n, strict=False) for n in settings.allow_networks], wall_clock)
    app.router.add_route("*", "/{tail:.*}", _handle)
    return app


async def start_listener(gateway: PushGateway, settings: PushSettings,
                         port: int | None = None) -> web.AppRunner:
    """Serve the listener on ``settings.listen`` (or ``port``); the caller cleans it up."""
    runner = web.AppRunner(push_app(gateway, settings), access_log=None,
                           handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port if port is None else port,
                           backlog=2048)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner

