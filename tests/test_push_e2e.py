"""Emulated push terminals against the real push listener, engine and store, end to end.

The terminals (``fleettui.emulator``, every firmware profile) dial the
listener over loopback HTTP; the engine runs on the real clock with short
delays ([push] delay_s 2, offline after 4 s), so each wait is on a condition
in the store, with a bound, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from fleettui.config import parse_config
from fleettui.domain import CommandState, DeviceStatus
from fleettui.emulator import push_wire
from fleettui.emulator.device import DeviceConfig, Profile, User
from fleettui.emulator.fleet import Fleet
from fleettui.emulator.push_device import PushSetup
from fleettui.engine.approve import approve_push_device
from fleettui.engine.engine import Engine
from fleettui.engine.enqueue import enqueue
from fleettui.push import push_app
from fleettui.store import Store, open_store
from tests.conftest import free_port, next_host

PROFILES = ("legacy", "push2", "push2-resend", "biodata")
BOUND_S = 60.0


def _config(listen: str) -> str:
    devices = "".join(
        f'[[devices]]\nid = "p-{p}"\nserial = "PUSH{i:04d}"\nsite = "lyon"\n'
        'transport = "push"\n\n' for i, p in enumerate(PROFILES, start=1))
    return (f'[push]\nenabled = true\nlisten = "{listen}"\ndelay_s = 2\noffline_after_s = 4\n'
            f'error_delay_s = 10\n\n[[sites]]\nid = "lyon"\nname = "Lyon"\n'
            f'timezone = "Europe/Paris"\n\n{devices}')


@dataclass
class Stack:
    """The listener, engine and store, and the emulated terminals dialing them."""

    engine: Engine
    store: Store
    fleet: Fleet
    url: str

    async def until(self, what: str, condition: Callable[[], Awaitable[bool]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BOUND_S
        while not await condition():
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)

    async def status(self, device_id: str) -> DeviceStatus | None:
        d = await self.store.device(device_id)
        return d.status if d is not None else None


def _terminals(url: str, extra: dict[str, str] | None = None) -> Fleet:
    serials = {f"p-{p}": (f"PUSH{i:04d}", p) for i, p in enumerate(PROFILES, start=1)}
    for device_id, serial in (extra or {}).items():
        serials[device_id] = (serial, "push2")
    configs = [DeviceConfig(id=d, serial=s, timezone="Europe/Paris",
                            profile=Profile(reboot_s=0.3)) for d, (s, _) in serials.items()]
    users = {c.id: [User(uid=1, user_id="1001", name="Ann"), User(uid=2, user_id="1002")]
             for c in configs}
    push = {d: PushSetup(server=url, profile=push_wire.PROFILES[p], first_delay_s=0.2)
            for d, (_, p) in serials.items()}
    return Fleet(configs, users=users, push=push)


@pytest.fixture
async def stack(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    host = next_host()
    port = free_port(host)
    config = parse_config(_config(f"{host}:{port}"))
    store = await open_store(tmp_path / "fleet.db")
    engine = Engine(config, store)
    await engine.start()
    runner = web.AppRunner(push_app(engine.push, config.push), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    url = f"http://{host}:{port}"
    extra = getattr(request, "param", None)
    fleet = _terminals(url, extra)
    await fleet.start(live_punches=False)
    try:
        yield Stack(engine, store, fleet, url)
    finally:
        await fleet.stop()
        await runner.cleanup()
        await engine.stop()
        await store.close()


async def test_every_profile_comes_online_and_its_punches_are_stored_once_in_order(
    stack: Stack,
) -> None:
    ids = [f"p-{p}" for p in PROFILES]

    async def online() -> bool:
        return [await stack.status(d) for d in ids] == [DeviceStatus.ONLINE] * len(ids)

    await stack.until("every terminal online", online)
    for d in ids:
        await stack.fleet.set_faults(d, {"lost_answers": 1})  # the first answer is lost
        stack.fleet.generate_punches(d, 30)

    async def stored() -> bool:
        return [await stack.store.punch_count(d) for d in ids] == [30] * len(ids)

    await stack.until("30 punches from each terminal", stored)
    for d in ids:
        device = stack.fleet.device(d)
        held = sorted((r.user_id, r.at) for r in device.log.records())
        punches = await stack.store.punches(device_id=d)
        assert sorted((p.user_id, p.local_time) for p in punches) == held
        assert stack.fleet.terminal(d).stats["answers_lost"] == 1  # and sent again: once
    assert await stack.store.punch_count() == 120
    # webhooks in order per device: the outbox holds one punch.created per punch
    due = await stack.store.outbox_count()
    assert due >= 120


async def test_an_outage_is_seen_and_the_buffer_caught_up_in_order(stack: Stack) -> None:
    d = "p-push2"
    await stack.until("online", lambda: _is(stack, d, DeviceStatus.ONLINE))
    await stack.fleet.set_faults(d, {"offline": True})
    await stack.until("offline in the store", lambda: _is(stack, d, DeviceStatus.OFFLINE))
    state = await stack.store.device(d)
    assert state is not None and state.status_reason.startswith("no heartbeat")
    base = datetime(2026, 12, 3, 7, 0)
    device = stack.fleet.device(d)
    for i in range(150):
        device.punch("1001" if i % 2 else "1002", base + timedelta(seconds=i))
    await stack.fleet.clear_faults(d)
    await stack.until("150 punches stored",
                      lambda: _count(stack, d, 150))
    punches = await stack.store.punches(device_id=d)
    assert [p.local_time for p in punches] == [base + timedelta(seconds=i) for i in range(150)]
    assert await _is(stack, d, DeviceStatus.ONLINE)


async def test_a_restart_and_an_employee_sync_run_through_the_queue(stack: Stack) -> None:
    d = "p-biodata"
    store = stack.store
    await stack.until("online", lambda: _is(stack, d, DeviceStatus.ONLINE))
    restart, _ = await enqueue(store, d, "restart", now=stack.engine.clock(), source="test",
                               idempotency_key="restart-1")
    again, created = await enqueue(store, d, "restart", now=stack.engine.clock(),
                                   source="test", idempotency_key="restart-1")
    assert not created and again.id == restart.id  # idempotent: one restart
    await stack.until("the restart done", lambda: _done(store, restart.id))
    terminal = stack.fleet.terminal(d)

    async def back() -> bool:  # it rebooted and handshook again
        return terminal.stats["handshakes"] >= 2

    await stack.until("the terminal back from its reboot", back)
    employees = [{"user_id": "1001", "name": "Ann"}, {"user_id": "2001", "name": "Zoe"}]
    sync, _ = await enqueue(store, d, "sync_employees",
                            {"employees": employees, "remove_missing": True},
                            now=stack.engine.clock(), source="test")
    await stack.until("the employee sync done", lambda: _done(store, sync.id))
    fresh = await store.command_request(sync.id)
    assert fresh is not None and fresh.commands[0].state is CommandState.DONE
    on_device = {u.user_id: u.name for u in stack.fleet.device(d).users.values()}
    assert on_device == {"1001": "Ann", "2001": "Zoe"}


@pytest.mark.parametrize("stack", [{"stranger": "NEWONE77"}], indirect=True)
async def test_an_unknown_terminal_waits_then_its_backlog_is_stored_once(stack: Stack) -> None:
    store = stack.store
    stack.fleet.generate_punches("stranger", 12)

    async def pending() -> bool:
        return [p.serial for p in await store.pending_push_devices()] == ["NEWONE77"]

    await stack.until("the stranger pending", pending)
    assert await store.punch_count() == 0
    state = await approve_push_device(store, "NEWONE77", "lyon", stack.engine.clock())
    await stack.engine.reconcile()
    await stack.until("its 12 punches", lambda: _count(stack, state.id, 12))
    assert await store.punch_count(state.id) == 12


async def test_records_another_server_took_are_asked_for_again_and_stored_once(
    stack: Stack,
) -> None:
    """A device holding records the store lacks (another server took those uploads, or
    the database came back from a backup) is asked by the engine to send its log again,
    once it has caught up; what was missing is stored, nothing twice."""
    d = "p-push2"
    await stack.until("online", lambda: _is(stack, d, DeviceStatus.ONLINE))
    await stack.fleet.set_faults(d, {"offline": True})
    await stack.until("offline in the store", lambda: _is(stack, d, DeviceStatus.OFFLINE))
    base = datetime(2026, 12, 3, 7, 0)
    device = stack.fleet.device(d)
    for i in range(40):
        device.punch("1001" if i % 2 else "1002", base + timedelta(seconds=i))
    stack.fleet.terminal(d).cursor = 25  # the first 25 went to another server meanwhile
    await stack.fleet.clear_faults(d)
    await stack.until("all 40 punches stored", lambda: _count(stack, d, 40))
    commands = await stack.store.commands(device_id=d)
    resend = [c for c in commands if c.command == "resend_punches"]
    assert len(resend) == 1
    await stack.until("the re-read done", lambda: _command_final(stack.store, resend[0].id))
    done = await stack.store.command(resend[0].id)
    assert done is not None and done.state is CommandState.DONE, done
    assert done.result is not None and done.result["stored_since_asked"] == 25
    punches = await stack.store.punches(device_id=d)
    assert [p.local_time for p in punches] == [base + timedelta(seconds=i) for i in range(40)]
    # heartbeats go on with nothing missing: the device is not asked again
    beats = stack.fleet.terminal(d).stats["getrequests"]
    await stack.until("three more heartbeats",
                      lambda: _true(stack.fleet.terminal(d).stats["getrequests"] >= beats + 3))
    assert [c.command for c in await stack.store.commands(device_id=d)].count(
        "resend_punches") == 1


async def test_an_operator_re_reads_a_range_empty_or_not(stack: Stack) -> None:
    """resend_punches over a range: the device uploads what it holds there (already
    stored: nothing new, nothing twice); a range it holds nothing in ends done, empty."""
    d = "p-legacy"
    store = stack.store
    await stack.until("online", lambda: _is(stack, d, DeviceStatus.ONLINE))
    base = datetime(2026, 12, 3, 9, 0)
    device = stack.fleet.device(d)
    for i in range(10):
        device.punch("1001", base + timedelta(minutes=i))
    await stack.until("10 punches", lambda: _count(stack, d, 10))
    some, _ = await enqueue(store, d, "resend_punches",
                            {"since": "2026-12-03T09:02", "until": "2026-12-03T09:05"},
                            now=stack.engine.clock(), source="test")
    none, _ = await enqueue(store, d, "resend_punches",
                            {"since": "2025-01-01T00:00", "until": "2025-01-02T00:00"},
                            now=stack.engine.clock(), source="test")
    for request in (some, none):
        await stack.until("the re-read done", lambda r=request: _done(store, r.id))
    first = (await store.command_request(some.id))
    empty = (await store.command_request(none.id))
    assert first is not None and empty is not None
    assert first.commands[0].state is CommandState.DONE
    assert first.commands[0].result == {"since": "2026-12-03T09:02:00",
                                        "until": "2026-12-03T09:05:00",
                                        "stored_since_asked": 0}
    assert empty.commands[0].state is CommandState.DONE
    assert empty.commands[0].result is not None and empty.commands[0].result["empty_range"]
    assert await store.punch_count(d) == 10


async def _is(stack: Stack, device_id: str, status: DeviceStatus) -> bool:
    return await stack.status(device_id) is status


async def _count(stack: Stack, device_id: str, n: int) -> bool:
    return await stack.store.punch_count(device_id) == n


async def _done(store: Store, request_id: int) -> bool:
    request = await store.command_request(request_id)
    return request is not None and all(c.state.final for c in request.commands)


async def _command_final(store: Store, command_id: int) -> bool:
    command = await store.command(command_id)
    return command is not None and command.state.final


async def _true(value: bool) -> bool:
    return value
