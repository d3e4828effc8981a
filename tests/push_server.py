"""A small push server for the emulator's tests: it records what terminals send.

It stands in for the product's push listener (``fleettui/push/``), which is
written at the same time and is not what these tests are about: they check
that emulated push terminals speak the protocol faithfully. It answers as a
server would (option block, ``OK:<n>``, ``C:<id>:`` lines, a ``Date`` header)
and can be told to answer otherwise (503s, a wrong Date, commands).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from aiohttp import web

from fleettui.emulator import push_wire
from fleettui.emulator.device import DeviceConfig, Profile, User
from fleettui.emulator.fleet import Fleet
from fleettui.emulator.push_device import PushSetup
from tests.conftest import free_port, next_host


@dataclass
class Seen:
    """One request a terminal made."""

    method: str
    path: str
    query: dict[str, str]
    body: str
    answer: tuple[int, str] = (200, "")

    @property
    def table(self) -> str:
        return self.query.get("table", "")

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.body.replace("\r\n", "\n").split("\n") if ln]


@dataclass
class PushServer:
    """Records every request; answers like a push server unless told otherwise."""

    options: dict[str, str] = field(default_factory=lambda: {
        "ATTLOGStamp": "0", "OPERLOGStamp": "0", "ErrorDelay": "0.05", "Delay": "0.05",
        "TransInterval": "1", "Realtime": "1", "TimeZone": "0", "ServerVer": "2.4.1"})
    seen: list[Seen] = field(default_factory=list)
    #: answers for the next uploads (cdata POST), used up in order; then 200 OK:<n>
    upload_answers: list[tuple[int, str]] = field(default_factory=list)
    #: command lines for the next getrequest (C:<id>:<text>), sent once
    commands: list[tuple[str, str]] = field(default_factory=list)
    #: the Date header to send (default: the true time)
    date: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> PushServer:
        app = web.Application()
        app.router.add_route("*", "/iclock/{what}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        host = next_host()
        port = free_port(host)
        await web.TCPSite(self._runner, host, port).start()
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _answer(self, req: web.Request, body: str) -> tuple[int, str]:
        what = req.match_info["what"]
        sn = req.query.get("SN", "")
        if what == "cdata" and req.method == "GET":
            legacy = "pushver" not in req.query
            opts = dict(self.options)
            if legacy:
                opts["Stamp"] = opts.pop("ATTLOGStamp", "0")
                opts["OpStamp"] = opts.pop("OPERLOGStamp", "0")
            return 200, "\n".join([f"GET OPTION FROM: {sn}",
                                   *(f"{k}={v}" for k, v in opts.items())]) + "\n"
        if what == "cdata":
            if self.upload_answers:
                return self.upload_answers.pop(0)
            lines = [ln for ln in body.replace("\r\n", "\n").split("\n") if ln]
            return 200, f"OK:{len(lines)}"
        if what == "getrequest":
            if self.commands:
                text = "\n".join(f"C:{cid}:{cmd}" for cid, cmd in self.commands) + "\n"
                self.commands.clear()
                return 200, text
            return 200, "OK"
        return 200, "OK"

    async def _handle(self, req: web.Request) -> web.Response:
        body = (await req.read()).decode()
        status, text = self._answer(req, body)
        self.seen.append(Seen(req.method, req.path, dict(req.query), body, (status, text)))
        headers = {"Date": format_datetime(self.date().astimezone(UTC), usegmt=True)}
        return web.Response(status=status, text=text, headers=headers)

    # --- views ---------------------------------------------------------------

    def where(self, path: str, table: str | None = None, sn: str | None = None) -> list[Seen]:
        return [s for s in self.seen if s.path == path
                and (table is None or s.table == table)
                and (sn is None or s.query.get("SN") == sn)]

    def attlog(self, sn: str | None = None, *, accepted_only: bool = True) -> list[str]:
        """ATTLOG lines posted (only those the server answered OK to, by default)."""
        return [ln for s in self.where("/iclock/cdata", "ATTLOG", sn)
                if not accepted_only or (s.answer[0] == 200 and s.answer[1].startswith("OK:"))
                for ln in s.lines]


async def until(cond: Callable[[], bool], what: str = "condition", bound_s: float = 60.0) -> None:
    """Wait until ``cond()`` holds (checked often); fail after a generous bound."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)

def make_fleet(server: PushServer, profile: str = "push2", *, count: int = 1,
               reboot_s: float = 0.2, **setup: float) -> Fleet:
    configs = [DeviceConfig(id=f"p{i}", serial=f"PUSH{i:04d}", timezone="Europe/Paris",
                            profile=Profile(reboot_s=reboot_s)) for i in range(1, count + 1)]
    users = {c.id: [User(uid=1, user_id="1001", name="Ann"), User(uid=2, user_id="1002")]
             for c in configs}
    push = {c.id: PushSetup(server=server.url, profile=push_wire.PROFILES[profile],
                            first_delay_s=setup.get("first_delay_s", 0.05)) for c in configs}
    return Fleet(configs, users=users, push=push)


@pytest.fixture
async def server() -> AsyncIterator[PushServer]:
    """A recording push server on a loopback address of this worker."""
    s = await PushServer().start()
    yield s
    await s.stop()


@pytest.fixture
async def fleet(server: PushServer) -> AsyncIterator[Fleet]:
    """One push2 terminal dialing ``server`` (started by the test)."""
    f = make_fleet(server)
    yield f
    await f.stop()
