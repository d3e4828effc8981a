"""The engine against emulated devices and a real SQLite file, one sweep at a time.

Sweeps are driven by the test (``engine.sweep()``), so nothing depends on
scheduler timing; the engine's clock is injected where a test lives through
hours. Zero-loss cases of the issue: a 4-hour outage with 47 punches, a
device clock hours off, DST in the site's zone, a device answering garbage.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fleettui.config import Config, parse_config
from fleettui.domain import DeviceStatus, TzFlag
from fleettui.emulator.device import DeviceConfig, Profile
from fleettui.engine.engine import Engine
from fleettui.engine.poller import DevicePoller
from fleettui.engine.sync import to_utc
from fleettui.store import Store, open_store
from tests.conftest import Emulated, device_config, sample_users

FAST_POLL = {
    "check_interval_s": 0.5, "timeout_s": 0.4, "retry_after_s": 0.1,
    "offline_after_failures": 2, "jitter_s": 0.1, "backoff_max_s": 1.0,
}


def fleet_toml(devices: list[DeviceConfig], tz: str = "Africa/Casablanca", *,
               transport: str = "tcp", **poll: object) -> str:
    """A fleettui config for emulated devices, one site per time zone, one transport."""
    lines = ["[poll]"]
    for key, value in {**FAST_POLL, **poll}.items():
        lines.append(f"{key} = {str(value).lower() if isinstance(value, bool) else value}")
    lines += ["", "[[sites]]", 'id = "site-a"', 'name = "Site A"', f'timezone = "{tz}"', ""]
    for d in devices:
        lines += [
            "[[devices]]", f'id = "{d.id}"', f'serial = "{d.serial}"', 'site = "site-a"',
            f'host = "{d.host}"', f"port = {d.port}", f'transport = "{transport}"',
            f"comm_key = {d.comm_key}", "",
        ]
    return "\n".join(lines)


class Clock:
    """An injected UTC clock the test moves."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path / "fleet.db")
    yield store
    await store.close()


async def _engine(config: Config, store: Store, clock: Callable[[], datetime] | None = None
                  ) -> Engine:
    engine = Engine(config, store, **({"clock": clock} if clock else {}))
    await engine.prepare()
    return engine


def _stored(punches: list) -> list[tuple[str, datetime]]:  # type: ignore[type-arg]
    return [(p.user_id, p.local_time) for p in punches]


async def test_first_sweep_brings_devices_online_and_stores_every_punch(
    emulate: Callable[..., Emulated], db: Store
) -> None:
    cfgs = [device_config("dev_a"), device_config("dev_b")]
    em = emulate(cfgs, users={c.id: sample_users(10) for c in cfgs})
    for c in cfgs:
        em.emu.call(em.fleet.generate_punches, c.id, 25)
    engine = await _engine(parse_config(fleet_toml(cfgs)), db)
    await engine.sweep()
    for c in cfgs:
        state = await db.device(c.id)
        assert state is not None and state.status is DeviceStatus.ONLINE
        assert (state.model, state.records, state.records_cap) == ("F18/ID", 25, 100_000)
        assert state.clock_drift_s is not None and abs(state.clock_drift_s) < 3
        device_records = em.emu.call(em.fleet.devices[c.id].log.records)
        stored = await db.punches(device_id=c.id)
        assert sorted(_stored(stored)) == sorted((p.user_id, p.at) for p in device_records)
    await engine.stop()


async def test_an_idle_poll_downloads_no_attendance(
    one_device: Emulated, db: Store
) -> None:
    cfg = one_device.fleet.devices["dev_test_01"].config
    engine = await _engine(parse_config(fleet_toml([cfg])), db)
    await engine.sweep()
    assert engine.pollers[cfg.id].last_sync is not None
    engine.pollers[cfg.id].last_sync = None
    before = one_device.emu.call(lambda: dict(one_device.fleet.devices[cfg.id].stats))
    await engine.sweep()
    await engine.sweep()
    after = one_device.emu.call(lambda: dict(one_device.fleet.devices[cfg.id].stats))
    assert engine.pollers[cfg.id].last_sync is None  # no sync ran
    assert after["commands"] - before["commands"] == 2  # one read_sizes per sweep, nothing more
    await engine.stop()


async def test_four_hour_outage_with_47_punches_all_stored_once_in_order(
    one_device: Emulated, db: Store
) -> None:
    """The article's case: the device keeps punches while unreachable; none is lost."""
    dev = one_device.fleet.devices["dev_test_01"]
    clock = Clock(datetime(2026, 3, 28, 8, 0, tzinfo=UTC))
    engine = await _engine(parse_config(fleet_toml([dev.config])), db, clock)
    await engine.sweep()
    assert (await db.device(dev.id)).status is DeviceStatus.ONLINE  # type: ignore[union-attr]
    stored_before = await db.punch_count(dev.id)

    one_device.emu.run(one_device.fleet.set_faults(dev.id, {"offline": True}))
    for _ in range(2):
        clock.now += timedelta(seconds=5)
        await engine.sweep()
    state = await db.device(dev.id)
    assert state is not None and state.status is DeviceStatus.OFFLINE
    assert state.status_reason == "no answer"

    # four hours pass; 47 people punch on the unreachable device
    start = datetime(2026, 3, 28, 9, 0)
    times = [start + timedelta(minutes=5 * i + (i % 3)) for i in range(47)]
    for i, at in enumerate(reversed(times)):  # stored out of order on purpose
        one_device.emu.call(dev.punch, str(1001 + i % 20), at, state=i % 2)
    clock.now += timedelta(hours=4)
    one_device.emu.run(one_device.fleet.clear_faults(dev.id))
    await engine.sweep()

    state = await db.device(dev.id)
    assert state is not None and state.status is DeviceStatus.ONLINE
    by_id = sorted(await db.punches(device_id=dev.id), key=lambda p: p.id or 0)
    new = by_id[stored_before:]
    assert len(new) == 47
    assert [p.local_time for p in new] == sorted(times)
    # stored oldest first: ids follow time
    await engine.sweep()  # and a later sweep stores nothing twice
    assert await db.punch_count(dev.id) == stored_before + 47
    history = [c.status for c in await db.status_history(dev.id)]
    assert history == [DeviceStatus.ONLINE, DeviceStatus.OFFLINE, DeviceStatus.ONLINE]
    await engine.stop()


async def test_one_failed_check_is_not_an_outage(one_device: Emulated, db: Store) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    engine = await _engine(parse_config(fleet_toml([dev.config])), db)
    await engine.sweep()
    one_device.emu.run(one_device.fleet.set_faults(dev.id, {"offline": True}))
    await engine.sweep()
    one_device.emu.run(one_device.fleet.clear_faults(dev.id))
    await engine.sweep()
    assert [c.status for c in await db.status_history(dev.id)] == [DeviceStatus.ONLINE]
    await engine.stop()


async def test_a_device_clock_hours_off_loses_nothing_and_records_the_drift(
    one_device: Emulated, db: Store
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    one_device.emu.run(one_device.fleet.set_faults(dev.id, {"clock_offset_s": 3 * 3600}))
    for uid in ("1001", "1002", "1003"):
        one_device.emu.call(dev.punch, uid)  # stamped by the device's own (wrong) clock
    engine = await _engine(parse_config(fleet_toml([dev.config])), db)
    await engine.sweep()
    state = await db.device(dev.id)
    assert state is not None and state.clock_drift_s == pytest.approx(10_800, abs=5)
    stored = await db.punches(device_id=dev.id)
    assert len(stored) == 33
    late = [p for p in stored if p.user_id in ("1001", "1002", "1003")][-3:]
    device_times = em_times = one_device.emu.call(
        lambda: [p.at for p in dev.log.records()[-3:]]
    )
    assert [p.local_time for p in late] == device_times == em_times  # raw time kept as is
    for p in late:
        assert p.clock_drift_s == pytest.approx(10_800, abs=5)
        true_utc = p.utc_time - timedelta(seconds=p.clock_drift_s)
        assert abs((true_utc - datetime.now(UTC)).total_seconds()) < 120
    # the clock is fixed; new punches are right and nothing is stored twice
    one_device.emu.run(one_device.fleet.clear_faults(dev.id))
    one_device.emu.call(dev.punch, "1004")
    engine.pollers[dev.id]._last_clock_check = None
    await engine.sweep()
    assert await db.punch_count(dev.id) == 34
    assert abs((await db.device(dev.id)).clock_drift_s) < 3  # type: ignore[union-attr, arg-type]
    await engine.stop()


@pytest.mark.parametrize(
    ("local", "flag", "utc"),
    [
        (datetime(2026, 3, 29, 2, 30), TzFlag.NONEXISTENT, datetime(2026, 3, 29, 1, 30)),
        (datetime(2026, 10, 25, 2, 30), TzFlag.AMBIGUOUS, datetime(2026, 10, 25, 0, 30)),
        (datetime(2026, 10, 25, 3, 30), TzFlag.OK, datetime(2026, 10, 25, 2, 30)),
        (datetime(2026, 7, 1, 12, 0), TzFlag.OK, datetime(2026, 7, 1, 10, 0)),
    ],
)
def test_dst_hours_map_to_utc_with_a_flag(local: datetime, flag: TzFlag, utc: datetime) -> None:
    assert to_utc(local, ZoneInfo("Europe/Paris")) == (utc.replace(tzinfo=UTC), flag)


async def test_punches_in_dst_hours_are_stored_with_their_flags(
    emulate: Callable[..., Emulated], db: Store
) -> None:
    cfg = device_config(timezone="Europe/Paris")
    em = emulate([cfg], users={cfg.id: sample_users(5)})
    dev = em.fleet.devices[cfg.id]
    for at in (datetime(2026, 3, 29, 1, 59), datetime(2026, 3, 29, 2, 30),
               datetime(2026, 3, 29, 3, 1), datetime(2026, 10, 25, 2, 15),
               datetime(2026, 10, 25, 3, 15)):
        em.emu.call(dev.punch, "1001", at)
    engine = await _engine(parse_config(fleet_toml([cfg], tz="Europe/Paris")), db)
    await engine.sweep()
    stored = {p.local_time: p for p in await db.punches(device_id=cfg.id)}
    assert len(stored) == 5
    assert stored[datetime(2026, 3, 29, 2, 30)].tz_flag is TzFlag.NONEXISTENT
    assert stored[datetime(2026, 10, 25, 2, 15)].tz_flag is TzFlag.AMBIGUOUS
    assert {p.tz_flag for t, p in stored.items() if t.hour != 2} == {TzFlag.OK}
    assert {p.timezone for p in stored.values()} == {"Europe/Paris"}
    await engine.stop()


async def test_a_device_answering_garbage_is_in_error_and_the_rest_carry_on(
    emulate: Callable[..., Emulated], db: Store
) -> None:
    sick, well = device_config("dev_sick"), device_config("dev_well")
    em = emulate([sick, well], users={well.id: sample_users(5), sick.id: sample_users(5)})
    engine = await _engine(parse_config(fleet_toml([sick, well])), db)
    await engine.sweep()
    em.emu.run(em.fleet.set_faults(sick.id, {"garbage": True}))
    await engine.sweep()
    await engine.sweep()
    em.emu.call(em.fleet.devices[well.id].punch, "1002")
    await engine.sweep()
    s = await db.device(sick.id)
    assert s is not None and s.status is DeviceStatus.ERROR
    assert s.status_reason.startswith("bad reply")
    w = await db.device(well.id)
    assert w is not None and w.status is DeviceStatus.ONLINE
    assert await db.punch_count(well.id) == 1
    await engine.stop()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_a_device_whose_replies_are_cut_short_is_in_error_not_silently_online(
    one_device: Emulated, db: Store, transport: str
) -> None:
    """truncate mid-session: pyzk accepts half a sizes reply and keeps the old counts.

    Trusted, that made a device that stopped syncing look healthy: online, last
    seen advancing, its record count frozen. The driver checks the reply itself.
    """
    dev = one_device.fleet.devices["dev_test_01"]
    engine = await _engine(parse_config(fleet_toml([dev.config], transport=transport)), db)
    await engine.sweep()
    assert (await db.device(dev.id)).status is DeviceStatus.ONLINE  # type: ignore[union-attr]
    one_device.emu.run(one_device.fleet.set_faults(dev.id, {"truncate": True}))
    one_device.emu.call(dev.punch, "1004")
    for _ in range(2):  # offline_after_failures = 2
        await engine.sweep()
    state = await db.device(dev.id)
    assert state is not None
    assert (state.status, state.status_reason) == (DeviceStatus.ERROR, "bad reply: truncated")
    assert await db.punch_count(dev.id) == 30  # nothing stored from a reply cut in half
    one_device.emu.run(one_device.fleet.clear_faults(dev.id))
    await engine.sweep()
    state = await db.device(dev.id)
    assert state is not None and state.status is DeviceStatus.ONLINE
    assert (state.records, await db.punch_count(dev.id)) == (31, 31)
    await engine.stop()


async def test_an_online_device_whose_counts_go_unread_is_flagged_stalled(
    one_device: Emulated, db: Store
) -> None:
    """The stale-count watchdog: a check stuck on a device that holds its reply (a long
    pyzk timeout) refreshes nothing; after a few check intervals, by the injected clock,
    the device is in error, saying why, and the check that finally answers clears it."""
    dev = one_device.fleet.devices["dev_test_01"]
    clock = Clock(datetime(2026, 3, 28, 8, 0, tzinfo=UTC))
    config = parse_config(fleet_toml([dev.config], timeout_s=30.0))
    engine = await _engine(config, db, clock)
    poller = engine.pollers[dev.id]
    await engine.sweep()
    assert (await db.device(dev.id)).status is DeviceStatus.ONLINE  # type: ignore[union-attr]

    one_device.emu.run(one_device.fleet.set_faults(dev.id, {"offline": True}))
    stuck = asyncio.ensure_future(poller.check())  # its request waits in the TCP session
    for _ in range(500):  # bounded: 5 s for the check to be under way
        if poller.busy:
            break
        await asyncio.sleep(0.01)
    assert poller.busy
    clock.now += timedelta(seconds=1)  # under 3 check intervals (1.5 s): nothing yet
    await poller.check()
    assert (await db.device(dev.id)).status is DeviceStatus.ONLINE  # type: ignore[union-attr]
    clock.now += timedelta(seconds=1)
    await poller.check()
    state = await db.device(dev.id)
    assert state is not None and state.status is DeviceStatus.ERROR
    assert state.status_reason == "stalled: record count not read for over 1.5 s"

    one_device.emu.run(one_device.fleet.clear_faults(dev.id))  # the held reply goes out
    await asyncio.wait_for(stuck, timeout=30)
    state = await db.device(dev.id)
    assert state is not None and state.status is DeviceStatus.ONLINE
    history = [c.status for c in await db.status_history(dev.id)]
    assert history == [DeviceStatus.ONLINE, DeviceStatus.ERROR, DeviceStatus.ONLINE]
    await engine.stop()


async def test_a_download_under_way_gets_longer_before_it_counts_as_stalled(
    one_device: Emulated, db: Store
) -> None:
    """100,000 records on a slow link take minutes: while a sync runs, the watchdog waits
    ``sync_stall_s`` (15 min), not 3 check intervals, by the injected clock."""
    dev = one_device.fleet.devices["dev_test_01"]
    clock = Clock(datetime(2026, 3, 28, 8, 0, tzinfo=UTC))
    engine = await _engine(parse_config(fleet_toml([dev.config], timeout_s=30.0)), db, clock)
    poller = engine.pollers[dev.id]
    await engine.sweep()
    one_device.emu.call(dev.punch, "1004")  # the count moves: the next check syncs
    one_device.emu.run(one_device.fleet.set_faults(dev.id, {"reply_delay_ms": 200}))
    syncing = asyncio.ensure_future(poller.check())
    for _ in range(1000):  # bounded: 10 s for the sync to be under way
        if poller.sync_progress is not None:
            break
        await asyncio.sleep(0.01)
    assert poller.sync_progress is not None  # (only this loop clears it: no race below)
    clock.now += timedelta(seconds=60)  # 40 check intervals, well under 15 minutes
    await poller.check()
    assert (await db.device(dev.id)).status is DeviceStatus.ONLINE  # type: ignore[union-attr]
    clock.now += timedelta(seconds=900)
    await poller.check()
    state = await db.device(dev.id)
    assert state is not None and state.status is DeviceStatus.ERROR
    assert state.status_reason == "stalled: record count not read for over 900 s"
    one_device.emu.run(one_device.fleet.clear_faults(dev.id))
    await asyncio.wait_for(syncing, timeout=30)
    await engine.sweep()
    state = await db.device(dev.id)
    assert state is not None and state.status is DeviceStatus.ONLINE
    assert await db.punch_count(dev.id) == 31
    await engine.stop()


async def test_a_restarted_engine_remembers_status_and_cursor(
    one_device: Emulated, db: Store
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    config = parse_config(fleet_toml([dev.config]))
    first = await _engine(config, db)
    await first.sweep()
    await first.stop()
    second = await _engine(config, db)
    await second.sweep()
    assert second.pollers[dev.id].last_sync is None  # nothing new: no download
    assert [c.status for c in await db.status_history(dev.id)] == [DeviceStatus.ONLINE]
    one_device.emu.call(dev.punch, "1009")
    await second.sweep()
    last = second.pollers[dev.id].last_sync
    assert last is not None and (last.new, last.skipped) == (1, 30)  # read on from the cursor
    await second.stop()


async def test_live_capture_stores_a_punch_without_waiting_for_a_sync(
    one_device: Emulated, db: Store
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    engine = await _engine(parse_config(fleet_toml([dev.config], live_capture=True)), db)
    poller = engine.pollers[dev.id]
    await engine.sweep()  # online, synced, live capture started
    before = await db.punch_count(dev.id)
    seen: list[str] = []
    engine.listeners.append(lambda e: seen.append(e.kind))
    await _live_registered(one_device, dev.id)  # it registers in its own thread
    for _ in range(500):  # bounded: 10 s for the catch-up check registering asks for
        if poller._live_epoch and poller.live_held is None and not poller.busy:
            break
        await asyncio.sleep(0.02)
    one_device.emu.call(dev.punch, "1011", state=1, verify=15)  # a check-out by face
    for _ in range(250):  # bounded: 5 s; the punch is committed first, then told (its event)
        if await db.punch_count(dev.id) > before and "punch" in seen:
            break
        await asyncio.sleep(0.02)
    stored = await db.punches(device_id=dev.id)
    assert len(stored) == before + 1
    last = stored[-1]
    assert (last.user_id, last.source, last.state, last.verify) == ("1011", "live", 1, 15)
    assert "punch" in seen
    await engine.stop()


async def _live_registered(em: Emulated, device_id: str, registered: bool = True) -> None:
    """Wait (bounded: 10 s) until a live session is registered on the device, or none is."""
    def any_registered() -> bool:
        return any(s.event_flags for s in em.fleet.servers[device_id].sessions.values())

    for _ in range(500):
        if em.emu.call(any_registered) is registered:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{device_id}: live session {'not ' if registered else ''}registered")


async def _live_arrived(poller: DevicePoller, db: Store, stored_before: int) -> None:
    """Wait (bounded: 10 s) until a live punch reached the poller: stored, or held for the
    catch-up sync."""
    for _ in range(500):
        if await db.punch_count(poller.device_id) > stored_before or getattr(
                poller, "live_held", None):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{poller.device_id}: the live punch never arrived")


async def _sweep_until(engine: Engine, poller: DevicePoller,
                       count_ok: Callable[[int], bool]) -> None:
    """Sweep (bounded: 10 s) until the device's stored punch count satisfies ``count_ok``
    and its poller is idle, holding no live punch (a sweep finding the poller busy with
    a check of its own asking does nothing)."""
    for _ in range(500):
        await engine.sweep()
        if (count_ok(await engine.store.punch_count(poller.device_id)) and not poller.busy
                and getattr(poller, "live_held", None) is None):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{poller.device_id}: the punches never settled")


async def test_after_a_restart_live_black_and_white_punches_are_stored_once_and_right(
    emulate: Callable[..., Emulated], db: Store
) -> None:
    """A black-and-white terminal (16-byte records, 12-byte events) over UDP, live capture
    on. A restarted engine restores its sync cursor and downloads nothing before live
    capture starts: its events must still be read in their own layout, else the in/out
    state and the verify type swap, and the next sync stores the true record beside it."""
    cfg = device_config(profile=Profile(user_format=28, record_format=16, face_version=None,
                                        reboot_s=0.5))
    em = emulate([cfg], users={cfg.id: sample_users(5)})
    dev = em.fleet.devices[cfg.id]
    for i in range(5):
        em.emu.call(dev.punch, "1001", datetime(2026, 1, 5, 8, i), state=0, verify=1)
    config = parse_config(fleet_toml([cfg], transport="udp", live_capture=True))
    first = await _engine(config, db)
    await first.sweep()
    assert await db.punch_count(cfg.id) == 5
    await _live_registered(em, cfg.id)  # (so its goodbye below is the last word of it)
    await first.stop()
    await _live_registered(em, cfg.id, registered=False)

    second = await _engine(config, db)  # the same database: cursor restored
    await second.sweep()
    assert second.pollers[cfg.id].last_sync is None  # nothing new: no download
    await _live_registered(em, cfg.id)
    em.emu.call(dev.punch, "1003", state=1, verify=2)  # a check-out by card, pushed live
    await _live_arrived(second.pollers[cfg.id], db, 5)
    # the record count moved: a sync reads the log (and a later check finds it still)
    await _sweep_until(second, second.pollers[cfg.id], lambda n: n >= 6)
    await second.sweep()
    rows = [(p.user_id, p.state, p.verify) for p in await db.punches(device_id=cfg.id)]
    assert rows[5:] == [("1003", 1, 2)]
    await second.stop()


async def test_a_punch_made_while_live_capture_reregisters_keeps_its_place_in_order(
    one_device: Emulated, db: Store
) -> None:
    """The device drops its sessions and someone punches at once: no session is registered,
    so that punch is only in the log. Live capture reconnects and a later punch comes live.
    Receivers must still get punch.created in device-time order: the live punch waits for
    the catch-up sync that stores the earlier one."""
    dev = one_device.fleet.devices["dev_test_01"]
    server = one_device.fleet.servers[dev.id]
    engine = await _engine(parse_config(fleet_toml([dev.config], live_capture=True)), db)
    poller = engine.pollers[dev.id]
    await engine.sweep()
    await _live_registered(one_device, dev.id)
    for _ in range(500):  # bounded: 10 s for the first catch-up (a check it asked for)
        if (getattr(poller, "_live_epoch", 1) and getattr(poller, "live_held", None) is None
                and not poller.busy):
            break
        await asyncio.sleep(0.02)
    before = await db.punch_count(dev.id)
    earlier, later = datetime(2026, 12, 3, 9, 0), datetime(2026, 12, 3, 9, 1)

    def drop_then_punch() -> None:
        server._drop_all()  # a glitch: every session gone (the live one with them)
        dev.punch("1005", earlier)

    one_device.emu.call(drop_then_punch)
    await _live_registered(one_device, dev.id)  # the live session is back
    one_device.emu.call(dev.punch, "1006", later)  # comes live
    await _live_arrived(poller, db, before)
    # the first check may find its session dropped; the one after syncs
    await _sweep_until(engine, poller, lambda n: n == before + 2)
    stored = sorted(await db.punches(device_id=dev.id), key=lambda p: p.id or 0)
    assert [(p.user_id, p.local_time) for p in stored[before:]] == [
        ("1005", earlier), ("1006", later)]
    with sqlite3.connect(f"file:{db.path}?mode=ro", uri=True) as ro:
        created = [json.loads(r[0])["punch"]["user_id"] for r in ro.execute(
            "SELECT payload FROM webhook_outbox WHERE event_type = 'punch.created'"
            " ORDER BY id")]
    assert created[before:] == ["1005", "1006"]
    await engine.stop()


async def test_scheduled_engine_detects_an_outage_on_its_own(
    one_device: Emulated, db: Store
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    engine = Engine(parse_config(fleet_toml([dev.config])), db)
    await engine.start()

    async def wait_status(status: DeviceStatus) -> None:
        for _ in range(1500):  # bounded: 30 s
            state = await db.device(dev.id)
            if state is not None and state.status is status:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{dev.id} never became {status}")

    await wait_status(DeviceStatus.ONLINE)
    one_device.emu.run(one_device.fleet.set_faults(dev.id, {"offline": True}))
    await wait_status(DeviceStatus.OFFLINE)
    one_device.emu.run(one_device.fleet.clear_faults(dev.id))
    await wait_status(DeviceStatus.ONLINE)
    await engine.stop()
