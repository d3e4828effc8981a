"""What is PostgreSQL's own in the store: its address (never shown with a password), its
monthly punch partitions and ids in commit order across processes.

Against a real server (``pg_server`` in conftest.py); the behaviour both backends
share is tested once for both, in the parametrised store tests.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from fleettui.config import parse_config, resolve_db_path
from fleettui.domain import Punch, TzFlag
from fleettui.store import DatabaseUrl, open_store
from fleettui.store.where import display_url, store_target

T0 = datetime(2026, 3, 28, 8, 0, tzinfo=UTC)


def _punch(user: str, local: datetime) -> Punch:
    return Punch("dev_a1", user, local, "UTC", local.replace(tzinfo=UTC), TzFlag.OK, 0, 1,
                 "sync", T0)


def test_an_address_is_never_shown_with_its_password() -> None:
    url = "postgresql://fleet:s3cret@db.example:5433/fleettui?sslmode=require"
    assert display_url(url) == "postgresql://fleet:***@db.example:5433/fleettui?sslmode=require"
    target = store_target(f"  {url} ")
    assert isinstance(target, DatabaseUrl) and target.url == url
    assert "s3cret" not in str(target) and "s3cret" not in repr(target)
    assert display_url("postgresql://fleet@db/x") == "postgresql://fleet@db/x"
    assert store_target("fleet.db") == Path("fleet.db")


def test_every_way_of_naming_the_database_takes_an_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "postgresql://fleet:pw@10.0.0.5/fleettui"
    config = parse_config(f'[paths]\ndb = "{url}"\n', tmp_path / "fleettui.toml")
    assert config.paths.db == DatabaseUrl(url)
    monkeypatch.delenv("FLEETTUI_DB", raising=False)
    assert resolve_db_path(None, config) == DatabaseUrl(url)
    monkeypatch.setenv("FLEETTUI_DB", "postgres://other@h/db")
    assert resolve_db_path(None, config) == DatabaseUrl("postgres://other@h/db")
    assert resolve_db_path("postgresql://cli@h/db", config) == DatabaseUrl(
        "postgresql://cli@h/db")
    # a relative file still lives beside the config file
    monkeypatch.delenv("FLEETTUI_DB")
    local = parse_config('[paths]\ndb = "data/fleet.db"\n', tmp_path / "fleettui.toml")
    assert resolve_db_path(None, local) == tmp_path / "data" / "fleet.db"


async def test_an_unreachable_server_is_a_clear_error_without_the_password(
    pg_server: object,
) -> None:
    from tests.conftest import free_port, loopback

    host = loopback(254, 2)
    url = f"postgresql://fleet:hunter2@{host}:{free_port(host)}/nothing"
    with pytest.raises(ConnectionError) as caught:
        await open_store(url)
    assert "cannot open the database at postgresql://fleet:***@" in str(caught.value)
    assert "hunter2" not in str(caught.value)


async def test_punches_land_in_their_month_and_a_clock_in_2099_in_the_default(
    pg_url: str,
) -> None:
    store = await open_store(pg_url)
    try:
        punches = [_punch("1", datetime(2026, 3, 31, 23, 59)), _punch("2", datetime(2026, 4, 1)),
                   _punch("3", datetime(2099, 1, 1, 8))]
        assert await store.insert_punches("dev_a1", punches) == 3
        assert await store.insert_punches("dev_a1", punches) == 0  # the unique key holds
        conn = await asyncpg.connect(pg_url)
        try:
            rows = await conn.fetch("SELECT tableoid::regclass::text AS part, user_id"
                                    " FROM punches ORDER BY user_id")
        finally:
            await conn.close()
        assert [(r["part"], r["user_id"]) for r in rows] == [
            ("punches_y2026m03", "1"), ("punches_y2026m04", "2"), ("punches_other", "3")]
        assert [p.user_id for p in await store.punches()] == ["1", "2", "3"]
    finally:
        await store.close()


async def test_two_processes_appending_at_once_never_make_a_tail_skip_an_event(
    pg_url: str,
) -> None:
    """Ids come from a sequence, which alone hands them out in call order, not commit order:
    a tail that read id 12 before 11 committed would never see 11. The append lock makes
    the two orders one; a tail reading all along sees every event, in order."""
    writers = [await open_store(pg_url) for _ in range(3)]
    tail = await open_store(pg_url)
    try:
        async def write(store_no: int) -> None:
            for i in range(60):
                await writers[store_no].add_event("sync", f"{store_no}-{i}", at=T0)

        seen: list[int] = []
        done = asyncio.Event()

        async def follow() -> None:
            while True:
                finished = done.is_set()
                batch = await tail.events_after(seen[-1] if seen else 0)
                seen.extend(e.id for e in batch)
                if finished and not batch:
                    return
                await asyncio.sleep(0)

        follower = asyncio.create_task(follow())
        await asyncio.gather(*(write(n) for n in range(3)))
        done.set()
        await asyncio.wait_for(follower, 60)
        everything = [e.id for e in await tail.events_after(0, limit=10_000)]
        assert len(everything) == 180
        assert seen == everything
    finally:
        for s in (*writers, tail):
            await s.close()


async def test_punches_of_many_months_at_once_make_each_partition_once(pg_url: str) -> None:
    stores = [await open_store(pg_url) for _ in range(2)]
    try:
        start = datetime(2025, 1, 15, 9)
        months = [_punch(str(i), start + timedelta(days=31 * i)) for i in range(12)]
        counts = await asyncio.gather(stores[0].insert_punches("dev_a1", months),
                                      stores[1].insert_punches("dev_a1", months))
        assert sorted(counts) == [0, 12]
        assert await stores[0].punch_count() == 12
    finally:
        for s in stores:
            await s.close()


def _plan_nodes(plan: dict[str, object]) -> list[dict[str, object]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan."""
    nodes = [plan]
    for child in plan.get("Plans", []):  # type: ignore[union-attr]
        nodes.extend(_plan_nodes(child))  # type: ignore[arg-type]
    return nodes


async def test_a_sites_day_and_the_panels_counts_read_one_month_through_indexes(
    pg_url: str,
) -> None:
    """A year of a big fleet is hundreds of millions of punches: the export of one site's
    day reads only that month's partition, by index, and the panel's per-minute counts
    are answered from the index alone (an Index Only Scan: no table row is read)."""
    from fleettui.domain import DeviceState, Site
    from fleettui.store.postgres.punches import _PUNCH_COLUMNS, punch_query

    store = await open_store(pg_url)
    try:
        await store.sync_fleet(
            [Site("a", "A", "Europe/Paris"), Site("b", "B", "Asia/Kolkata")],
            [DeviceState("a1", "S1", "a", "10.0.0.1", 4370, "tcp"),
             DeviceState("a2", "S2", "a", "10.0.0.2", 4370, "tcp"),
             DeviceState("b1", "S3", "b", "10.0.0.3", 4370, "tcp")])
        for device in ("a1", "a2", "b1"):
            await store.insert_punches(device, [
                replace(_punch(str(i), datetime(2026, 1, 1, 8) + timedelta(hours=7 * i)),
                        device_id=device) for i in range(300)])  # January to March
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute("VACUUM ANALYZE punches")
            await conn.execute("SET enable_seqscan = off")  # the plan an index allows

            async def plan(columns: str, tail: str = "",
                           **query: object) -> list[dict[str, object]]:
                sql, args = punch_query(columns, **query)  # type: ignore[arg-type]
                found = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}{tail}", *args)
                return _plan_nodes(json.loads(found)[0]["Plan"])

            day = datetime(2026, 2, 10, tzinfo=UTC)
            export = await plan(_PUNCH_COLUMNS, since=day, until=day + timedelta(days=1),
                                site_id="a")
            read = {str(n["Relation Name"]) for n in export if "Relation Name" in n}
            assert read & {"punches_y2026m01", "punches_y2026m03", "punches_other"} == set()
            assert "punches_y2026m02" in read
            assert not [n for n in export if n["Node Type"] == "Seq Scan"
                        and str(n.get("Relation Name", "")).startswith("punches")]

            hour = datetime(2026, 3, 10, 7, tzinfo=UTC)
            counts = await plan("date_trunc('minute', utc_time) AS minute, count(*) AS n",
                                " GROUP BY minute", since=hour, until=hour + timedelta(hours=1),
                                device_id="a1")
            scans = [(n["Node Type"], n.get("Relation Name")) for n in counts
                     if str(n.get("Relation Name", "")).startswith("punches")]
            assert scans == [("Index Only Scan", "punches_y2026m03")], scans
            site = await plan("date_trunc('minute', utc_time) AS minute, count(*) AS n",
                              " GROUP BY minute", since=hour, until=hour + timedelta(hours=1),
                              site_id="a")
            scans = {(n["Node Type"], n.get("Relation Name")) for n in site
                     if str(n.get("Relation Name", "")).startswith("punches")}
            assert scans == {("Index Only Scan", "punches_y2026m03")}, scans
        finally:
            await conn.close()
    finally:
        await store.close()


async def test_a_view_is_woken_by_an_event_committed_in_another_process(pg_url: str) -> None:
    """A view waiting for events is told by NOTIFY at the writer's commit (nothing read
    over and over); an event rolled back tells nobody."""
    view, poller = await open_store(pg_url), await open_store(pg_url)
    try:
        assert await view.wait_for_events(0, 0.05) is False  # nothing yet: the time runs out
        waiting = asyncio.create_task(view.wait_for_events(0, 60))
        await asyncio.sleep(0)
        assert not waiting.done()
        event = await poller.add_event("sync", "from the poller", at=T0)
        assert await asyncio.wait_for(waiting, 60) is True
        assert [e.id for e in await view.events_after(0)] == [event.id]
        assert await view.wait_for_events(event.id, 0.05) is False

        from fleettui.store.postgres.connection import append_lock
        from fleettui.store.postgres.events import write_event

        async def rolled_back(db: object) -> None:
            await append_lock(db)  # type: ignore[arg-type]
            await write_event(db, T0, "sync", "never committed")  # type: ignore[arg-type]
            raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            await poller._transaction(rolled_back)  # type: ignore[attr-defined]
        assert await view.wait_for_events(event.id, 0.2) is False
    finally:
        await view.close()
        await poller.close()
