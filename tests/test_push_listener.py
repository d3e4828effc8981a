"""The push listener over HTTP, as a device calls it: real server on loopback, real store.

Each test sends what a push-mode terminal sends (wire format from the ZKTeco
push protocol notes) with an HTTP client, and checks the answers and the
store. The engine's clock is injected (offline detection is driven by
``tick``); the answers' Date header comes from an injected wall clock.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from fleettui.commands import CommandError
from fleettui.config import Config, parse_config
from fleettui.domain import CommandState, DeviceStatus, EventKind
from fleettui.engine.approve import ApprovalError, approve_push_device
from fleettui.engine.engine import Engine
from fleettui.engine.enqueue import enqueue
from fleettui.push import push_app
from fleettui.store import Store, open_store
from tests import test_http_api
from tests.conftest import free_port, next_host
from tests.test_http_api import Api, _err

api = test_http_api.api  # the fixture: a server over a filled store, a key per role

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
WALL = datetime(2026, 12, 3, 9, 0, 5, tzinfo=UTC)

CONFIG = """
[push]
enabled = true
delay_s = 5
offline_after_s = 20
rate_per_serial = 2  # bursts of 8: the bad-requests test floods past it

[[sites]]
id = "pune"
name = "Pune plant"
timezone = "Asia/Kolkata"

[[sites]]
id = "lyon"
name = "Lyon depot"
timezone = "Europe/Paris"

[[devices]]
id = "gate-1"
serial = "CKPUSH0001"
site = "pune"
transport = "push"

[[devices]]
id = "gate-2"
serial = "CKPUSH0002"
site = "lyon"
transport = "push"
"""


@dataclass
class Listener:
    """A push listener over a fresh store, and a client that calls it as devices do."""

    engine: Engine
    store: Store
    client: httpx.AsyncClient
    now: list[datetime]

    async def call(self, method: str, path: str, serial: str | None = "CKPUSH0001",
                   body: str | bytes | None = None, **query: str) -> httpx.Response:
        params = ({"SN": serial} if serial is not None else {}) | query
        content = body.encode() if isinstance(body, str) else body
        return await self.client.request(method, path, params=params, content=content)

    def advance(self, seconds: float) -> None:
        self.now[0] += timedelta(seconds=seconds)


@pytest.fixture
async def listener(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Listener]:
    config: Config = parse_config(getattr(request, "param", CONFIG))
    store = await open_store(tmp_path / "fleet.db")
    now = [T0]
    engine = Engine(config, store, clock=lambda: now[0])
    await engine.prepare()
    host = next_host()
    port = free_port(host)
    runner = web.AppRunner(push_app(engine.push, config.push,
                                    wall_clock=lambda: WALL.timestamp()))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
        try:
            yield Listener(engine, store, client, now)
        finally:
            await runner.cleanup()
            await engine.push.flush()
            await store.close()


async def test_the_handshake_gives_the_options_the_site_zone_and_a_true_date(
    listener: Listener,
) -> None:
    r = await listener.call("GET", "/iclock/cdata", options="all", pushver="2.4.1",
                            language="69")
    assert r.status_code == 200
    lines = r.text.splitlines()
    assert lines[0] == "GET OPTION FROM: CKPUSH0001"
    options = dict(line.split("=", 1) for line in lines[1:])
    assert options["Delay"] == "5"
    assert options["TimeZone"] == "330"  # India: +5:30, in minutes as firmware reads it
    assert options["ATTLOGStamp"] == "0" and "Stamp" not in options
    assert options["TransFlag"].startswith("TransData AttLog")
    assert options["Realtime"] == "1" and "ServerVer" in options
    assert parsedate_to_datetime(r.headers["Date"]) == WALL  # devices set their clock by it
    # a device without pushver is legacy firmware: Stamp= and OpStamp= it reads instead
    legacy = await listener.call("GET", "/iclock/cdata", serial="CKPUSH0002", options="all")
    assert "Stamp=0" in legacy.text.splitlines() and "TimeZone=1" in legacy.text
    device = await listener.store.device("gate-1")
    assert device is not None and device.status is DeviceStatus.ONLINE


ATTLOG_5 = "1001\t2026-12-03 08:01:02\t0\t1\t0\n"
ATTLOG_7 = "1002\t2026-12-03 08:02:03\t0\t15\t0\t0\t0\r\n"
ATTLOG_10 = "1003\t2026-12-03 08:03:04\t1\t1\t0\t0\t0\t1\t36.6\t0\n"


async def test_every_attlog_profile_is_stored_once_then_acknowledged(
    listener: Listener,
) -> None:
    body = ATTLOG_5 + ATTLOG_7 + "garbage line\n" + ATTLOG_10
    r = await listener.call("POST", "/iclock/cdata", body=body, table="ATTLOG", Stamp="9")
    assert (r.status_code, r.text) == (200, "OK:4")  # every line taken, the bad one skipped
    punches = await listener.store.punches(device_id="gate-1")
    assert [(p.user_id, p.state, p.verify) for p in punches] == [
        ("1001", 0, 1), ("1002", 0, 15), ("1003", 1, 1)]
    assert punches[0].utc_time == datetime(2026, 12, 3, 2, 31, 2, tzinfo=UTC)  # Kolkata
    assert await listener.store.outbox_count() == 4  # 3 punch.created, and its device.online
    # the answer was lost: the device posts the same batch again; nothing is stored twice
    again = await listener.call("POST", "/iclock/cdata", body=body, table="ATTLOG", Stamp="9")
    assert again.text == "OK:4"
    assert await listener.store.punch_count("gate-1") == 3
    assert await listener.store.outbox_count() == 4
    hello = await listener.call("GET", "/iclock/cdata", options="all", pushver="2.4.1")
    assert "ATTLOGStamp=9" in hello.text.splitlines()  # echoed, before it is even written
    await listener.engine.push.flush()  # contacts and stamps are written once a second
    assert (await listener.store.push_stamps("gate-1")).attlog == "9"


KEYED = CONFIG + """
[[devices]]
id = "gate-3"
serial = "CKPUSH0003"
site = "lyon"
transport = "push"
comm_key = 424242
"""


@pytest.mark.parametrize("listener", [KEYED], indirect=True, ids=["gate-3 keyed"])
async def test_a_device_with_a_comm_key_is_heard_only_after_a_handshake_that_gives_it(
    listener: Listener, caplog: pytest.LogCaptureFixture,
) -> None:
    """A device whose config holds a comm key must give it (pushcommkey, sent by the
    firmware with its handshake only) before anything it sends is taken: until then its
    uploads are refused (not acknowledged: it keeps its records) and its heartbeats are
    answered CHECK, which makes it handshake again. The key never reaches the log."""
    serial = "CKPUSH0003"
    upload = await listener.call("POST", "/iclock/cdata", serial=serial, body=ATTLOG_5,
                                 table="ATTLOG")
    assert upload.status_code == 403 and not upload.text.startswith("OK")
    beat = await listener.call("GET", "/iclock/getrequest", serial=serial)
    assert beat.status_code == 200 and beat.text.strip() == "C:0:CHECK"
    for wrong in ({}, {"pushcommkey": "111111"}):
        hello = await listener.call("GET", "/iclock/cdata", serial=serial, options="all",
                                    pushver="2.4.1", **wrong)
        assert hello.status_code == 403 and "GET OPTION" not in hello.text
    assert await listener.store.punch_count() == 0
    state = await listener.store.device("gate-3")
    assert state is not None and state.status is DeviceStatus.UNKNOWN  # not heard
    hello = await listener.call("GET", "/iclock/cdata", serial=serial, options="all",
                                pushver="2.4.1", pushcommkey="424242")
    assert hello.status_code == 200 and hello.text.startswith("GET OPTION FROM: CKPUSH0003")
    upload = await listener.call("POST", "/iclock/cdata", serial=serial, body=ATTLOG_5,
                                 table="ATTLOG")
    assert (upload.status_code, upload.text) == (200, "OK:1")
    beat = await listener.call("GET", "/iclock/getrequest", serial=serial)
    assert (beat.status_code, beat.text) == (200, "OK")
    assert await listener.store.punch_count("gate-3") == 1
    # a device without a key in the config is taken as before
    plain = await listener.call("POST", "/iclock/cdata", serial="CKPUSH0002", body=ATTLOG_7,
                                table="ATTLOG")
    assert plain.text == "OK:1"
    assert "424242" not in caplog.text and "111111" not in caplog.text
    assert "without the device's comm key" in caplog.text


async def test_an_unknown_serial_stores_nothing_and_waits_for_approval(
    listener: Listener,
) -> None:
    r = await listener.call("POST", "/iclock/cdata", serial="STRANGER1", body=ATTLOG_5,
                            table="ATTLOG")
    assert r.status_code == 403 and not r.text.startswith("OK")  # the device keeps its data
    beat = await listener.call("GET", "/iclock/getrequest", serial="STRANGER1")
    assert beat.status_code == 403
    assert await listener.store.punch_count() == 0
    pending = await listener.store.pending_push_devices()
    assert [(p.serial, p.address.startswith("127.")) for p in pending] == [("STRANGER1", True)]


async def test_a_queued_restart_rides_the_heartbeat_and_its_result_ends_it(
    listener: Listener,
) -> None:
    store = listener.store
    assert (await listener.call("GET", "/iclock/getrequest")).text == "OK"
    request, _ = await enqueue(store, "gate-1", "restart", now=T0, source="test")
    await listener.engine.push.tick()  # the gateway sees the queue (once a second)
    r = await listener.call("GET", "/iclock/getrequest")
    line_id, text = r.text.strip().split(":", 2)[1:]
    assert text == "REBOOT"
    assert (await listener.call("GET", "/iclock/getrequest")).text == "OK"  # sent once
    done = await listener.call("POST", "/iclock/devicecmd",
                               body=f"ID={line_id}&Return=0&CMD=REBOOT\n")
    assert done.text == "OK"
    fresh = await store.command_request(request.id)
    assert fresh is not None and fresh.commands[0].state is CommandState.DONE
    # the same result posted again changes nothing
    await listener.call("POST", "/iclock/devicecmd", body=f"ID={line_id}&Return=0&CMD=REBOOT")
    again = await store.command_request(request.id)
    assert again is not None and again.commands[0].updated_at == fresh.commands[0].updated_at


async def test_a_failed_return_code_fails_the_command_in_words(listener: Listener) -> None:
    store = listener.store
    request, _ = await enqueue(store, "gate-1", "unlock", {"seconds": 4}, now=T0,
                               source="test")
    await listener.engine.push.tick()
    r = await listener.call("GET", "/iclock/getrequest")
    line_id, text = r.text.strip().split(":", 2)[1:]
    assert text == "AC_UNLOCK 4"
    await listener.call("POST", "/iclock/devicecmd",
                        body=f"ID={line_id}&Return=-1005&CMD=AC_UNLOCK\n")
    fresh = await store.command_request(request.id)
    assert fresh is not None
    command = fresh.commands[0]
    assert command.state is CommandState.FAILED
    assert command.error == "AC_UNLOCK 4: the device is busy (-1005)"


async def test_commands_a_push_device_cannot_do_are_refused_when_queued(
    listener: Listener,
) -> None:
    with pytest.raises(CommandError, match=r"push device cannot do it .*gate-1"):
        await enqueue(listener.store, "gate-1", "disable", now=T0, source="test")


async def test_an_employee_sync_becomes_user_lines_and_is_remembered(
    listener: Listener,
) -> None:
    store = listener.store
    await listener.call("POST", "/iclock/cdata", table="OPERLOG",
                        body="USER PIN=7\tName=Old\tPri=0\tPasswd=\tCard=\tGrp=1\n"
                             "OPLOG 21\t0\t2026-12-03 08:00:00\t0\t0\t0\t0\n")
    employees = [{"user_id": "5", "name": "Asha"}, {"user_id": "6", "name": "Ravi"}]
    request, _ = await enqueue(store, "gate-1", "sync_employees",
                               {"employees": employees, "remove_missing": True},
                               now=T0, source="test")
    await listener.engine.push.tick()
    # first the device is asked who it holds: it uploads them, then answers the query
    query = await listener.call("GET", "/iclock/getrequest")
    query_id, text = query.text.strip().split(":", 2)[1:]
    assert text == "DATA QUERY USERINFO"
    await listener.call("POST", "/iclock/cdata", table="OPERLOG",
                        body="USER PIN=7\tName=Old\tPri=0\tPasswd=\tCard=\tGrp=1\n")
    await listener.call("POST", "/iclock/devicecmd", body=f"ID={query_id}&Return=0&CMD=DATA\n")
    r = await listener.call("GET", "/iclock/getrequest")
    sent = [line.split(":", 2)[1:] for line in r.text.strip().splitlines()]
    assert [t.split("\t")[0] for _, t in sent] == [
        "DATA UPDATE USERINFO PIN=5", "DATA UPDATE USERINFO PIN=6", "DATA DELETE USERINFO PIN=7"]
    results = "".join(f"ID={i}&Return=0&CMD=DATA\n" for i, _ in sent)
    await listener.call("POST", "/iclock/devicecmd", body=results)
    fresh = await store.command_request(request.id)
    assert fresh is not None and fresh.commands[0].state is CommandState.DONE
    assert fresh.commands[0].result == {"added": 2, "updated": 0, "removed": 1,
                                        "unchanged": 0, "users": 2}
    assert [u.pin for u in await store.push_users("gate-1")] == ["5", "6"]
    events = [e.message for e in await store.events_after(0)]
    assert "gate-1: clock set" in events


async def test_a_silent_device_goes_offline_and_a_heartbeat_brings_it_back(
    listener: Listener,
) -> None:
    store = listener.store
    await listener.call("GET", "/iclock/getrequest")
    await listener.engine.push.tick()
    listener.advance(19)
    await listener.engine.push.tick()
    device = await store.device("gate-1")
    assert device is not None and device.status is DeviceStatus.ONLINE
    listener.advance(2)
    await listener.engine.push.tick()
    device = await store.device("gate-1")
    assert device is not None and device.status is DeviceStatus.OFFLINE
    assert device.status_reason == "no heartbeat for 20 s"
    await listener.call("GET", "/iclock/getrequest", INFO="Ver 6.60,12,3,845,10.1.2.3")
    await listener.engine.push.tick()  # contacts are written once a second
    device = await store.device("gate-1")
    assert device is not None and device.status is DeviceStatus.ONLINE
    assert (device.firmware, device.users, device.records) == ("Ver 6.60", 12, 845)


async def test_bad_requests_get_short_answers_and_reach_nothing(listener: Listener) -> None:
    no_serial = await listener.call("GET", "/iclock/getrequest", serial=None)
    assert (no_serial.status_code, no_serial.text) == (400, "BAD REQUEST\n")
    bad_serial = await listener.call("GET", "/iclock/getrequest", serial="x;DROP TABLE")
    assert bad_serial.status_code == 400
    elsewhere = await listener.call("GET", "/v1/devices")
    assert elsewhere.status_code == 404
    too_big = await listener.call("POST", "/iclock/cdata", table="ATTLOG",
                                  body=b"1\t2026-12-03 08:00:00\t0\t1\n" * 100_000)
    assert too_big.status_code == 413
    assert await listener.store.punch_count() == 0
    # a serial calling far faster than any heartbeat is told to wait
    answers = [(await listener.call("GET", "/iclock/ping")).status_code for _ in range(3)]
    assert answers == [200, 200, 200]  # ping needs no serial and is never limited
    codes = [(await listener.call("GET", "/iclock/getrequest", serial="CKPUSH0002")).status_code
             for _ in range(40)]
    assert codes[0] == 200 and 503 in codes


async def test_an_approved_device_is_answered_and_its_backlog_stored_once(
    listener: Listener,
) -> None:
    store = listener.store
    await listener.call("GET", "/iclock/cdata", serial="NEWONE77", options="all",
                        pushver="2.4.1")
    refused = await listener.call("POST", "/iclock/cdata", serial="NEWONE77", body=ATTLOG_7,
                                  table="ATTLOG")
    assert refused.status_code == 403
    with pytest.raises(ApprovalError, match="no site"):
        await approve_push_device(store, "NEWONE77", "nowhere", T0)
    state = await approve_push_device(store, "NEWONE77", "lyon", T0, name="Dock door")
    assert (state.id, state.transport, state.origin) == ("newone77", "push", "api")
    assert await store.pending_push_devices() == []
    await listener.engine.reconcile()  # what the poller does every few seconds
    for _ in range(2):  # the device sends its buffer; the answer is lost; it sends it again
        r = await listener.call("POST", "/iclock/cdata", serial="NEWONE77", body=ATTLOG_7,
                                table="ATTLOG")
        assert r.text == "OK:1"
    punches = await store.punches(device_id="newone77")
    assert [(p.user_id, p.timezone) for p in punches] == [("1002", "Europe/Paris")]
    with pytest.raises(ApprovalError, match="waiting"):
        await approve_push_device(store, "NEWONE77", "lyon", T0)


async def test_pending_devices_over_the_http_api(api: Api) -> None:
    await api.store.note_pending_push("DOOR999", "10.9.8.7", "", "2.4.1", T0)
    assert (await api.get("/v1/push/pending")).json()["pending"][0]["serial"] == "DOOR999"
    site = (await api.get("/v1/sites")).json()["sites"][0]["id"]
    path = "/v1/push/pending/DOOR999/approve"
    assert "admin" in _err(await api.post(path, json={"site": site}), 403, "forbidden")
    _err(await api.post(path, role="admin", json={"site": site, "colour": "red"}), 400,
         "unknown_field")
    _err(await api.post("/v1/push/pending/NOPE/approve", role="admin", json={"site": site}),
         404, "not_found")
    r = await api.post(path, role="admin", json={"site": site, "id": "door-999"})
    assert r.status_code == 201 and r.json()["id"] == "door-999"
    assert (await api.get("/v1/push/pending")).json()["pending"] == []
    assert "door-999" in [d["id"] for d in (await api.get("/v1/devices")).json()["devices"]]


async def test_a_thousand_devices_reconnecting_at_once_are_all_answered(
    tmp_path: Path,
) -> None:
    """A site's uplink returns and its thousand terminals call in the same instant: every
    call is answered (none dropped, none refused), each device is online once, and a
    heartbeat of a device of another site made in the middle of it is answered too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:  # both ends of a thousand connections live in this process
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    devices = "".join(f'[[devices]]\nid = "t{i:04d}"\nserial = "BURST{i:04d}"\nsite = "pune"\n'
                      'transport = "push"\n\n' for i in range(1000))
    config = parse_config(CONFIG + devices)
    store = await open_store(tmp_path / "fleet.db")
    engine = Engine(config, store, clock=lambda: T0)
    await engine.prepare()
    host = next_host()
    port = free_port(host)
    runner = web.AppRunner(push_app(engine.push, config.push), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=2048).start()
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=120,
                                     limits=limits) as client:
            async def call(serial: str) -> int:
                r = await client.get("/iclock/getrequest", params={"SN": serial})
                return r.status_code

            burst = [asyncio.ensure_future(call(f"BURST{i:04d}")) for i in range(1000)]
            other = await call("CKPUSH0002")  # made while the burst is under way
            codes = await asyncio.gather(*burst)
        assert other == 200
        assert codes == [200] * 1000
        devices_now = await store.devices("pune")
        online = [d for d in devices_now if d.status is DeviceStatus.ONLINE]
        assert len(online) == 1000
        changes = [e for e in await store.events_after(0, limit=5000)
                   if e.kind == EventKind.DEVICE_ONLINE]
        assert len(changes) == 1001  # one each: the thousand, and the other site's device
    finally:
        await runner.cleanup()
        await store.close()


async def test_a_command_line_never_answered_fails_its_command_in_the_end(
    listener: Listener,
) -> None:
    store = listener.store
    request, _ = await enqueue(store, "gate-1", "unlock", {"seconds": 2}, now=T0,
                               source="test")
    await listener.engine.push.tick()
    r = await listener.call("GET", "/iclock/getrequest")
    assert r.text.strip().endswith("AC_UNLOCK 2")  # taken, and then the device goes quiet
    listener.advance(14 * 60)
    await listener.engine.push.tick()
    fresh = await store.command_request(request.id)
    assert fresh is not None and fresh.commands[0].state is CommandState.SENT
    listener.advance(2 * 60)
    await listener.engine.push.tick()
    fresh = await store.command_request(request.id)
    assert fresh is not None
    assert (fresh.commands[0].state, fresh.commands[0].error) == (
        CommandState.FAILED, "AC_UNLOCK 2: not answered")


async def test_a_command_left_half_done_by_a_listener_that_died_is_carried_on(
    listener: Listener,
) -> None:
    """A listener killed after a result was stored but before it acted on it: the query
    of an employee sync answered, its user lines never queued; a restart whose process
    died between start and lines (a store from before they were one step)."""
    store = listener.store
    gateway = listener.engine.push
    employees = [{"user_id": "5", "name": "Asha"}]
    request, _ = await enqueue(store, "gate-1", "sync_employees",
                               {"employees": employees, "remove_missing": False},
                               now=T0, source="test")
    await gateway.tick()
    query = await listener.call("GET", "/iclock/getrequest")
    query_id = int(query.text.strip().split(":", 2)[1])
    # the result is taken (as the dying listener did), and nothing more happens
    assert await store.answer_push_line("gate-1", query_id, 0, {}, listener.now[0]) is not None
    bare, _ = await enqueue(store, "gate-2", "restart", now=T0, source="test")
    await store.start_command(bare.commands[0].id, T0)
    listener.advance(60)
    await gateway.tick()
    assert (await listener.call("GET", "/iclock/getrequest")).text == "OK"  # not yet
    listener.advance(70)  # past STRANDED_AFTER_S, at the next look (every 60 s)
    await gateway.tick()
    r = await listener.call("GET", "/iclock/getrequest")
    assert [ln.split(":", 2)[2].split("\t")[0] for ln in r.text.strip().splitlines()] == [
        "DATA UPDATE USERINFO PIN=5"]
    line_id = r.text.strip().split(":", 2)[1]
    await listener.call("POST", "/iclock/devicecmd", body=f"ID={line_id}&Return=0&CMD=DATA\n")
    fresh = await store.command_request(request.id)
    assert fresh is not None and fresh.commands[0].state is CommandState.DONE
    assert fresh.commands[0].result is not None and fresh.commands[0].result["added"] == 1
    ended = await store.command_request(bare.id)
    assert ended is not None and (ended.commands[0].state, ended.commands[0].error) == (
        CommandState.FAILED, "interrupted before it reached the device")
