"""Remote commands end to end: queued in the store, run by the poller on emulated devices.

Each command changes the emulated device as it should; offline devices get
their commands in order when they return; idempotency keys make retries run
once; a site request makes one command per device with one summary.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleettui.commands import CommandError, validate
from fleettui.config import parse_config
from fleettui.domain import CommandState, DeviceStatus
from fleettui.emulator.device import Profile, Punch
from fleettui.engine.engine import Engine
from fleettui.engine.enqueue import enqueue, read_employees
from fleettui.store import IdempotencyConflict, Store, open_store
from tests.conftest import Emulated, FakeClock, device_config, sample_users
from tests.test_engine import Clock, fleet_toml

NOW = datetime(2026, 3, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path / "fleet.db")
    yield store
    await store.close()


async def _engine(em: Emulated, store: Store, clock: Callable[[], datetime] | None = None,
                  **poll: object) -> Engine:
    configs = [d.config for d in em.fleet.devices.values()]
    engine = Engine(parse_config(fleet_toml(configs, **poll)), store,
                    **({"clock": clock} if clock else {}))
    await engine.prepare()
    return engine


async def _queue(store: Store, target: str, command: str, params: object = None,
                 **kw: object) -> int:
    now = kw.pop("now", None) or datetime.now(UTC)
    request, _ = await enqueue(store, target, command, params, now=now,  # type: ignore[arg-type]
                               source="test", **kw)  # type: ignore[arg-type]
    return request.id


async def _request(store: Store, request_id: int):  # type: ignore[no-untyped-def]
    request = await store.command_request(request_id)
    assert request is not None
    return request


# --- validation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "params", "fragment"),
    [
        ("reboot", {}, "unknown command 'reboot'"),
        ("unlock", {"seconds": 0}, "seconds: Input should be greater than or equal to 1"),
        ("unlock", {"secs": 3}, "secs: unknown parameter"),
        ("restart", {"now": True}, "now: unknown parameter"),
        ("sync_employees", {}, "employees: Field required"),
        ("sync_employees", {"employees": [{"user_id": "abc"}]}, "employees.0.user_id"),
        ("sync_employees", {"employees": [{"user_id": "1", "privilege": 3}]},
         "expected 0 (user) or 14 (admin)"),
        ("sync_employees", {"employees": [{"user_id": "1"}, {"user_id": "1"}]},
         "user_id 1 appears twice"),
        ("sync_time", [1], "params must be an object"),
    ],
)
def test_bad_commands_are_refused_with_the_parameter_named(
    command: str, params: object, fragment: str
) -> None:
    with pytest.raises(CommandError) as info:
        validate(command, params)
    assert fragment in str(info.value)


def test_passwords_never_appear_in_errors() -> None:
    with pytest.raises(CommandError) as info:
        validate("sync_employees", {"employees": [{"user_id": "1", "password": "s3cr3t-pass"}]})
    assert "s3cr3t" not in str(info.value)


async def test_unknown_targets_are_refused(one_device: Emulated, db: Store) -> None:
    await _engine(one_device, db)
    with pytest.raises(CommandError, match="no device or site called 'nowhere'"):
        await _queue(db, "nowhere", "restart")


# --- each command on the device -------------------------------------------


async def test_restart_takes_the_device_away_and_it_is_not_called_offline(
    emulate: Callable[..., Emulated], db: Store
) -> None:
    fake = FakeClock()
    cfg = device_config(profile=Profile(reboot_s=30))
    em = emulate([cfg], users={cfg.id: sample_users(3)}, clock=fake)
    engine = await _engine(em, db)
    await engine.sweep()
    rid = await _queue(db, cfg.id, "restart")
    await engine.sweep()
    assert (await _request(db, rid)).commands[0].state is CommandState.DONE
    assert em.emu.call(lambda: em.fleet.devices[cfg.id].power) == "rebooting"
    for _ in range(4):  # silent while it reboots: expected, not an outage
        await engine.sweep()
    state = await db.device(cfg.id)
    assert state is not None and state.status is DeviceStatus.ONLINE
    fake.advance(31)
    await engine.sweep()
    assert (await db.device(cfg.id)).last_seen is not None  # type: ignore[union-attr]
    assert [c.status for c in await db.status_history(cfg.id)] == [DeviceStatus.ONLINE]
    await engine.stop()


async def test_a_restarted_device_that_never_returns_becomes_offline(
    emulate: Callable[..., Emulated], db: Store
) -> None:
    cfg = device_config(profile=Profile(reboot_s=3600))
    em = emulate([cfg], clock=FakeClock())
    clock = Clock(NOW)
    engine = await _engine(em, db, clock)
    await engine.sweep()
    await _queue(db, cfg.id, "restart", now=clock.now)
    await engine.sweep()
    clock.now += timedelta(minutes=5)  # past the reboot window
    await engine.sweep()
    await engine.sweep()
    assert (await db.device(cfg.id)).status is DeviceStatus.OFFLINE  # type: ignore[union-attr]
    await engine.stop()


async def test_sync_employees_adds_updates_and_removes(one_device: Emulated, db: Store) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    engine = await _engine(one_device, db)
    await engine.sweep()
    employees = [
        {"user_id": "1001", "name": "Worker 1", "card": 5000001},  # unchanged
        {"user_id": "1002", "name": "Renamed Two", "card": 42},  # updated
        {"user_id": "2001", "name": "Amina New", "card": 777, "privilege": 14},  # added
    ]
    rid = await _queue(db, dev.id, "sync_employees",
                       {"employees": employees, "remove_missing": True})
    await engine.sweep()
    command = (await _request(db, rid)).commands[0]
    assert command.state is CommandState.DONE, command.error
    assert command.result == {"added": 1, "updated": 1, "removed": 18, "unchanged": 1,
                              "users": 3}
    users = one_device.emu.call(lambda: {u.user_id: u for u in dev.users.values()})
    assert set(users) == {"1001", "1002", "2001"}
    assert (users["1002"].name, users["1002"].card) == ("Renamed Two", 42)
    assert (users["2001"].name, users["2001"].privilege) == ("Amina New", 14)
    await engine.stop()


async def test_sync_time_sets_the_clock_to_site_local_time(one_device: Emulated,
                                                           db: Store) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    one_device.emu.run(one_device.fleet.set_faults(dev.id, {"clock_offset_s": 5000}))
    engine = await _engine(one_device, db)
    await engine.sweep()
    rid = await _queue(db, dev.id, "sync_time")
    await engine.sweep()
    assert (await _request(db, rid)).commands[0].state is CommandState.DONE
    assert abs(one_device.emu.call(dev.clock_offset_s)) < 3
    await engine.stop()


async def test_enable_disable_and_unlock(one_device: Emulated, db: Store) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    engine = await _engine(one_device, db)
    await engine.sweep()
    await _queue(db, dev.id, "disable")
    await engine.sweep()
    assert one_device.emu.call(lambda: dev.enabled) is False
    await _queue(db, dev.id, "enable")
    await _queue(db, dev.id, "unlock", {"seconds": 5})
    await engine.sweep()
    assert one_device.emu.call(lambda: (dev.enabled, dev.door_unlocks)) == (True, 1)
    await engine.stop()


async def test_clear_attendance_only_after_every_record_is_stored(
    one_device: Emulated, db: Store
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    engine = await _engine(one_device, db)
    one_device.emu.call(dev.punch, "1005")  # not synced yet when the command is queued
    rid = await _queue(db, dev.id, "clear_attendance")
    await engine.sweep()
    command = (await _request(db, rid)).commands[0]
    assert command.state is CommandState.DONE, command.error
    assert command.result == {"cleared": 31, "confirmed_stored": 31}
    assert one_device.emu.call(lambda: len(dev.log)) == 0
    assert await db.punch_count(dev.id) == 31
    assert one_device.emu.call(lambda: dev.enabled) is True
    await engine.stop()


async def test_resend_punches_stores_what_the_store_lost_in_a_range_once(
    one_device: Emulated, db: Store, tmp_path: Path
) -> None:
    """The database came back from an older backup: the punches of the last hours are
    gone from it while the device still holds them. resend_punches over that range reads
    the log again and stores them (once: a second run finds nothing new); the sync
    cursor is left alone."""
    dev = one_device.fleet.devices["dev_test_01"]
    engine = await _engine(one_device, db)
    await engine.sweep()
    assert await db.punch_count(dev.id) == 30
    times = sorted(one_device.emu.call(lambda: [p.at for p in dev.log.records()]))
    cut = times[20]
    with sqlite3.connect(tmp_path / "fleet.db") as raw:  # the backup's state: rows lost
        raw.execute("DELETE FROM punches WHERE local_time >= ?", (cut.isoformat(),))
    lost = 30 - await db.punch_count(dev.id)
    assert lost == 10
    params = {"since": cut.isoformat(), "until": times[25].isoformat()}
    first = await _queue(db, dev.id, "resend_punches", params)
    await engine.sweep()
    command = (await _request(db, first)).commands[0]
    assert command.state is CommandState.DONE, command.error
    assert command.result is not None
    assert (command.result["in_range"], command.result["new"]) == (6, 6)
    again = await _queue(db, dev.id, "resend_punches", {"since": cut.isoformat()})
    await engine.sweep()
    command = (await _request(db, again)).commands[0]
    assert command.result is not None
    assert (command.result["in_range"], command.result["new"]) == (10, 4)
    assert await db.punch_count(dev.id) == 30
    assert sorted(p.local_time for p in await db.punches(device_id=dev.id)) == times
    await engine.stop()


async def test_clear_attendance_is_refused_while_a_record_cannot_be_stored(
    one_device: Emulated, db: Store
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    bad_time = ((26 * 12 * 31) + 1 * 31 + 30) * 86400  # 31 February
    one_device.emu.call(dev.log.append_encoded, Punch("1001", datetime(2026, 1, 1)), bad_time)
    engine = await _engine(one_device, db)
    rid = await _queue(db, dev.id, "clear_attendance")
    await engine.sweep()
    command = (await _request(db, rid)).commands[0]
    assert command.state is CommandState.FAILED
    assert "cannot be read" in command.error
    assert one_device.emu.call(lambda: len(dev.log)) == 31  # nothing cleared
    assert one_device.emu.call(lambda: dev.enabled) is True
    await engine.stop()


async def test_a_command_the_device_refuses_fails_with_its_reason(
    emulate: Callable[..., Emulated], db: Store
) -> None:
    cfg = device_config(profile=Profile(users_cap=2))
    em = emulate([cfg])
    engine = await _engine(em, db)
    employees = [{"user_id": str(1000 + i), "name": f"P{i}"} for i in range(5)]
    rid = await _queue(db, cfg.id, "sync_employees", {"employees": employees})
    await engine.sweep()
    command = (await _request(db, rid)).commands[0]
    assert command.state is CommandState.FAILED
    assert "Can't set user" in command.error
    await engine.stop()


# --- the queue --------------------------------------------------------------


async def test_an_offline_device_gets_its_commands_in_order_when_it_returns(
    one_device: Emulated, db: Store
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    engine = await _engine(one_device, db)
    await engine.sweep()
    one_device.emu.run(one_device.fleet.set_faults(dev.id, {"offline": True}))
    await engine.sweep()
    await engine.sweep()
    ids = [
        await _queue(db, dev.id, "disable"),
        await _queue(db, dev.id, "unlock", {"seconds": 2}),
        await _queue(db, dev.id, "enable"),
    ]
    await engine.sweep()
    assert {(await _request(db, i)).commands[0].state for i in ids} == {CommandState.QUEUED}
    one_device.emu.run(one_device.fleet.clear_faults(dev.id))
    await engine.sweep()
    commands = [(await _request(db, i)).commands[0] for i in ids]
    assert [c.state for c in commands] == [CommandState.DONE] * 3
    assert [c.updated_at for c in commands] == sorted(c.updated_at for c in commands)
    assert one_device.emu.call(lambda: (dev.enabled, dev.door_unlocks)) == (True, 1)
    await engine.stop()


async def test_a_command_expires_when_its_device_stays_away(one_device: Emulated,
                                                            db: Store) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    clock = Clock(NOW)
    engine = await _engine(one_device, db, clock)
    one_device.emu.run(one_device.fleet.set_faults(dev.id, {"offline": True}))
    rid = await _queue(db, dev.id, "restart", ttl=timedelta(minutes=30), now=clock.now)
    clock.now += timedelta(hours=1)
    one_device.emu.run(one_device.fleet.clear_faults(dev.id))
    await engine.sweep()
    command = (await _request(db, rid)).commands[0]
    assert command.state is CommandState.EXPIRED
    assert one_device.emu.call(lambda: dev.power) == "on"  # never restarted
    await engine.stop()


async def test_one_idempotency_key_runs_the_command_once(one_device: Emulated,
                                                         db: Store) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    engine = await _engine(one_device, db)
    first = await _queue(db, dev.id, "unlock", {"seconds": 4}, idempotency_key="k-1")
    again = await _queue(db, dev.id, "unlock", {"seconds": 4}, idempotency_key="k-1")
    assert again == first  # a retried request gets the first one back
    await engine.sweep()
    retry = await _queue(db, dev.id, "unlock", {"seconds": 4}, idempotency_key="k-1")
    assert retry == first
    await engine.sweep()
    assert one_device.emu.call(lambda: dev.door_unlocks) == 1
    with pytest.raises(IdempotencyConflict, match="k-1"):
        await _queue(db, dev.id, "unlock", {"seconds": 9}, idempotency_key="k-1")
    # a week later the key may name a new request
    later = await _queue(db, dev.id, "unlock", {"seconds": 9}, idempotency_key="k-1",
                         now=datetime.now(UTC) + timedelta(days=8))
    assert later != first
    await engine.stop()


async def test_a_bulk_restart_of_a_ten_device_site(emulate: Callable[..., Emulated],
                                                   db: Store) -> None:
    fake = FakeClock()
    cfgs = [device_config(f"dev_site_{i:02d}", profile=Profile(reboot_s=10)) for i in range(10)]
    em = emulate(cfgs, clock=fake)
    engine = await _engine(em, db)
    await engine.sweep()
    rid = await _queue(db, "site-a", "restart", idempotency_key="site-restart")
    request = await _request(db, rid)
    assert (request.target_kind, request.summary()["queued"]) == ("site", 10)
    await engine.sweep()
    request = await _request(db, rid)
    assert request.summary()["done"] == 10
    assert em.emu.call(lambda: {d.power for d in em.fleet.devices.values()}) == {"rebooting"}
    fake.advance(11)
    await engine.sweep()
    assert {d.status for d in await db.devices()} == {DeviceStatus.ONLINE}
    await engine.stop()


async def test_commands_left_running_by_a_dead_poller_are_not_run_again(
    one_device: Emulated, db: Store
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    await _engine(one_device, db)
    rid = await _queue(db, dev.id, "unlock")
    await db.start_command((await _request(db, rid)).commands[0].id, NOW)  # then "kill -9"
    engine = await _engine(one_device, db)  # the next poller starts
    await engine.sweep()
    command = (await _request(db, rid)).commands[0]
    assert command.state is CommandState.FAILED and "interrupted" in command.error
    assert one_device.emu.call(lambda: dev.door_unlocks) == 0
    await engine.stop()


# --- entry points -------------------------------------------------------------


def test_employee_files_csv_and_json(tmp_path: Path) -> None:
    csv_file = tmp_path / "staff.csv"
    csv_file.write_text("id,name,card,privilege\n1001,Ana Lima,123,0\n1002,Bo Chen,,14\n")
    assert read_employees(csv_file) == [
        {"user_id": "1001", "name": "Ana Lima", "card": 123, "privilege": 0},
        {"user_id": "1002", "name": "Bo Chen", "privilege": 14},
    ]
    json_file = tmp_path / "staff.json"
    json_file.write_text(json.dumps({"employees": [{"user_id": "7", "name": "Cy"}]}))
    assert read_employees(json_file) == [{"user_id": "7", "name": "Cy"}]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,card\n1001,Ana,notanumber\n")
    with pytest.raises(CommandError, match=r"bad.csv:2: card: expected a whole number"):
        read_employees(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name,card\nAna,1\n")
    with pytest.raises(CommandError, match="no 'id'"):
        read_employees(wrong)


async def test_cli_site_employee_sync_runs_once_per_device_through_the_poller(
    emulate: Callable[..., Emulated], tmp_path: Path
) -> None:
    """The issue's "done when", from the CLI: a site-wide employee sync queued while one
    device is offline ends done on every device, once, with a visible result."""
    cfgs = [device_config(f"dev_cli_{i}") for i in range(3)]
    em = emulate(cfgs)
    db_path = tmp_path / "fleet.db"
    store = await open_store(db_path)
    engine = await _engine(em, store)
    await engine.sweep()
    em.emu.run(em.fleet.set_faults(cfgs[1].id, {"offline": True}))
    staff = tmp_path / "staff.csv"
    staff.write_text("id,name,card\n3001,Dana Ruiz,9001\n3002,Eli Park,9002\n")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fleettui", *args, "--db", str(db_path)],
                              capture_output=True, text=True, timeout=60)

    r = cli("sync-employees", "--site", "site-a", str(staff), "--key", "hr-drop-1", "--json")
    assert r.returncode == 0, r.stderr
    request = json.loads(r.stdout)
    assert request["summary"]["queued"] == 3
    again = cli("sync-employees", "--site", "site-a", str(staff), "--key", "hr-drop-1", "--json")
    assert json.loads(again.stdout)["id"] == request["id"]  # retried: same request
    await engine.sweep()
    await engine.sweep()
    em.emu.run(em.fleet.clear_faults(cfgs[1].id))
    await engine.sweep()
    r = cli("commands", "--json")
    commands = json.loads(r.stdout)["commands"]
    assert len(commands) == 3
    assert {c["state"] for c in commands} == {"done"}
    assert {c["result"]["added"] for c in commands} == {2}
    for c in cfgs:
        device = em.fleet.devices[c.id]
        users = em.emu.call(lambda d=device: sorted(u.user_id for u in d.users.values()))
        assert users == ["3001", "3002"]
    r = cli("command", "site-a", "unlock", "-p", "seconds=99")
    assert r.returncode == 2 and "seconds" in r.stderr
    await engine.stop()
    await store.close()


async def test_a_second_sync_to_a_black_and_white_terminal_changes_nothing(
    emulate: Callable[..., Emulated], db: Store
) -> None:
    """B&W terminals keep 8 bytes of a name: a long name must not look changed every time."""
    cfg = device_config(profile=Profile(user_format=28, record_format=16, face_version=None))
    em = emulate([cfg])
    engine = await _engine(em, db)
    staff = {"employees": [{"user_id": "4001", "name": "Maximiliano Long", "card": 1}]}
    first = await _queue(db, cfg.id, "sync_employees", staff)
    await engine.sweep()
    second = await _queue(db, cfg.id, "sync_employees", staff)
    await engine.sweep()
    assert (await _request(db, first)).commands[0].result["added"] == 1  # type: ignore[index]
    again = (await _request(db, second)).commands[0].result
    assert again is not None and (again["unchanged"], again["updated"]) == (1, 0)
    assert em.emu.call(lambda: [u.name for u in em.fleet.devices[cfg.id].users.values()]) == [
        "Maximili"
    ]
    await engine.stop()


async def test_set_option_writes_a_device_option(one_device: Emulated, db: Store) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    engine = await _engine(one_device, db)
    ok = await _queue(db, dev.id, "set_option", {"key": "LockOn", "value": "50"})
    await engine.sweep()
    assert (await _request(db, ok)).commands[0].state is CommandState.DONE
    assert one_device.emu.call(lambda: dev.options["LockOn"]) == "50"
    # only the harmless options are writable: not the read-only ones (serial, platform),
    # not the comm key (it would then show in every listing of commands), not the network
    for key, value in (("~SerialNumber", "x"), ("COMKey", "123456"), ("IPAddress", "10.0.0.9")):
        with pytest.raises(CommandError, match="key: expected one of LockOn, WorkCode"):
            validate("set_option", {"key": key, "value": value})
    with pytest.raises(CommandError, match="value: LockOn takes the door relay's drive time"):
        validate("set_option", {"key": "LockOn", "value": "300"})
    await engine.stop()


def test_every_command_of_the_table_runs_on_a_pull_device() -> None:
    """A command is one entry in fleettui/commands.py plus its pull handler: none is
    left without one, and no handler serves a command the table does not have."""
    from fleettui.commands import COMMANDS
    from fleettui.engine.executor import PULL_HANDLERS

    assert set(PULL_HANDLERS) == set(COMMANDS)
    for spec in COMMANDS.values():
        assert spec.label and spec.summary
