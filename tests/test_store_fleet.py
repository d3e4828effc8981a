"""The store's fleet, health and panel questions, called directly: once per backend (a
SQLite file, then a PostgreSQL database), and, where two processes can meet, as two store
objects on one database calling at once. Refusals are compared by kind, field and index:
every backend refuses the same change the same way."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from fleettui.domain import (
    DeviceSpec,
    DeviceState,
    DeviceStatus,
    FlapState,
    Liveness,
    Punch,
    Site,
    StatusChange,
    SyncCursor,
    TzFlag,
)
from fleettui.store import ConflictKind, FleetConflict, Store, open_store
from fleettui.store.where import is_postgres_url

T0 = datetime(2026, 3, 28, 8, 0, tzinfo=UTC)
SITES = [Site("wh-a", "Warehouse A", "Africa/Casablanca"), Site("of-b", "Office B", "UTC")]
CONFIG = [DeviceState("cfg1", "SER1", "wh-a", "127.0.0.2", 4370, "tcp"),
          DeviceState("cfg2", "SER2", "wh-a", "127.0.0.3", 4370, "udp"),
          DeviceState("cfg3", "SER3", "of-b", "127.0.0.4", 4370, "tcp")]
TAKEN, BAD, OWNED, MISSING = (ConflictKind.TAKEN, ConflictKind.BAD_REFERENCE,
                              ConflictKind.CONFIG_OWNED, ConflictKind.NOT_FOUND)


def _spec(device_id: str, serial: str, host: str = "10.0.0.9", *, site: str = "wh-a",
          port: int = 4370, transport: str = "tcp", **extra: Any) -> DeviceSpec:
    """A device of the store's own, as the HTTP API hands it over."""
    return DeviceSpec(device_id, serial, site, host, port, transport, origin="api", **extra)


async def _filled(target: str) -> Store:
    """The configured fleet, an API device (api1) and a removed one (gone)."""
    store = await open_store(target)
    await store.sync_fleet(SITES, CONFIG)
    await store.register_devices([_spec("api1", "SER-A1", "gate-1.example.com", comm_key=7),
                                  _spec("gone", "SER-G", "10.0.0.5")], T0)
    await store.remove_api_device("gone", T0)
    return store


@pytest.fixture
async def store(db_target: str) -> AsyncIterator[Store]:
    """``_filled``, on each backend in turn."""
    s = await _filled(db_target)
    yield s
    await s.close()


def _why(e: FleetConflict) -> tuple[ConflictKind, str, int | None]:
    """What a refusal says, the same on every backend: kind, field, index."""
    return e.kind, e.field, e.index


async def _refused(store: Store, call: Any) -> tuple[ConflictKind, str, int | None, str]:
    """A change the store must refuse, whole: nothing of it written."""
    before = (await store.sites(), await store.devices(), await store.last_event_id())
    with pytest.raises(FleetConflict) as caught:
        await call
    assert (await store.sites(), await store.devices(), await store.last_event_id()) == before
    return (*_why(caught.value), caught.value.message)


async def _outbox(target: str) -> list[str]:
    """The webhook outbox's payloads as stored (the text that is signed), in order."""
    sql = "SELECT payload FROM webhook_outbox ORDER BY id"
    if is_postgres_url(target):
        conn = await asyncpg.connect(target)
        try:
            return [r[0] for r in await conn.fetch(sql)]
        finally:
            await conn.close()
    with sqlite3.connect(target) as raw:
        return [r[0] for r in raw.execute(sql)]


# --- registering, changing, removing: refusals ----------------------------------------------


async def test_registering_refuses_what_is_taken_or_unknown_and_writes_nothing(
    store: Store,
) -> None:
    cases = [
        (_spec("api1", "SER-NEW"), (TAKEN, "id", None), "is already taken"),
        (_spec("cfg1", "SER-NEW"), (TAKEN, "id", None), "(by the config file)"),
        (_spec("gone", "SER-OTHER"), (TAKEN, "id", None), "by a removed device"),
        (_spec("of-b", "SER-NEW"), (TAKEN, "id", None), "a site's id"),
        (_spec("new", "SER-A1"), (TAKEN, "serial_number", None), "the device 'api1'"),
        (_spec("new", "SER-N", "127.0.0.3", transport="udp"), (TAKEN, "host", None), "'cfg2'"),
        (_spec("new", "SER-N", "GATE-1.example.com"), (TAKEN, "host", None), "'api1'"),
        (_spec("new", "SER-N", site="nowhere"), (BAD, "site", None), "no site 'nowhere'"),
    ]
    for spec, why, words in cases:
        *got, message = await _refused(store, store.register_devices([spec], T0))
        assert (tuple(got), words in message) == (why, True), (spec, message)
    # all or none: the first device of a batch is not kept when the second is refused
    batch = [_spec("ok", "SER-OK"), _spec("new", "SER-A1")]
    assert (await _refused(store, store.register_devices(batch, T0)))[:3] == (
        TAKEN, "serial_number", None)
    # a push device dials in: it has no address to clash with another's
    (push,) = await store.register_devices([_spec("p1", "SER-P", "gate-1.example.com",
                                                  transport="push")], T0)
    assert (push.id, push.origin, push.transport) == ("p1", "api", "push")


async def test_a_new_site_refuses_a_bad_device_or_move_by_its_place_in_the_batch(
    store: Store,
) -> None:
    site = Site("gate-a", "Gate A", "UTC")
    two = [_spec("w1", "SER-W1", site="gate-a"), _spec("w2", "SER-A1", site="gate-a")]
    assert (await _refused(store, store.register_devices(two, T0, site=site)))[:3] == (
        TAKEN, "serial_number", 1)
    moving = store.register_devices([_spec("w1", "SER-W1", site="gate-a")], T0, site=site,
                                    move=["api1", "nope"])
    assert await _refused(store, moving) == (BAD, "id", 2, "no device 'nope'")
    *why, message = await _refused(store, store.register_devices([], T0, site=site,
                                                                 move=["cfg1"]))
    assert tuple(why) == (OWNED, "id", 0) and "config file (site 'wh-a')" in message
    assert (await _refused(store, store.register_devices([], T0, site=site,
                                                         move=["gone"])))[:3] == (BAD, "id", 0)
    for taken in ("api1", "of-b", "gone"):  # a device's id, a site's, a removed device's
        refused = store.register_devices([], T0, site=Site(taken, "x", "UTC"))
        assert (await _refused(store, refused))[:3] == (TAKEN, "id", None)
    assert not await store.create_site(Site("cfg1", "x", "UTC"), T0)

    placed = await store.register_devices([_spec("w1", "SER-W1", site="gate-a")], T0, site=site,
                                          move=["api1"])
    assert [(d.id, d.site_id) for d in placed] == [("w1", "gate-a"), ("api1", "gate-a")]
    assert [s.id for s in await store.sites()] == ["gate-a", "of-b", "wh-a"]
    moved = [e for e in await store.events_after(0) if e.kind == "device.moved"]
    assert [(e.device_id, e.site_id, e.data) for e in moved] == [
        ("api1", "gate-a", {"from": "wh-a"})]
    assert not await store.create_site(site, T0)  # taken now
    assert await store.create_site(Site("empty", "Empty", "UTC"), T0)


async def test_a_removed_device_comes_back_with_its_serial_and_keeps_its_history(
    store: Store,
) -> None:
    await store.insert_punches("gone", [_punch("gone", T0)], cursor=SyncCursor(1, "t"))
    (again,) = await store.register_devices([_spec("gone", "SER-G", "10.0.0.6")], T0)
    assert (again.host, again.origin, again.synced_records) == ("10.0.0.6", "api", 1)
    assert await store.sync_cursor("gone") == (1, "t")
    assert await store.punch_count("gone") == 1
    assert [d.id for d in await store.devices()] == ["api1", "cfg1", "cfg2", "cfg3", "gone"]
    kinds = [e.kind for e in await store.events_after(0) if e.device_id == "gone"]
    assert kinds == ["device.registered", "device.removed", "device.registered"]


async def test_changing_a_device_of_the_stores_own(store: Store) -> None:
    assert await _refused(store, store.update_api_device("nope", {"name": "x"}, T0)) == (
        MISSING, "id", None, "no device 'nope'")
    assert (await _refused(store, store.update_api_device("gone", {"name": "x"}, T0)))[:3] == (
        MISSING, "id", None)
    *why, message = await _refused(store, store.update_api_device("cfg1", {"name": "x"}, T0))
    assert tuple(why) == (OWNED, "id", None) and "config file" in message
    to_cfg1 = store.update_api_device("api1", {"host": "127.0.0.2"}, T0)
    assert (await _refused(store, to_cfg1))[:3] == (TAKEN, "host", None)
    to_nowhere = store.update_api_device("api1", {"site_id": "nowhere"}, T0)
    assert (await _refused(store, to_nowhere))[:3] == (BAD, "site", None)

    changed = await store.update_api_device(
        "api1", {"site_id": "of-b", "port": 4371, "comm_key": 9, "name": "Gate 1",
                 "live_capture": False}, T0)
    assert (changed.site_id, changed.port, changed.name, changed.origin) == (
        "of-b", 4371, "Gate 1", "api")
    (spec,) = await store.api_device_specs()
    assert (spec.id, spec.comm_key, spec.live_capture, spec.timezone) == ("api1", 9, False, "UTC")
    updated = [e for e in await store.events_after(0) if e.kind == "device.updated"]
    assert updated[-1].data["fields"] == ["live_capture", "name", "port", "site_id", "comm_key"]
    assert "9" not in updated[-1].message.replace("4371", "")
    await store.update_api_device("api1", {"name": "Gate 1"}, T0)
    assert (await store.events_after(updated[-1].id))[-1].message == "api1 changed: nothing"
    await store.update_api_device("api1", {"enabled": False}, T0)
    assert await store.api_device_specs() == []  # disabled: not polled
    assert (await store.device("api1")) is not None


async def test_removing_keeps_the_row_and_refuses_config_and_unknown_devices(
    store: Store,
) -> None:
    assert (await _refused(store, store.remove_api_device("cfg1", T0)))[:3] == (
        OWNED, "id", None)
    assert (await _refused(store, store.remove_api_device("nope", T0)))[:3] == (
        MISSING, "id", None)
    assert (await _refused(store, store.remove_api_device("gone", T0)))[:3] == (
        MISSING, "id", None)
    await store.remove_api_device("api1", T0)
    assert await store.device("api1", removed=False) is None
    kept = await store.device("api1")
    assert kept is not None and kept.serial == "SER-A1"
    assert "api1" not in [d.id for d in await store.devices("wh-a")]
    assert await store.api_device_specs() == []


# --- the config file's fleet --------------------------------------------------------------


async def test_sync_fleet_keeps_what_it_did_not_declare_and_takes_over_what_it_does(
    store: Store,
) -> None:
    await store.record_seen("cfg1", T0, users=3)
    await store.register_devices([_spec("api2", "SER-A2", "10.0.0.7", site="of-b")], T0)
    # of-b is dropped, but api2 stands there; cfg3 is dropped; api1 is declared now
    api1 = DeviceState("api1", "SER-A1", "wh-a", "gate-1.example.com", 4370, "tcp",
                       name="declared")
    await store.sync_fleet(SITES[:1], [*CONFIG[:2], api1])
    assert [(s.id, s.name) for s in await store.sites()] == [("of-b", "Office B"),
                                                              ("wh-a", "Warehouse A")]
    devices = {d.id: d for d in await store.devices()}
    assert sorted(devices) == ["api1", "api2", "cfg1", "cfg2"]
    assert (devices["api1"].origin, devices["api1"].name) == ("config", "declared")
    assert devices["cfg1"].users == 3 and devices["cfg1"].last_seen == T0  # learnt: kept
    assert [s.id for s in await store.api_device_specs()] == ["api2"]
    removed = await store.device("cfg3")
    assert removed is not None and await store.device("cfg3", removed=False) is None
    # an API device of the config's id is the config's now: the API may not change it
    assert (await _refused(store, store.remove_api_device("api1", T0)))[:3] == (
        OWNED, "id", None)
    await store.sync_fleet(SITES, CONFIG)  # back as it was: of-b is the config's again
    assert [s.id for s in await store.sites()] == ["of-b", "wh-a"]
    assert "cfg3" in [d.id for d in await store.devices("of-b")]


# --- two processes at once ------------------------------------------------------------------


async def test_two_processes_registering_one_serial_or_id_at_once_one_wins(
    store: Store, db_target: str,
) -> None:
    other = await open_store(db_target)
    try:
        for first, second, field in [
            (_spec("x1", "SER-X", "10.0.1.1"), _spec("x2", "SER-X", "10.0.1.2"),
             "serial_number"),
            (_spec("y1", "SER-Y1", "10.0.2.1"), _spec("y1", "SER-Y2", "10.0.2.2"), "id"),
            (_spec("z1", "SER-Z1", "10.0.3.1"), _spec("z2", "SER-Z2", "10.0.3.1"), "host"),
        ]:
            results = await asyncio.gather(store.register_devices([first], T0),
                                           other.register_devices([second], T0),
                                           return_exceptions=True)
            refused = [r for r in results if isinstance(r, FleetConflict)]
            won = [r for r in results if isinstance(r, list)]
            assert len(won) == 1 and [_why(r) for r in refused] == [(TAKEN, field, None)]
        ids = [d.id for d in await other.devices()]
        assert len([i for i in ids if i[0] in "xyz"]) == 3
    finally:
        await other.close()


async def test_config_syncs_and_liveness_batches_of_two_processes_never_deadlock(
    db_target: str,
) -> None:
    """Each locks the device rows it changes in id order, so neither holds a row the other
    waits for while waiting on one it holds, whatever order a batch names its devices in
    (without it, PostgreSQL aborts one of these every time)."""
    sites = [Site("s", "S", "UTC")]
    fleet = [DeviceState(f"d{i:03d}", f"S{i}", "s", f"10.0.{i // 250}.{i % 250}", 4370, "tcp")
             for i in range(200)]
    first, second = await open_store(db_target), await open_store(db_target)
    try:
        await first.sync_fleet(sites, fleet)
        shuffle = random.Random(7).shuffle
        for round_ in range(5):
            at = T0 + timedelta(seconds=round_)
            batches = [[Liveness(d.id, at, users=round_) for d in fleet] for _ in range(3)]
            for batch in batches:
                shuffle(batch)
            await asyncio.wait_for(asyncio.gather(
                first.sync_fleet(sites, fleet), second.record_seen_many(batches[0]),
                first.record_seen_many(batches[1]), second.sync_fleet(sites, fleet[::-1]),
                second.record_seen_many(batches[2])), 60)
        assert {(d.last_seen, d.users) for d in await second.devices()} == {
            (T0 + timedelta(seconds=4), 4)}
    finally:
        await first.close()
        await second.close()


async def test_a_config_sync_and_a_registration_at_once_never_leave_a_device_nowhere(
    store: Store, db_target: str,
) -> None:
    """A sync that drops a site and a registration at that site, from two processes: one
    goes first, whole (the site is kept for the device, or the device refused), and no
    live device ever stands at a removed site."""
    other = await open_store(db_target)
    try:
        for n in range(6):
            spec = _spec(f"r{n}", f"SER-R{n}", f"10.0.4.{n}", site="of-b")
            results = await asyncio.gather(
                store.sync_fleet(SITES[:1], CONFIG[:2]), other.register_devices([spec], T0),
                return_exceptions=True)
            refused = [r for r in results if isinstance(r, FleetConflict)]
            assert [_why(r) for r in refused] in ([], [(BAD, "site", None)]), results
            live_sites = {s.id for s in await other.sites()}
            assert {d.site_id for d in await other.devices()} <= live_sites
            assert ("of-b" in live_sites) == (not refused)
            if not refused:
                await other.remove_api_device(spec.id, T0)
            await store.sync_fleet(SITES, CONFIG)
    finally:
        await other.close()


# --- health -------------------------------------------------------------------------------


async def test_a_transition_writes_row_history_event_and_webhook_fact_together(
    store: Store, db_target: str,
) -> None:
    online = await store.record_status(StatusChange("cfg1", DeviceStatus.ONLINE, "", T0))
    await store.record_seen("cfg1", T0 + timedelta(seconds=30))
    later = T0 + timedelta(minutes=5)
    error = await store.record_status(StatusChange("cfg1", DeviceStatus.ERROR, "bad key",
                                                   later, DeviceStatus.ONLINE))
    await store.record_status(StatusChange("cfg1", DeviceStatus.UNKNOWN, "", later))
    assert (online.kind, online.message, online.site_id, online.data) == (
        "device.online", "cfg1 online", "wh-a", {"status": "online", "reason": ""})
    assert (error.kind, error.message, error.data) == (
        "device.error", "cfg1 error: bad key",
        {"status": "error", "reason": "bad key", "previous": "online"})
    # the same bytes from every backend; nothing is told of "unknown"
    device = {"id": "cfg1", "serial_number": "SER1", "site": "wh-a"}
    assert await _outbox(db_target) == [
        json.dumps({"event": "device.online", "device": {**device, "last_seen": None},
                    "timestamp": "2026-03-28T08:00:00.000000Z"}),
        json.dumps({"event": "device.offline",
                    "device": {**device, "last_seen": "2026-03-28T08:00:30.000000Z",
                               "reason": "bad key"},
                    "timestamp": "2026-03-28T08:05:00.000000Z"}),
    ]
    dev = await store.device("cfg1")
    assert dev is not None and (dev.status, dev.status_since) == (DeviceStatus.UNKNOWN, later)
    history = await store.status_history("cfg1", since=later)
    assert [c.status for c in history] == [DeviceStatus.ONLINE, DeviceStatus.ERROR,
                                           DeviceStatus.UNKNOWN]  # the one in force, then
    assert [c.status for c in await store.status_history("cfg1", since=later
                                                         + timedelta(seconds=1))] == [
        DeviceStatus.UNKNOWN]  # the one in force, the last of equal times
    assert await store.status_history("cfg2") == []


async def test_checks_identity_and_clock_update_the_device(store: Store) -> None:
    await store.record_seen("cfg1", T0, users=5, users_cap=100, records=40, records_cap=1000)
    await store.record_seen("cfg1", T0 + timedelta(seconds=1))  # counters not read: kept
    t2, t3 = T0 + timedelta(seconds=2), T0 + timedelta(seconds=3)
    await store.record_seen_many([Liveness("cfg1", t3, records=41), Liveness("cfg2", t2),
                                  Liveness("cfg1", t2, users=6)])  # in order, as given
    await store.record_seen_many([])
    await store.record_identity("cfg1", model="F18", firmware="Ver 6.60", platform="ZMM220",
                                mac="00:17:61:01:02:03")
    await store.record_clock("cfg1", -2.5, t3)
    a, b = await store.device("cfg1"), await store.device("cfg2")
    assert a is not None and b is not None
    assert (a.last_seen, a.users, a.users_cap, a.records, a.records_cap) == (
        t2, 6, 100, 41, 1000)
    assert (a.model, a.firmware, a.platform, a.mac) == (
        "F18", "Ver 6.60", "ZMM220", "00:17:61:01:02:03")
    assert (a.clock_drift_s, a.clock_checked_at) == (-2.5, t3)
    assert (b.last_seen, b.users) == (t2, None)


async def test_flap_states_are_remembered_the_last_given_counting(store: Store) -> None:
    assert await store.flap_states() == {}
    await store.save_flap_states([FlapState("cfg1", "1010", True, 42.5),
                                  FlapState("cfg2", "1", False, 0.0)], T0)
    await store.save_flap_states([FlapState("cfg1", "10", False, 5.0),
                                  FlapState("cfg1", "101", True, 30.0)], T0)
    await store.save_flap_states([], T0)
    assert await store.flap_states() == {"cfg1": FlapState("cfg1", "101", True, 30.0),
                                         "cfg2": FlapState("cfg2", "1", False, 0.0)}


# --- panels ---------------------------------------------------------------------------------


def _punch(device: str, utc: datetime, user: str = "1001") -> Punch:
    """A punch made at ``utc`` on a clock an hour ahead."""
    local = utc.replace(tzinfo=None) + timedelta(hours=1)
    return Punch(device, user, local, "Africa/Casablanca", utc, TzFlag.OK, 0, 1, "sync", utc)


async def test_panel_queries_count_and_gather_what_a_site_shows(store: Store) -> None:
    base = T0 + timedelta(seconds=5)
    await store.insert_punches("cfg1", [_punch("cfg1", base + timedelta(seconds=s), str(s))
                                        for s in (0, 10, 70)])
    await store.insert_punches("cfg3", [_punch("cfg3", base),
                                        _punch("cfg3", base - timedelta(days=1))])
    end = T0 + timedelta(hours=1)
    minute = T0 + timedelta(minutes=1)
    assert await store.punches_per_minute(T0, end, device_id="cfg1") == {T0: 2, minute: 1}
    assert await store.punches_per_minute(T0, end, site_id="of-b") == {T0: 1}
    assert await store.punches_per_minute(T0, end) == {T0: 3, minute: 1}
    assert await store.punches_per_minute(end, end + timedelta(hours=1)) == {}
    assert await store.punches_per_device(T0, end) == {"cfg1": 3, "cfg3": 1}
    assert await store.punches_per_device(T0 - timedelta(days=2), T0) == {"cfg3": 1}
    assert await store.punches_per_device(end, end + timedelta(hours=1)) == {}

    for device, status, ago in [("cfg1", DeviceStatus.ONLINE, timedelta(days=3)),
                                ("cfg1", DeviceStatus.OFFLINE, timedelta(hours=1)),
                                ("cfg2", DeviceStatus.ONLINE, timedelta(hours=2)),
                                ("cfg3", DeviceStatus.ONLINE, timedelta(hours=5))]:
        await store.record_status(StatusChange(device, status, "", T0 - ago))
    histories = await store.site_status_history("wh-a", T0 - timedelta(hours=24))
    assert {d: [c.status for c in h] for d, h in histories.items()} == {
        "cfg1": [DeviceStatus.ONLINE, DeviceStatus.OFFLINE], "cfg2": [DeviceStatus.ONLINE]}
    assert histories["cfg1"][0].at == T0 - timedelta(days=3)

    async def submit(target: str, kind: str, devices: list[str], command: str) -> int:
        submission = await store.submit_command(
            target=target, target_kind=kind, device_ids=devices, command=command, params={},
            fingerprint=command, source="test", now=T0)
        return submission.request.id

    older = await submit("wh-a", "site", ["cfg1", "cfg2"], "restart")
    await submit("cfg1", "device", ["cfg1"], "sync_time")
    newer = await submit("wh-a", "site", ["cfg1", "cfg2"], "sync_time")
    requests = await store.site_requests("wh-a")
    assert [(r.id, len(r.commands)) for r in requests] == [(newer, 2), (older, 2)]
    assert [c.device_id for c in requests[0].commands] == ["cfg1", "cfg2"]
    assert [r.id for r in await store.site_requests("wh-a", limit=1)] == [newer]
    assert await store.site_requests("of-b") == []
    in_flight = await store.site_commands_in_flight("wh-a")
    assert [(c.device_id, c.command) for c in in_flight] == [
        ("cfg1", "restart"), ("cfg2", "restart"), ("cfg1", "sync_time"),
        ("cfg1", "sync_time"), ("cfg2", "sync_time")]
    assert len(await store.site_commands_in_flight("wh-a", limit=2)) == 2
    assert await store.site_commands_in_flight("of-b") == []
