"""The engine's per-check costs that were cut: liveness written in batches, the command
queue read only when a device has commands, and the check timetable.

Real emulated devices on loopback and a real SQLite file. The counting store
below wraps the real one (every call goes through to it) to see which store
calls a check makes: nothing of the store is imitated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleettui.config import parse_config
from fleettui.domain import CommandState, DeviceStatus, Event, EventKind
from fleettui.engine.checks import CheckTimetable
from fleettui.engine.engine import Engine
from fleettui.engine.enqueue import enqueue
from fleettui.engine.queued import QueuedCommands
from fleettui.store import Store, open_store
from tests.conftest import Emulated
from tests.test_engine import Clock, fleet_toml

T0 = datetime(2026, 3, 28, 9, 0, tzinfo=UTC)


class CountingStore:
    """The real store, counting the calls made to it by name."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr
        def counted(*args: Any, **kw: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kw)
        return counted


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path / "fleet.db")
    yield store
    await store.close()


async def _wait(cond: Any, what: str) -> None:
    """Until ``await cond()`` is true, bounded (20 s), checking every 20 ms."""
    for _ in range(1000):
        if await cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


# --- liveness ---------------------------------------------------------------------


async def test_an_answered_check_writes_last_seen_with_the_next_batch(
    one_device: Emulated, db: Store
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    clock = Clock(T0)
    engine = Engine(parse_config(fleet_toml([dev.config])), db, clock=clock)
    await engine.prepare()
    await engine.sweep()  # comes online: status and last_seen written together
    state = await db.device(dev.id)
    assert state is not None and state.status is DeviceStatus.ONLINE
    assert state.last_seen == T0

    clock.now = T0 + timedelta(seconds=4)
    await engine.pollers[dev.id].check()
    state = await db.device(dev.id)
    assert state is not None and state.last_seen == T0  # waiting in the batch
    assert dev.id in engine.liveness

    await engine.flush_liveness()
    state = await db.device(dev.id)
    assert state is not None and state.last_seen == T0 + timedelta(seconds=4)
    assert state.records == 30 and state.users == 20
    assert len(engine.liveness) == 0
    await engine.stop()


async def test_a_status_change_is_in_the_store_before_anyone_hears_of_it(
    one_device: Emulated, db: Store
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    engine = Engine(parse_config(fleet_toml([dev.config])), db)
    await engine.prepare()
    heard: list[Event] = []
    engine.listeners.append(heard.append)
    await engine.sweep()
    await engine.sweep()
    one_device.emu.run(one_device.fleet.set_faults(dev.id, {"offline": True}))
    await engine.sweep()
    await engine.sweep()
    kinds = [e.kind for e in heard]
    assert EventKind.DEVICE_ONLINE in kinds and EventKind.DEVICE_OFFLINE in kinds
    for event in heard:  # every published event was committed first
        assert event.id in {e.id for e in await db.events_after(0)}
    state = await db.device(dev.id)
    assert state is not None and state.status is DeviceStatus.OFFLINE
    await engine.stop()


async def test_a_scheduled_engine_keeps_last_seen_current_without_sweeps(
    one_device: Emulated, db: Store
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    engine = Engine(parse_config(fleet_toml([dev.config])), db)
    await engine.start()

    async def seen() -> datetime | None:
        state = await db.device(dev.id)
        return state.last_seen if state is not None else None

    await _wait(seen, "first seen")
    first = await seen()
    assert first is not None

    async def advanced() -> bool:
        now = await seen()
        return now is not None and now > first + timedelta(seconds=1)

    await _wait(advanced, "last_seen moves on with batched writes")
    await engine.stop()


# --- the command queue --------------------------------------------------------------


async def test_a_check_reads_the_command_queue_only_when_the_device_has_commands(
    one_device: Emulated, db: Store
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    counting = CountingStore(db)
    engine = Engine(parse_config(fleet_toml([dev.config])), counting)
    await engine.prepare()
    await engine.sweep()
    before = counting.calls.get("due_commands", 0)
    for _ in range(5):
        await engine.pollers[dev.id].check()
    assert counting.calls.get("due_commands", 0) == before  # nothing queued: never read

    request, _ = await enqueue(db, dev.id, "unlock", {"seconds": 1}, now=datetime.now(UTC),
                               source="test")
    assert dev.id in engine.queued  # the store signalled the engine at commit
    await engine.pollers[dev.id].check()
    done = await db.command_request(request.id)
    assert done is not None and [c.state for c in done.commands] == [CommandState.DONE]
    await engine.pollers[dev.id].check()  # reads the queue empty once, then forgets it
    assert dev.id not in engine.queued
    reads = counting.calls["due_commands"]
    await engine.pollers[dev.id].check()
    assert counting.calls["due_commands"] == reads
    await engine.stop()


async def test_a_command_queued_by_another_process_is_found_and_run(
    one_device: Emulated, db: Store, tmp_path: Path
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    engine = Engine(parse_config(fleet_toml([dev.config])), db)
    await engine.start()

    async def online() -> bool:
        state = await db.device(dev.id)
        return state is not None and state.status is DeviceStatus.ONLINE

    await _wait(online, "online")
    other = await open_store(tmp_path / "fleet.db")  # what `fleettui command` opens
    try:
        request, _ = await enqueue(other, dev.id, "unlock", {"seconds": 1},
                                   now=datetime.now(UTC), source="cli")
    finally:
        await other.close()

    async def done() -> bool:
        req = await db.command_request(request.id)
        return req is not None and req.commands[0].state is CommandState.DONE

    await _wait(done, "the other process's command ran")
    await engine.stop()


async def test_a_command_queued_here_runs_before_the_next_regular_check(
    one_device: Emulated, db: Store
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    # checks every 10 minutes: only the signal can run the command within the test
    config = parse_config(fleet_toml([dev.config], check_interval_s=600, jitter_s=0,
                                      backoff_max_s=600))
    engine = Engine(config, db)
    await engine.start()

    async def online() -> bool:
        state = await db.device(dev.id)
        return state is not None and state.status is DeviceStatus.ONLINE

    await _wait(online, "online")
    request, _ = await enqueue(db, dev.id, "unlock", {"seconds": 1}, now=datetime.now(UTC),
                               source="test")

    async def done() -> bool:
        req = await db.command_request(request.id)
        return req is not None and req.commands[0].state is CommandState.DONE

    await _wait(done, "the signalled check ran the command")
    await engine.stop()


def test_a_mark_made_while_the_queue_was_read_is_not_forgotten() -> None:
    queued = QueuedCommands()
    queued.mark(["d1"])
    token = queued.token("d1")
    queued.mark(["d1"])  # a new command committed after the poller's read
    queued.drained("d1", token)
    assert "d1" in queued
    queued.drained("d1", queued.token("d1"))
    assert "d1" not in queued


@pytest.fixture
async def any_db(db_target: str) -> AsyncIterator[Store]:
    """An empty store on each backend in turn (for tests of the store alone)."""
    store = await open_store(db_target)
    yield store
    await store.close()


async def test_a_refresh_keeps_marks_made_while_it_read(any_db: Store) -> None:
    db = any_db

    class Slow:
        """The real store's answer, with a mark landing while the read is under way."""

        async def devices_with_queued_commands(self) -> set[str]:
            found = await db.devices_with_queued_commands()
            queued.mark(["late"])
            return found

    queued = QueuedCommands()
    queued.mark(["gone"])
    await queued.refresh(Slow())  # type: ignore[arg-type]
    assert "late" in queued and "gone" not in queued


# --- the timetable --------------------------------------------------------------------


async def test_the_timetable_runs_each_device_and_moves_checks_forward() -> None:
    ran: list[str] = []
    arrived = asyncio.Event()

    def run(device_id: str) -> None:
        ran.append(device_id)
        arrived.set()

    table = CheckTimetable(run, jitter_s=0)
    table.add("a", 600.0, 0.0)
    table.add("b", 600.0, 600.0)
    await asyncio.wait_for(arrived.wait(), 10)
    assert ran == ["a"]
    arrived.clear()
    table.soon("b", 0.0)  # work waiting: due now rather than in ten minutes
    await asyncio.wait_for(arrived.wait(), 10)
    assert ran == ["a", "b"]
    table.remove("a")
    table.soon("a", 0.0)  # removed: nothing
    arrived.clear()
    table.add("c", 600.0, 0.0)
    await asyncio.wait_for(arrived.wait(), 10)
    assert ran == ["a", "b", "c"]
    assert table.stats.started == 3 and table.stats.skipped == 0
    table.close()


async def test_a_check_started_a_whole_interval_late_counts_as_skipped() -> None:
    arrived = asyncio.Event()
    table = CheckTimetable(lambda _id: arrived.set(), jitter_s=0)
    table.add("a", 0.05, 0.0)
    time.sleep(0.2)  # the loop held past a whole interval (a blocked event loop)
    await asyncio.wait_for(arrived.wait(), 10)
    assert table.stats.skipped == 1
    assert max(table.stats.lag_s) >= 0.15
    table.close()
