"""The device and site panels' pictures and progress, from pure functions to the Pilot.

Pure computations (heartbeat slots, uptime, the site's local day, punches per
local hour, progress text) are tested with injected times, including a site
whose day differs from UTC's and DST days. The store's panel queries run on a
real SQLite store in tmp_path. The Pilot tests drive the real app over a real
engine and emulated devices (helpers imported from ``tests.test_tui``); waits
are bounded polls of a condition.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console, RenderableType

from fleettui.config import parse_config
from fleettui.domain import (
    Command,
    CommandRequest,
    CommandState,
    DeviceState,
    DeviceStatus,
    Punch,
    Site,
    StatusChange,
    TzFlag,
)
from fleettui.emulator.device import Profile
from fleettui.engine.engine import Engine
from fleettui.engine.enqueue import enqueue
from fleettui.engine.sync import store_dump
from fleettui.store import Store, open_store
from fleettui.tui.app import FleetApp
from fleettui.tui.charts import (
    heartbeat,
    hourly,
    local_day,
    progress,
    recent,
    request_text,
    seen,
    site_heartbeat,
    sparkline,
    sync_text,
    sync_worth_showing,
    uptime,
)
from fleettui.tui.model import DeviceRow
from fleettui.tui.panel import DevicePanel, heartbeat_slots, render_detail
from fleettui.tui.panel_data import PanelReader
from fleettui.tui.site_panel import render_site
from tests.conftest import Emulated, device_config, sample_users
from tests.test_engine import fleet_toml
from tests.test_tui import LAYOUT, OFFLINE, two_site_toml, wait_for

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ON, OFF, ERR, UNK = (DeviceStatus.ONLINE, DeviceStatus.OFFLINE, DeviceStatus.ERROR,
                     DeviceStatus.UNKNOWN)


def change(status: DeviceStatus, at: datetime, device: str = "d1") -> StatusChange:
    """One transition."""
    return StatusChange(device, status, "", at)


def plain(renderable: RenderableType, width: int = 100) -> str:
    """What a renderable shows as text at ``width`` columns."""
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


# --- pure computations ---------------------------------------------------


def test_heartbeat_slots_take_the_dominant_status_and_unknown_before_history() -> None:
    now = T0
    history = [
        change(ON, now - timedelta(hours=6)),          # known only for the last 6 hours
        change(OFF, now - timedelta(hours=2, minutes=20)),  # 20 min off in the 2h30 slot...
        change(ON, now - timedelta(hours=2)),
        change(ERR, now - timedelta(minutes=45)),      # last 45 min: error
    ]
    slots = heartbeat(history, now, slots=48)
    assert len(slots) == 48
    assert slots[:36] == [UNK] * 36                    # 24h..6h ago: nothing known
    assert slots[36:43] == [ON] * 7                     # 6h..2.5h ago
    assert slots[43] == OFF                             # 09:30-10:00: 10 min on, 20 off
    assert slots[44:46] == [ON, ON]
    assert slots[46:] == [ERR, ERR]                     # 11:00-11:30 is a tie: the worse
    # a 50/50 slot goes to the worse status
    tie = [change(ON, now - timedelta(hours=1)), change(OFF, now - timedelta(minutes=15))]
    assert heartbeat(tie, now, window=timedelta(hours=1), slots=2) == [ON, OFF]
    assert heartbeat(tie, now, window=timedelta(minutes=30), slots=1) == [OFF]
    # an empty history is all unknown
    assert heartbeat([], now, slots=24) == [UNK] * 24


def test_heartbeat_slot_with_more_offline_than_online_is_offline() -> None:
    now = T0
    history = [change(ON, now - timedelta(hours=1)), change(OFF, now - timedelta(minutes=20))]
    assert heartbeat(history, now, window=timedelta(hours=1), slots=2) == [ON, OFF]
    assert heartbeat(history, now, window=timedelta(hours=1), slots=1) == [ON]  # 40 vs 20


def test_uptime_counts_known_time_only() -> None:
    now = T0
    history = [change(UNK, now - timedelta(hours=30)), change(ON, now - timedelta(hours=10)),
               change(OFF, now - timedelta(hours=1))]
    assert uptime(history, now - timedelta(hours=24), now) == pytest.approx(9 / 10)
    assert uptime([], now - timedelta(hours=24), now) is None
    assert seen(history, now - timedelta(hours=24), now) == 10 * 3600
    assert seen([], now - timedelta(hours=24), now) == 0


def test_uptime_over_less_history_than_its_window_says_how_much_was_seen() -> None:
    from fleettui.tui.pictures import heartbeat_text, uptime_text

    day, month = 86400.0, 30 * 86400.0
    # a device first seen 21 s ago: one figure, over what was seen (not "100% 24h, 30d")
    assert uptime_text(1.0, 1.0, day_seen_s=21, month_seen_s=21) == "100.0% over the 21s seen"
    assert uptime_text(0.992, 0.992, day_seen_s=3 * 3600, month_seen_s=3 * 3600) == \
        "99.2% over the 3h seen"
    assert uptime_text(0.999, 0.97, day_seen_s=day, month_seen_s=3 * day) == \
        "99.9% 24h · 97.0% over the 3d seen"
    assert uptime_text(0.999, 0.97, day_seen_s=day, month_seen_s=month) == "99.9% 24h · 97.0% 30d"
    assert uptime_text(None, None, day_seen_s=0, month_seen_s=0) == "unknown 24h · unknown 30d"
    # a slot with nothing known is hatched, not a block of colour
    assert heartbeat_text([UNK, UNK, ON, OFF]).plain == "░░██"


def test_site_heartbeat_combines_devices() -> None:
    assert site_heartbeat([[ON, ON, OFF, UNK], [ON, OFF, OFF, UNK]]) == [
        "ok", "partial", "down", "unknown"]
    assert site_heartbeat([[ON, UNK]]) == ["ok", "unknown"]


def test_local_day_when_the_site_is_already_tomorrow_or_still_yesterday() -> None:
    now = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    today, start, end = local_day(now, ZoneInfo("Pacific/Auckland"))  # UTC+13 in November
    assert str(today) == "2026-11-26"
    assert (start, end) == (datetime(2026, 11, 25, 11, 0, tzinfo=UTC),
                            datetime(2026, 11, 26, 11, 0, tzinfo=UTC))
    today, start, _ = local_day(datetime(2026, 11, 25, 3, 0, tzinfo=UTC),
                                ZoneInfo("America/Los_Angeles"))
    assert str(today) == "2026-11-24" and start == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def test_hourly_counts_by_the_sites_local_hours() -> None:
    zone = ZoneInfo("Pacific/Auckland")
    now = datetime(2026, 11, 25, 20, 30, tzinfo=UTC)  # 09:30 on the 26th in Auckland
    minutes = {
        datetime(2026, 11, 25, 10, 59, tzinfo=UTC): 5,  # 23:59 on the 25th: yesterday there
        datetime(2026, 11, 25, 11, 0, tzinfo=UTC): 2,   # 00:00 local
        datetime(2026, 11, 25, 19, 10, tzinfo=UTC): 3,  # 08:10 local
        datetime(2026, 11, 25, 20, 20, tzinfo=UTC): 4,  # 09:20 local
    }
    hours = hourly(minutes, zone, now)
    assert len(hours) == 24 and [h.label for h in hours[:3]] == ["00", "01", "02"]
    assert sum(h.count for h in hours) == 9
    assert (hours[0].count, hours[8].count, hours[9].count) == (2, 3, 4)
    assert [h.future for h in hours].index(True) == 10  # 10:00 onwards is still to come


def test_hourly_on_dst_days_has_23_or_25_hours() -> None:
    paris = ZoneInfo("Europe/Paris")
    spring = hourly({datetime(2026, 3, 29, 1, 30, tzinfo=UTC): 7}, paris,
                    datetime(2026, 3, 29, 20, 0, tzinfo=UTC))
    assert len(spring) == 23
    assert "02" not in [h.label for h in spring]  # 02:00-03:00 does not exist that night
    assert [h.label for h in spring][:3] == ["00", "01", "03"]
    assert spring[2].count == 7  # 01:30 UTC is 03:30 CEST
    autumn = hourly({datetime(2026, 10, 25, 0, 30, tzinfo=UTC): 1,
                     datetime(2026, 10, 25, 1, 30, tzinfo=UTC): 2}, paris,
                    datetime(2026, 10, 25, 21, 0, tzinfo=UTC))
    assert len(autumn) == 25
    assert [h.label for h in autumn][:4] == ["00", "01", "02", "02"]  # 02:xx twice
    assert (autumn[2].count, autumn[3].count) == (1, 2)


def test_sparkline_scales_to_the_peak() -> None:
    assert sparkline([0, 1, 4, 8]) == " ▁▄█"
    assert sparkline([0, 0]) == "  "
    assert sparkline([]) == ""


def _cmd(i: int, state: CommandState) -> Command:
    return Command(i, 1, f"d{i}", "restart", {}, state, 0, T0, T0)


def test_progress_text_of_a_site_request() -> None:
    request = CommandRequest(1, "s", "site", "restart", {}, "tui", T0, commands=[
        _cmd(1, CommandState.DONE), _cmd(2, CommandState.DONE), _cmd(3, CommandState.DONE),
        _cmd(4, CommandState.QUEUED)])
    assert request_text(request) == "Restart 3/4 done · 1 queued"
    p = progress(request.commands)
    assert (p.finished, p.fraction) == (False, 0.75)
    employees = [{"user_id": str(i)} for i in range(120)]
    sync = CommandRequest(2, "s", "site", "sync_employees", {"employees": employees}, "tui", T0,
                          commands=[_cmd(1, CommandState.DONE), _cmd(2, CommandState.FAILED),
                                    _cmd(3, CommandState.SENT)])
    assert request_text(sync) == "Sync employees (120 people) 1/3 done · 1 failed · 1 running"
    assert sync_text(35_000, 100_000) == "syncing 35,000/100,000 records"
    assert sync_text(0, None) == "reading the attendance log…"
    assert sync_text(0, None, 100_000) == "reading 100,000 records from the device…"
    # long work only: a first sync of a big log, not the few records of a routine sync
    assert sync_worth_showing(None, 100_000, 0) and sync_worth_showing(20_000, 20_000, 0)
    assert not sync_worth_showing(None, 100_005, 100_000)
    assert not sync_worth_showing(5, 100_005, 100_000)
    # finished requests leave "work in progress" an hour after their last command ended
    assert recent(request, T0 + timedelta(days=1), timedelta(hours=1))  # unfinished
    assert recent(sync, T0 + timedelta(minutes=59), timedelta(hours=1)) is True
    sync.commands[2].state = CommandState.DONE
    assert recent(sync, T0 + timedelta(minutes=61), timedelta(hours=1)) is False
    assert heartbeat_slots(100) == 96 and heartbeat_slots(60) == 48 and heartbeat_slots(30) == 24


# --- store queries and the reader ----------------------------------------


def _punch(device: str, utc: datetime, user: str = "1") -> Punch:
    local = utc.replace(tzinfo=None)
    return Punch(device, user, local, "UTC", utc, TzFlag.OK, 0, 1, "sync", utc)


@pytest.fixture
async def store(db_target: str) -> AsyncIterator[Store]:
    """A store with two sites: s1 (d1, d2) in Auckland and s2 (d3) in UTC (on each
    backend)."""
    s = await open_store(db_target)
    await s.sync_fleet(
        [Site("s1", "One", "Pacific/Auckland"), Site("s2", "Two", "UTC")],
        [DeviceState("d1", "S1", "s1", "h", 1, "tcp"), DeviceState("d2", "S2", "s1", "h", 2, "tcp"),
         DeviceState("d3", "S3", "s2", "h", 3, "tcp")],
    )
    try:
        yield s
    finally:
        await s.close()


async def test_punches_per_minute_by_device_and_site(store: Store) -> None:
    base = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    await store.insert_punches("d1", [_punch("d1", base + timedelta(seconds=s), str(s))
                                      for s in (0, 10, 70)])
    await store.insert_punches("d2", [_punch("d2", base + timedelta(seconds=5))])
    await store.insert_punches("d3", [_punch("d3", base + timedelta(seconds=5)),
                                      _punch("d3", base - timedelta(days=1))])
    end = base + timedelta(hours=1)
    assert await store.punches_per_minute(base, end, device_id="d1") == {
        base: 2, base + timedelta(minutes=1): 1}
    assert await store.punches_per_minute(base, end, site_id="s1") == {
        base: 3, base + timedelta(minutes=1): 1}
    assert await store.punches_per_minute(base, end) == {base: 4, base + timedelta(minutes=1): 1}
    assert await store.punches_per_minute(end, end + timedelta(hours=1)) == {}


async def test_panel_queries_use_indexes_not_scans(tmp_path: Path) -> None:
    """The per-second queries search indexes (a plan that scans punches would be a bug).
    SQLite's plan, asked of SQLite itself; PostgreSQL's: tests/test_postgres.py."""
    store = await open_store(tmp_path / "plans.db")
    db = store._db
    day = datetime(2026, 3, 2, tzinfo=UTC).isoformat()
    plan = " ".join(r[3] for r in await db.execute_fetchall(
        "EXPLAIN QUERY PLAN SELECT substr(utc_time, 1, 16) AS minute, COUNT(*) FROM punches"
        " WHERE utc_time >= ? AND utc_time < ? AND +device_id = ? GROUP BY minute",
        (day, day, "d1")))
    await store.close()
    assert "USING INDEX punches_utc" in plan and "SCAN punches" not in plan


async def test_site_history_requests_and_commands_in_flight(store: Store) -> None:
    now = T0
    changes = [("d1", ON, timedelta(days=3)), ("d1", OFF, timedelta(hours=1)),
               ("d2", ON, timedelta(hours=2)), ("d3", ON, timedelta(hours=5))]
    for dev, status, ago in changes:
        await store.record_status(StatusChange(dev, status, "", now - ago))
    histories = await store.site_status_history("s1", now - timedelta(hours=24))
    assert [c.status for c in histories["d1"]] == [ON, OFF]  # the one in force, then the change
    assert [c.status for c in histories["d2"]] == [ON]
    assert "d3" not in histories
    request, _ = await enqueue(store, "s1", "restart", None, now=now, source="test")
    await enqueue(store, "d1", "sync_time", None, now=now, source="test")
    (latest,) = await store.site_requests("s1")
    assert latest.id == request.id and len(latest.commands) == 2
    assert await store.site_requests("s2") == []
    in_flight = await store.site_commands_in_flight("s1")
    assert sorted((c.device_id, c.command) for c in in_flight) == [
        ("d1", "restart"), ("d1", "sync_time"), ("d2", "restart")]
    await store.start_command(in_flight[0].id, now)
    await store.finish_command(in_flight[0], CommandState.DONE, now, result={})
    assert len(await store.site_commands_in_flight("s1")) == 2


async def test_the_site_panel_names_the_poller_of_a_shared_database(store: Store) -> None:
    """Alone on its database a poller names nobody; sharing one, the panel says which
    poller polls the site, or that nobody does while its lease is taken over."""
    from fleettui.domain import PollerInfo

    now = datetime(2026, 11, 25, 20, 30, tzinfo=UTC)
    reader = PanelReader(store)
    one = Site("s1", "One", "Pacific/Auckland")
    rows = [DeviceRow(d) for d in await store.devices("s1")]
    assert (await reader.site(one, rows, now, slots=24)).polled_by == ""
    poller = PollerInfo("box-b:812:ab12cd", 812, "box-b", "headless poller", now, now, now)
    await store.poller_alive(poller, now, timedelta(seconds=15))
    assert (await reader.site(one, rows, now, slots=24)).polled_by.startswith("nobody now")
    await store.claim_leases(poller.id, 1, now, timedelta(seconds=15))  # s1, in id order
    detail = await reader.site(one, rows, now, slots=24)
    assert detail.polled_by == "pid 812 on box-b (headless poller)"
    assert re.search(r"Polled by +pid 812 on box-b", plain(render_site(detail)))


async def test_reader_counts_punches_in_sql_only_when_they_change(store: Store) -> None:
    """Every-second refreshes reuse the day's counts until the device's newest punch moves."""
    now = datetime(2026, 11, 25, 20, 30, tzinfo=UTC)  # 09:30 on the 26th in Auckland
    await store.record_status(StatusChange("d1", ON, "", now - timedelta(hours=2)))
    await store.insert_punches("d1", [_punch("d1", now - timedelta(minutes=m), str(m))
                                      for m in (5, 50, 600, 700)])  # 2 today, 2 yesterday there
    reader = PanelReader(store, ttl_s=30)
    site = Site("s1", "One", "Pacific/Auckland")

    async def detail(at: datetime) -> Any:
        device = await store.device("d1")
        assert device is not None
        return await reader.device(device, site, None, at, slots=48)

    first = await detail(now)
    assert first.punches_today == 2 and reader.punch_queries == 1
    assert first.uptime_24h == 1.0 and first.uptime_30d == 1.0
    assert first.heartbeat[-4:] == [ON] * 4 and first.heartbeat[0] == UNK
    for s in range(1, 5):  # refreshes each second: no new punch, no new query
        assert (await detail(now + timedelta(seconds=s))).punches_today == 2
    assert reader.punch_queries == 1
    await store.insert_punches("d1", [_punch("d1", now + timedelta(seconds=4), "new")])
    assert (await detail(now + timedelta(seconds=5))).punches_today == 3
    assert reader.punch_queries == 2
    text = plain(render_detail(await detail(now + timedelta(seconds=6))))
    # online for the 2 h it is known: said over what was seen, not "100% 24h, 100% 30d"
    assert "Heartbeat" in text and "100.0% over the 2h seen" in text
    assert "3 on Thu 26 Nov" in text and "Per hour" in text


async def test_store_dump_reports_progress_per_batch(store: Store) -> None:
    from fleettui.devices.base import AttendanceDump
    from fleettui.domain import RawPunch

    records = [RawPunch(str(i % 7 + 1), datetime(2026, 3, 1, 8) + timedelta(seconds=i), 0, 1)
               for i in range(2_500)]
    dump = AttendanceDump(records=records, fingerprints=[str(i) for i in range(2_500)],
                          bad_records=0)
    seen: list[tuple[int, int]] = []
    result = await store_dump(store, "d3", ZoneInfo("UTC"), dump, now=T0, clock_drift_s=None,
                              batch=1_000, progress=lambda done, total: seen.append((done, total)))
    assert result.new == 2_500
    assert seen == [(0, 2_500), (1_000, 2_500), (2_000, 2_500), (2_500, 2_500)]


# --- the app, over emulated devices ----------------------------------------


@dataclass
class Running:
    """An app over an engine and emulated devices, and the emulator behind them."""

    app: FleetApp
    em: Emulated
    store: Store


@pytest.fixture
async def fleet(emulate: Callable[..., Emulated], tmp_path: Path) -> AsyncIterator[Running]:
    """The test_tui fleet (5 devices on 2 sites, one offline), 40 punches on dev_a_01."""
    configs = [device_config(d, profile=Profile(reboot_s=0.3)) for d in LAYOUT]
    em = emulate(configs, users={c.id: sample_users(3) for c in configs})
    em.emu.run(em.fleet.set_faults(OFFLINE, {"offline": True}))
    em.emu.call(em.fleet.generate_punches, "dev_a_01", 40)
    config = parse_config(two_site_toml(configs), tmp_path / "fleet.toml")
    store = await open_store(tmp_path / "fleet.db")
    try:
        yield Running(FleetApp(store, Engine(config, store), refresh_s=0.2), em, store)
    finally:
        await store.close()


def _panel(app: FleetApp) -> DevicePanel:
    return app.query_one("#panel", DevicePanel)


def _select(app: FleetApp, target: tuple[str, str]) -> None:
    app.jump(target)
    app.selected = target


async def _expected_today(store: Store, device: str, zone: str, now: datetime) -> int:
    _day, start, end = local_day(now, ZoneInfo(zone))
    return sum(1 for p in await store.punches(device_id=device) if start <= p.utc_time < end)


async def test_device_panel_shows_heartbeat_uptime_punches_today_and_sparkline(
    fleet: Running,
) -> None:
    app = fleet.app
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: "dev_a_01" in app.rows and app.rows["dev_a_01"]
                       .device.last_punch_at is not None, timeout=15)
        _select(app, ("device", "dev_a_01"))
        stored = await fleet.store.punch_count("dev_a_01")
        assert stored == 40

        def shown() -> bool:
            d = _panel(app).detail
            return (d is not None and d.device.id == "dev_a_01" and d.punches_today is not None
                    and d.device.last_punch_at is not None)

        await wait_for(pilot, shown)
        detail = _panel(app).detail
        assert detail is not None
        expected = await _expected_today(fleet.store, "dev_a_01", "Africa/Casablanca",
                                         detail.now)
        await wait_for(pilot, lambda: _panel(app).detail is not None
                       and _panel(app).detail.punches_today == expected)  # type: ignore[union-attr]
        detail = _panel(app).detail
        assert detail is not None
        assert len(detail.heartbeat) == heartbeat_slots(_panel(app).picture_width())
        assert detail.heartbeat[-1] == ON and detail.heartbeat[0] == UNK  # only minutes known
        assert detail.uptime_24h == 1.0 and detail.uptime_30d == 1.0
        assert sum(h.count for h in detail.hours) == expected
        assert len(detail.hours) in (23, 24, 25)
        text = plain(render_detail(detail), width=_panel(app).content_size.width)
        assert "Heartbeat" in text and "24h ago" in text and "now" in text
        assert re.search(r"100\.0% over the \d+s seen", text)  # seen for seconds only
        assert f"Punches today {expected} on " in text
        assert "Per hour" in text and "█" in text  # the busiest hour is a full block
        # the offline device's heartbeat ends red, its uptime is not 100%
        _select(app, ("device", OFFLINE))
        await wait_for(pilot, lambda: _panel(app).detail is not None
                       and _panel(app).detail.device.id == OFFLINE  # type: ignore[union-attr]
                       and _panel(app).detail.heartbeat[-1] == OFF)  # type: ignore[union-attr]


async def test_selecting_a_site_shows_the_site_panel_with_its_devices(fleet: Running) -> None:
    app = fleet.app
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: all(d in app.rows for d in LAYOUT)
                       and app.rows[OFFLINE].device.status == OFF, timeout=15)
        # select the site with the keyboard: the first node of the tree is site-a
        app.query_one("#tree").focus()
        await pilot.press("home")
        await wait_for(pilot, lambda: app.selected == ("site", "site-a"))
        await wait_for(pilot, lambda: _panel(app).site_detail is not None)
        site = _panel(app).site_detail
        assert site is not None and _panel(app).detail is None
        assert site.site.id == "site-a" and site.site.timezone == "Africa/Casablanca"
        assert sorted(r.id for r in site.devices) == ["dev_a_01", "dev_a_02", "dev_a_03"]
        assert site.devices[0].id == OFFLINE  # problems first
        assert site.online == 2
        assert _panel(app).border_title == "Site"
        text = plain(render_site(site), width=_panel(app).content_size.width)
        assert "Site A" in text and "(site-a)" in text and "local " in text
        assert "2/3 online · problems: dev_a_02" in text
        for device in ("dev_a_01", "dev_a_02", "dev_a_03"):
            assert device in text
        assert "Heartbeat" in text and "Per hour" in text and "Punches today" in text
        assert "nightly-clock: sync_time → site-a" in text
        await wait_for(pilot, lambda: _panel(app).site_detail is not None
                       and _panel(app).site_detail.punches_today  # type: ignore[union-attr]
                       is not None)


async def test_site_wide_restart_and_employee_sync_show_progress_counts_to_done(
    fleet: Running,
) -> None:
    app = fleet.app
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: all(d in app.rows for d in LAYOUT)
                       and app.rows[OFFLINE].device.status == OFF, timeout=15)
        _select(app, ("site", "site-a"))
        app.queue_command("site-a", "restart")

        def progress_line() -> str:
            site = _panel(app).site_detail
            if site is None or not site.requests:
                return ""
            return request_text(site.requests[0])

        # two online devices restart; the offline one waits, queued
        await wait_for(pilot, lambda: progress_line() == "Restart 2/3 done · 1 queued",
                       timeout=20)
        site = _panel(app).site_detail
        assert site is not None
        text = plain(render_site(site), width=_panel(app).content_size.width)
        assert "Restart 2/3 done · 1 queued" in text
        assert "In flight (1): Restart dev_a_02" in text
        # the device comes back: the request reaches 3/3 done
        fleet.em.emu.run(fleet.em.fleet.clear_faults(OFFLINE))
        await wait_for(pilot, lambda: progress_line() == "Restart 3/3 done", timeout=20)

        # an employee sync across site-b, counted the same way
        employees = {"employees": [{"user_id": str(2000 + i), "name": f"New {i}"}
                                   for i in range(5)]}
        await enqueue(app.store, "site-b", "sync_employees", employees, now=app.now(),
                      source="test")
        _select(app, ("site", "site-b"))
        await wait_for(pilot, lambda: progress_line().startswith("Sync employees (5 people)"))
        await wait_for(pilot, lambda: progress_line() == "Sync employees (5 people) 2/2 done",
                       timeout=20)


async def test_first_sync_of_20000_records_shows_progress_then_completes(
    emulate: Callable[..., Emulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = device_config("dev_big", profile=Profile(reboot_s=0.3))
    em = emulate([cfg], users={cfg.id: sample_users(5)})
    em.emu.call(em.fleet.generate_punches, cfg.id, 20_000)
    config = parse_config(fleet_toml([cfg], sync_batch=1000), tmp_path / "fleet.toml")
    store = await open_store(tmp_path / "big.db")
    # hold the sync after its first batch until the screen has shown it (a gate, not a mock:
    # the real insert runs)
    gate = asyncio.Event()
    real = store.insert_punches
    batches = 0

    async def gated(device_id: str, punches: Any, **kwargs: Any) -> int:
        nonlocal batches
        if device_id == cfg.id and len(punches) > 1:
            if batches == 1:
                await gate.wait()
            batches += 1
        return await real(device_id, punches, **kwargs)

    monkeypatch.setattr(store, "insert_punches", gated)
    try:
        app = FleetApp(store, Engine(config, store), refresh_s=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: cfg.id in app.rows)
            _select(app, ("device", cfg.id))

            def sync_shown() -> str:
                d = _panel(app).detail
                if d is None or d.sync is None:
                    return ""
                return sync_text(d.sync.done, d.sync.total)

            await wait_for(pilot, lambda: sync_shown() == "syncing 1,000/20,000 records",
                           timeout=30)
            detail = _panel(app).detail
            assert detail is not None
            assert "syncing 1,000/20,000 records" in plain(
                render_detail(detail), width=_panel(app).content_size.width)
            gate.set()
            await wait_for(pilot, lambda: _panel(app).detail is not None
                           and _panel(app).detail.sync is None  # type: ignore[union-attr]
                           and _panel(app).detail.device.synced_records == 20_000,  # type: ignore[union-attr]
                           timeout=30)
            assert await store.punch_count(cfg.id) == 20_000
    finally:
        gate.set()
        await store.close()


async def test_at_80x24_the_panel_draws_hourly_cells_and_scrolls_from_the_keyboard(
    fleet: Running,
) -> None:
    app = fleet.app
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "dev_a_01" in app.rows, timeout=15)
        _select(app, ("device", "dev_a_01"))
        panel = _panel(app)
        await wait_for(pilot, lambda: panel.detail is not None and bool(panel.detail.heartbeat))
        assert panel.detail is not None and len(panel.detail.heartbeat) == 24  # hours fit
        await wait_for(pilot, lambda: panel.max_scroll_y > 0)  # taller than the screen
        panel.focus()
        await pilot.press("end")  # (the content may grow a line meanwhile: a sync row)
        await wait_for(pilot, lambda: panel.scroll_y > 0)
        await pilot.press("home")
        await wait_for(pilot, lambda: panel.scroll_y == 0)


async def test_a_viewer_sees_another_pollers_long_sync_from_the_store(
    emulate: Callable[..., Emulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No engine to ask: the viewer counts the punches stored so far of those the device holds."""
    cfg = device_config("dev_big", profile=Profile(reboot_s=0.3))
    em = emulate([cfg], users={cfg.id: sample_users(5)})
    em.emu.call(em.fleet.generate_punches, cfg.id, 5_000)
    config = parse_config(fleet_toml([cfg], sync_batch=1000), tmp_path / "fleet.toml")
    owner = await open_store(tmp_path / "big.db")
    gate = asyncio.Event()
    real = owner.insert_punches
    batches = 0

    async def gated(device_id: str, punches: Any, **kwargs: Any) -> int:
        nonlocal batches
        if device_id == cfg.id and len(punches) > 1:
            if batches == 2:
                await gate.wait()
            batches += 1
        return await real(device_id, punches, **kwargs)

    monkeypatch.setattr(owner, "insert_punches", gated)
    engine = Engine(config, owner)
    await engine.start()
    viewer = await open_store(tmp_path / "big.db")
    try:
        app = FleetApp(viewer, refresh_s=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: cfg.id in app.rows)
            _select(app, ("device", cfg.id))

            def shown() -> str:
                d = _panel(app).detail
                return "" if d is None or d.sync is None else sync_text(d.sync.done, d.sync.total)

            await wait_for(pilot, lambda: shown() == "syncing 2,000/5,000 records", timeout=30)
            detail = _panel(app).detail
            assert detail is not None
            assert "syncing 2,000/5,000 records" in plain(render_detail(detail), width=100)
            gate.set()
            await wait_for(pilot, lambda: _panel(app).detail is not None
                           and _panel(app).detail.sync is None  # type: ignore[union-attr]
                           and _panel(app).detail.device.synced_records == 5_000,  # type: ignore[union-attr]
                           timeout=30)
    finally:
        gate.set()
        await engine.stop()
        await viewer.close()
        await owner.close()


def test_the_command_list_fits_the_panel_at_80_columns() -> None:
    """44 columns (the panel beside the tree at 80): each command on one line, what it
    returned on the next, wrapped, nothing cut."""
    from fleettui.domain import Command, CommandState, DeviceState, Site

    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    commands = [
        Command(1204, 7, "d1", "sync_employees", {}, CommandState.DONE, 1, now, now,
                result={"added": 12, "updated": 3, "removed": 0, "unchanged": 140}),
        Command(1203, 6, "d1", "restart", {}, CommandState.FAILED, 3, now, now,
                error="no answer after the reboot window (90 s)"),
        Command(1202, 5, "d1", "sync_time", {}, CommandState.QUEUED, 0, now, now),
    ]
    device = DeviceState("dev_warehouse_a_06", "S1", "s1", "127.0.0.2", 4370, "tcp")
    from fleettui.tui.panel import DeviceDetail

    text = plain(render_detail(DeviceDetail(device, Site("s1", "Site", "UTC"), now,
                                            commands=commands)), width=44)
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 44
    start = lines.index("Commands")
    listed = "\n".join(lines[start:start + 7])
    assert "09:00:00 sync_employees done    #1204" in listed
    assert "added=12, updated=3, removed=0" in listed and "unchanged=140" in listed
    assert "restart        failed  #1203" in listed
    assert "no answer after the reboot window (90 s)" in " ".join(listed.split())
