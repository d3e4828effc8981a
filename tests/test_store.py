"""The store against a real SQLite file and a real PostgreSQL server: schema, fleet, status
history, punches, events. Tests taking ``store`` run once per backend; those that open a
file of their own are about SQLite's writer and reader."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleettui.domain import DeviceState, DeviceStatus, Punch, Site, StatusChange, TzFlag
from fleettui.store import Store, open_store
from fleettui.store.schema import MIGRATIONS

T0 = datetime(2026, 3, 28, 8, 0, tzinfo=UTC)


def _fleet() -> tuple[list[Site], list[DeviceState]]:
    sites = [Site("wh-a", "Warehouse A", "Africa/Casablanca"), Site("of-b", "Office B", "UTC")]
    devices = [
        DeviceState("dev_a1", "SER1", "wh-a", "127.0.0.2", 4370, "tcp"),
        DeviceState("dev_a2", "SER2", "wh-a", "127.0.0.3", 4370, "udp"),
        DeviceState("dev_b1", "SER3", "of-b", "127.0.0.4", 4370, "tcp"),
    ]
    return sites, devices


def _punch(user: str, minute: int, *, device: str = "dev_a1", source: str = "sync") -> Punch:
    local = datetime(2026, 3, 28, 8, minute)
    utc = local.replace(tzinfo=UTC) - timedelta(hours=1)
    return Punch(device, user, local, "Africa/Casablanca", utc, TzFlag.OK, 0, 1, source, T0)


@pytest.fixture
async def store(db_target: str) -> Store:
    """A store with the fleet of ``_fleet``, on each backend in turn."""
    s = await open_store(db_target)
    await s.sync_fleet(*_fleet())
    yield s  # type: ignore[misc]
    await s.close()


async def test_new_database_is_private_migrated_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    s = await open_store(path)
    assert await s.schema_version() == len(MIGRATIONS)
    await s.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s = await open_store(path)  # reopening runs no migration twice
    assert await s.schema_version() == len(MIGRATIONS)
    await s.close()


async def test_fleet_sync_keeps_what_the_poller_learned(store: Store) -> None:
    await store.record_status(StatusChange("dev_a1", DeviceStatus.ONLINE, "", T0))
    sites, devices = _fleet()
    devices[0] = DeviceState("dev_a1", "SER1", "wh-a", "127.0.0.9", 4370, "tcp")
    await store.sync_fleet(sites, devices[:2])  # dev_b1 left the config
    ids = [d.id for d in await store.devices()]
    assert ids == ["dev_a1", "dev_a2"]
    a1 = await store.device("dev_a1")
    assert a1 is not None and a1.host == "127.0.0.9" and a1.status is DeviceStatus.ONLINE
    assert [d.id for d in await store.devices("wh-a")] == ["dev_a1", "dev_a2"]


async def test_status_changes_write_history_and_events_in_order(store: Store) -> None:
    e1 = await store.record_status(StatusChange("dev_a1", DeviceStatus.ONLINE, "", T0))
    e2 = await store.record_status(
        StatusChange("dev_a1", DeviceStatus.OFFLINE, "no answer (timed out)",
                     T0 + timedelta(minutes=5), DeviceStatus.ONLINE)
    )
    assert e2.id > e1.id
    assert (e2.kind, e2.site_id, e2.data["reason"]) == ("device.offline", "wh-a",
                                                       "no answer (timed out)")
    dev = await store.device("dev_a1")
    assert dev is not None
    assert (dev.status, dev.status_reason, dev.status_since) == (
        DeviceStatus.OFFLINE, "no answer (timed out)", T0 + timedelta(minutes=5)
    )
    tail = await store.events_after(e1.id)
    assert [e.id for e in tail] == [e2.id]
    assert [c.status for c in await store.status_history("dev_a1")] == [
        DeviceStatus.ONLINE, DeviceStatus.OFFLINE
    ]


async def test_uptime_is_the_online_share_of_the_known_window(store: Store) -> None:
    # online 08:00-14:00, offline 14:00-20:00, online 20:00-08:00 next day
    await store.record_status(StatusChange("dev_a1", DeviceStatus.ONLINE, "", T0))
    await store.record_status(StatusChange("dev_a1", DeviceStatus.OFFLINE, "x",
                                           T0 + timedelta(hours=6)))
    await store.record_status(StatusChange("dev_a1", DeviceStatus.ONLINE, "",
                                           T0 + timedelta(hours=12)))
    now = T0 + timedelta(hours=24)
    assert await store.uptime("dev_a1", timedelta(hours=24), now) == pytest.approx(18 / 24)
    # a window that starts while offline counts from the window start
    assert await store.uptime("dev_a1", timedelta(hours=15), now) == pytest.approx(12 / 15)
    # thirty days: only the known day counts
    assert await store.uptime("dev_a1", timedelta(days=30), now) == pytest.approx(18 / 24)
    assert await store.uptime("dev_b1", timedelta(hours=24), now) is None


async def test_punches_are_stored_once_with_their_outbox_rows(store: Store) -> None:
    first = [_punch("1001", 1), _punch("1002", 2)]
    assert await store.insert_punches("dev_a1", first, cursor=(2, "bb"), synced_at=T0) == 2
    again = [_punch("1001", 1), _punch("1002", 2), _punch("1003", 3)]
    assert await store.insert_punches("dev_a1", again) == 1
    assert await store.punch_count() == 3
    assert await store.outbox_count() == 3  # one per new punch, none for duplicates
    assert await store.sync_cursor("dev_a1") == (2, "bb")
    dev = await store.device("dev_a1")
    assert dev is not None and dev.last_punch_at == datetime(2026, 3, 28, 7, 3, tzinfo=UTC)
    # the same user at the same time on another device is another punch
    assert await store.insert_punches("dev_a2", [_punch("1001", 1, device="dev_a2")]) == 1


async def test_punch_query_filters_and_orders_by_utc(store: Store) -> None:
    await store.insert_punches("dev_a1", [_punch("1001", 9), _punch("1002", 2)])
    await store.insert_punches("dev_b1", [_punch("2001", 5, device="dev_b1")])
    assert [p.user_id for p in await store.punches()] == ["1002", "2001", "1001"]
    assert [p.user_id for p in await store.punches(site_id="of-b")] == ["2001"]
    since = datetime(2026, 3, 28, 7, 4, tzinfo=UTC)
    assert [p.user_id for p in await store.punches(since=since)] == ["2001", "1001"]
    p = (await store.punches(device_id="dev_a1", limit=1))[0]
    assert (p.local_time, p.timezone, p.tz_flag, p.source) == (
        datetime(2026, 3, 28, 8, 2), "Africa/Casablanca", TzFlag.OK, "sync"
    )


async def test_a_failed_transaction_leaves_nothing_behind(store: Store) -> None:
    bad = [_punch("1001", 1), _punch("1002", 2)]
    object.__setattr__(bad[1], "tz_flag", None)  # breaks the second row mid-transaction
    with pytest.raises(AttributeError):
        await store.insert_punches("dev_a1", bad, cursor=(2, "zz"))
    assert await store.punch_count() == 0
    assert await store.outbox_count() == 0
    assert await store.sync_cursor("dev_a1") == (0, "")


class _Abandoned(Exception):
    """A write transaction that gives up half-way."""


async def test_a_read_never_sees_a_transaction_that_is_rolled_back(tmp_path: Path) -> None:
    """Reads see what is committed, nothing else. With one shared connection, a read made
    while another coroutine's write transaction was open saw its rows; that transaction
    then rolled back, and the next committed event got the same id (events count from
    the last committed one), so the control room's tail, which had taken the phantom's id,
    skipped the real event."""
    store = await open_store(tmp_path / "fleet.db")
    try:
        seen: list[int] = []
        inside = threading.Event()
        proceed = threading.Event()

        def half_done_write(db: sqlite3.Connection) -> None:
            # a write transaction, stopped (in the writer's thread) between its insert and
            # its end, which is a rollback
            db.execute("INSERT INTO events (at, kind, message) VALUES (?, ?, ?)",
                       ("2026-01-01T00:00:00.000000Z", "sync", "never committed"))
            inside.set()
            if not proceed.wait(60):
                raise TimeoutError("the test never let the write go on")
            raise _Abandoned

        writer = asyncio.create_task(store._transaction(half_done_write))
        assert await asyncio.to_thread(inside.wait, 60)
        try:
            seen.extend(e.id for e in await store.events_after(0))  # the tail's read
            last = await store.last_event_id()
        finally:
            proceed.set()  # whatever was seen, the writer goes on (and rolls back)
        assert last == 0
        with pytest.raises(_Abandoned):
            await writer
        assert seen == []  # the uncommitted event was not seen

        real = await store.add_event("sync", "committed", at=datetime(2026, 1, 1, tzinfo=UTC))
        assert [e.id for e in await store.events_after(max(seen, default=0))] == [real.id]
    finally:
        await store.close()


async def test_a_write_cancelled_while_it_waits_to_begin_leaves_the_writer_usable(
    tmp_path: Path,
) -> None:
    """A write cancelled while its BEGIN waited (another process held the write lock: a
    viewer's command, a backup) used to leave that BEGIN to complete in aiosqlite's thread
    with nobody to end it, and every later write failed with "cannot start a transaction
    within a transaction" (seen at shutdown, in bench/webhooks.py, for every UDP device).
    Now the write is abandoned: whether it was still queued or already waiting on BEGIN
    when cancelled, it is never committed, and the next write works."""
    path = tmp_path / "fleet.db"
    store = await open_store(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process writing: our BEGIN must wait
        write = asyncio.create_task(
            store.add_event("sync", "cancelled", at=datetime(2026, 1, 1, tzinfo=UTC)))
        await asyncio.sleep(0)  # the task hands its transaction to the writer's thread
        write.cancel()
        other.execute("ROLLBACK")  # the lock is free: a BEGIN waiting in the thread goes on
        with pytest.raises(asyncio.CancelledError):
            await write
        event = await store.add_event("sync", "next", at=datetime(2026, 1, 1, tzinfo=UTC))
        assert [e.message for e in await store.events_after(0)] == ["next"]
        assert event.id == 1
    finally:
        other.close()
        await store.close()


async def test_a_write_cancelled_half_way_is_rolled_back_and_one_queued_never_runs(
    tmp_path: Path,
) -> None:
    """Cancelling the coroutine that waits on a write abandons it: the transaction under
    way in the writer's thread is rolled back, not committed behind its caller's back, and
    one still queued behind it never begins."""
    store = await open_store(tmp_path / "fleet.db")
    try:
        inside = threading.Event()
        proceed = threading.Event()

        def slow_write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO events (at, kind, message) VALUES (?, ?, ?)",
                       ("2026-01-01T00:00:00.000000Z", "sync", "abandoned half-way"))
            inside.set()
            if not proceed.wait(60):
                raise TimeoutError("the test never let the write go on")

        under_way = asyncio.create_task(store._transaction(slow_write))
        assert await asyncio.to_thread(inside.wait, 60)
        queued = asyncio.create_task(
            store.add_event("sync", "queued", at=datetime(2026, 1, 1, tzinfo=UTC)))
        await asyncio.sleep(0)  # handed to the thread, behind the one under way
        under_way.cancel()
        queued.cancel()
        proceed.set()
        for task in (under_way, queued):
            with pytest.raises(asyncio.CancelledError):
                await task
        event = await store.add_event("sync", "next", at=datetime(2026, 1, 1, tzinfo=UTC))
        assert [e.message for e in await store.events_after(0)] == ["next"]
        assert event.id == 1
    finally:
        await store.close()


async def test_the_read_connection_refuses_writes(tmp_path: Path) -> None:
    """Every write goes through a transaction of the writer; one sent to the read
    connection is a bug, and SQLite refuses it (query_only)."""
    store = await open_store(tmp_path / "fleet.db")
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await store._db.execute("DELETE FROM events")
    finally:
        await store.close()


async def test_a_postgres_database_is_migrated_once_by_two_stores_opening_it_together(
    pg_url: str,
) -> None:
    from fleettui.store.postgres.schema import MIGRATIONS as PG_MIGRATIONS

    first, second = await asyncio.gather(open_store(pg_url), open_store(pg_url))
    try:
        assert await first.schema_version() == len(PG_MIGRATIONS)
        assert await second.schema_version() == len(PG_MIGRATIONS)
        event = await first.add_event("sync", "from the first", at=T0)
        assert [e.message for e in await second.events_after(0)] == ["from the first"]
        assert (await second.events_after(0))[0].at == T0 and event.id == 1
    finally:
        await first.close()
        await second.close()
