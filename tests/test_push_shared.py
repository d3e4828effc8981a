"""Push devices answered by several listeners on one PostgreSQL database.

Two pollers sharing a database each run a push listener; a load balancer may
send any of a device's calls to either. Here two gateways, each over its own
store object on one real PostgreSQL database (as two pollers are) and each
behind its own real listener on loopback, are called alternately by an HTTP
client speaking the push wire format. Each gateway holds a share of the sites
(``SiteShare``, set by the test as the lease keeper would); time is injected
and each gateway's watch driven by ``tick``, in an order the test chooses.

What must hold: punches sent to both are stored once; a command is handed to
the device once even when it calls both listeners at the same moment; a
device's status is judged by the holder of its site alone, from what every
listener heard, so a device talking to the other listener is not offline and
a restart the other listener sent is not an outage; when the site moves, the
new holder continues from the status recorded, without a second transition.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiohttp import web

from fleettui.config import PushSettings
from fleettui.domain import CommandState, DeviceSpec, DeviceState, DeviceStatus, Event, Site
from fleettui.engine.enqueue import enqueue
from fleettui.engine.push import PushGateway
from fleettui.engine.share import SiteShare
from fleettui.push import push_app
from fleettui.store import Store, open_store
from tests.conftest import free_port, next_host

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
SETTINGS = PushSettings(enabled=True, delay_s=5, offline_after_s=20, rate_per_serial=50)
SPECS = [DeviceSpec("gate-1", "CKPUSH0001", "pune", "", 0, "push", timezone="Asia/Kolkata"),
         DeviceSpec("gate-2", "CKPUSH0002", "lyon", "", 0, "push", timezone="Europe/Paris")]


@dataclass
class Side:
    """One poller's half: its store object, gateway, the events it published, a client
    that calls its listener."""

    store: Store
    gateway: PushGateway
    published: list[Event]
    client: httpx.AsyncClient

    async def call(self, method: str, path: str, serial: str = "CKPUSH0001",
                   body: str | None = None, **query: str) -> httpx.Response:
        return await self.client.request(method, path, params={"SN": serial} | query,
                                         content=body.encode() if body else None)

    async def beat(self, serial: str = "CKPUSH0001") -> httpx.Response:
        return await self.call("GET", "/iclock/getrequest", serial)


@dataclass
class Pair:
    """Two pollers' push listeners over one database, and the clock they share."""

    a: Side
    b: Side
    now: list[datetime]

    def advance(self, seconds: float) -> None:
        self.now[0] += timedelta(seconds=seconds)

    async def tick(self) -> None:
        """Both watches run (each writes what it heard, then judges its sites)."""
        await self.a.gateway.tick()
        await self.b.gateway.tick()
        await self.a.gateway.tick()  # the first judge sees what the second wrote

    async def statuses(self, device_id: str) -> list[str]:
        return [c.status.value for c in await self.a.store.status_history(device_id)]


@pytest.fixture
async def pair(pg_url: str) -> AsyncIterator[Pair]:
    now = [T0]
    first, second = await open_store(pg_url), await open_store(pg_url)
    await first.sync_fleet(
        [Site("pune", "Pune plant", "Asia/Kolkata"), Site("lyon", "Lyon depot", "Europe/Paris")],
        [DeviceState(id=s.id, serial=s.serial, site_id=s.site_id, host="", port=0,
                     transport="push") for s in SPECS])
    sides: list[Side] = []
    runners: list[web.AppRunner] = []
    for store, held in ((first, {"pune"}), (second, {"lyon"})):
        published: list[Event] = []
        gateway = PushGateway(store, clock=lambda: now[0], publish=published.append,
                              delay_s=5, offline_after_s=20, share=SiteShare(held))
        for spec in SPECS:
            gateway.add(spec, await store.device(spec.id))
        host = next_host()
        port = free_port(host)
        runner = web.AppRunner(push_app(gateway, SETTINGS))
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        runners.append(runner)
        client = httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10)
        sides.append(Side(store, gateway, published, client))
    try:
        yield Pair(sides[0], sides[1], now)
    finally:
        for side, runner in zip(sides, runners, strict=True):
            await side.client.aclose()
            await runner.cleanup()
            await side.store.close()


def _attlog(first: int, count: int) -> str:
    return "".join(f"{1000 + i}\t2026-12-03 08:{i % 60:02d}:{i // 60:02d}\t0\t1\t0\n"
                   for i in range(first, first + count))


async def test_punches_sent_to_both_listeners_are_stored_once(pair: Pair) -> None:
    # the device sends a batch to one listener, hears nothing, sends it again to the other
    # with the next records: what both stored is there once
    first = await pair.a.call("POST", "/iclock/cdata", body=_attlog(0, 20), table="ATTLOG",
                              Stamp="20")
    second = await pair.b.call("POST", "/iclock/cdata", body=_attlog(0, 30), table="ATTLOG",
                               Stamp="30")
    assert (first.text, second.text) == ("OK:20", "OK:30")
    assert await pair.a.store.punch_count("gate-1") == 30
    await pair.tick()
    # its next handshake, at either listener, starts after what is stored
    for side in (pair.a, pair.b):
        options = await side.call("GET", "/iclock/cdata", options="all", pushver="2.4.1")
        assert "ATTLOGStamp=30" in options.text


async def test_a_device_heard_only_by_the_other_listener_is_online_and_its_silence_judged_once(
    pair: Pair,
) -> None:
    # gate-1's site (pune) is the first poller's; the device talks to the second only
    for _ in range(6):
        assert (await pair.b.beat()).text == "OK"
        await pair.tick()
        pair.advance(5)
    assert await pair.statuses("gate-1") == ["online"]
    assert [e for e in pair.b.published if e.device_id == "gate-1"
            and e.kind.value.startswith("device.")] == []  # the second one never judges it
    pair.advance(16)  # 21 s since it was last heard anywhere
    await pair.tick()
    assert await pair.statuses("gate-1") == ["online", "offline"]
    assert [e.kind.value for e in pair.a.published
            if e.device_id == "gate-1" and e.kind.value.startswith("device.")] == [
        "device.online", "device.offline"]
    # it comes back through the second listener: the first one sees it from the store
    await pair.b.beat()
    await pair.tick()
    assert await pair.statuses("gate-1") == ["online", "offline", "online"]


async def test_a_command_is_handed_out_once_when_both_listeners_are_called_at_once(
    pair: Pair,
) -> None:
    await pair.a.beat()
    await pair.tick()
    request, _ = await enqueue(pair.a.store, "gate-1", "unlock", {"seconds": 3}, now=T0,
                               source="test")
    await pair.tick()  # both gateways see the queue
    for _ in range(3):  # the device calls both at the same moment, three times over
        answers = await asyncio.gather(pair.a.beat(), pair.b.beat())
        lines = [ln for r in answers for ln in r.text.strip().splitlines() if ln != "OK"]
        if lines:
            break
    assert len(lines) == 1 and lines[0].endswith(":AC_UNLOCK 3")
    again = await asyncio.gather(pair.a.beat(), pair.b.beat())
    assert [r.text for r in again] == ["OK", "OK"]  # sent once, by one of them
    line_id = lines[0].split(":")[1]
    # its result may reach either listener
    await pair.b.call("POST", "/iclock/devicecmd", body=f"ID={line_id}&Return=0&CMD=AC_UNLOCK\n")
    fresh = await pair.a.store.command_request(request.id)
    assert fresh is not None and fresh.commands[0].state is CommandState.DONE
    assert fresh.commands[0].attempts == 1


async def test_a_restart_the_other_listener_sent_is_not_an_outage(pair: Pair) -> None:
    await pair.a.beat()
    await pair.tick()
    await enqueue(pair.a.store, "gate-1", "restart", now=T0, source="test")
    await pair.tick()
    r = await pair.b.beat()  # the second listener hands the device its REBOOT
    assert r.text.strip().endswith(":REBOOT")
    pair.advance(40)  # silent past offline_after while it restarts (within 120 s)
    await pair.tick()
    assert await pair.statuses("gate-1") == ["online"]
    pair.advance(100)  # past the restart's window, still silent: now it is an outage
    await pair.tick()
    assert await pair.statuses("gate-1") == ["online", "offline"]


async def test_a_moved_site_is_judged_by_its_new_holder_from_the_status_recorded(
    pair: Pair,
) -> None:
    await pair.a.beat()
    await pair.tick()
    assert await pair.statuses("gate-1") == ["online"]
    # pune moves to the second poller (the first poller's lease ran out, say)
    pair.a.gateway.share.set(set())
    pair.b.gateway.share.set({"pune", "lyon"})
    # ... and while the second still held nothing of pune, it had seen gate-1 offline
    pair.b.gateway._by_serial["CKPUSH0001"].health.status = DeviceStatus.OFFLINE
    pair.advance(10)
    await pair.a.beat()  # heard by the first, which no longer judges it: no transition
    await pair.b.beat()  # heard by the new judge: online already, as recorded (not twice)
    await pair.tick()
    assert await pair.statuses("gate-1") == ["online"]
    pair.advance(21)
    await pair.tick()
    assert await pair.statuses("gate-1") == ["online", "offline"]
    assert [e.kind.value for e in pair.b.published if e.device_id == "gate-1"] == [
        "device.offline"]


async def test_records_the_other_listener_stored_are_not_a_gap(pair: Pair) -> None:
    await pair.a.beat()
    await pair.tick()
    await pair.a.call("POST", "/iclock/cdata", body=_attlog(0, 10), table="ATTLOG")
    await pair.b.call("POST", "/iclock/cdata", body=_attlog(10, 10), table="ATTLOG")
    pair.advance(60)  # long after its last upload
    # it says it holds 20 records: all 20 are stored, half of them by the other listener
    r = await pair.a.call("GET", "/iclock/getrequest", INFO="Ver 6.60,3,0,20,10.1.2.3")
    assert r.text == "OK"
    await pair.tick()
    assert await pair.a.store.commands(device_id="gate-1") == []
    # a real gap (it holds 25) is asked for once, whichever listener hears it
    await pair.b.call("GET", "/iclock/getrequest", INFO="Ver 6.60,3,0,25,10.1.2.3")
    await pair.a.call("GET", "/iclock/getrequest", INFO="Ver 6.60,3,0,25,10.1.2.3")
    asked = [c.command for c in await pair.a.store.commands(device_id="gate-1")]
    assert asked == ["resend_punches"]
