"""The fleet table: each column's order (pure logic), then the table on screen (Pilot)
over a real store this test fills: toggling with the tree, sorting from the keyboard
and by clicking a title, the filter and "problems only", marking devices and one bulk
restart for them through the palette and its single confirmation.

The app is a viewer of the store (no engine, no devices): what it queues stays
queued in the store, where the test reads it; the clock is frozen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from textual.pilot import Pilot

from fleettui.commands import CommandError
from fleettui.domain import (
    AlertKind,
    DeviceState,
    DeviceStatus,
    Punch,
    Site,
    StatusChange,
    TzFlag,
)
from fleettui.engine.enqueue import enqueue_devices
from fleettui.store import Store, open_store
from fleettui.tui.app import FleetApp
from fleettui.tui.fleet_table import FleetTable
from fleettui.tui.model import DeviceRow
from fleettui.tui.table_model import (
    COLUMNS,
    SortOrder,
    TableFacts,
    firmware_date,
    sort_rows,
)
from fleettui.tui.tree import SiteTree
from tests.test_tui import wait_for

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
SITES = [Site("hq", "Head Office", "Europe/Paris"), Site("farm", "Farm", "Africa/Nairobi"),
         Site("port", "Port", "Asia/Tokyo")]
#: device → (site, records in a 100,000 buffer, clock drift s, firmware)
FLEET = {
    "dev_hq_01": ("hq", 1_000, 1.0, "Ver 6.60 Apr 26 2016"),
    "dev_hq_02": ("hq", 96_000, 0.5, "Ver 6.60 Oct 8 2019"),  # nearly full
    "dev_hq_03": ("hq", 40_000, -2.0, "Ver 8.0.4 Jan 3 2021"),
    "dev_farm_01": ("farm", 5_000, 437.0, "Ver 6.60 Oct 8 2019"),  # clock 7 min fast
    "dev_farm_02": ("farm", 70_000, -30.0, "Ver 6.60 Oct 8 2019"),
    "dev_port_01": ("port", 20_000, 0.0, "Ver 6.60 Apr 26 2016"),  # offline
    "dev_port_02": ("port", 10_000, -150.0, "Ver 6.60 Oct 8 2019"),  # clock 2.5 min slow
}
COL = {c.key: n for n, c in enumerate(COLUMNS)}


async def _fill(store: Store) -> None:
    devices = [DeviceState(d, f"SN{n:04d}", site, f"127.0.3.{n + 1}", 4370, "tcp")
               for n, (d, (site, *_)) in enumerate(FLEET.items())]
    await store.sync_fleet(SITES, devices)
    for d, (_site, records, drift, firmware) in FLEET.items():
        await store.record_status(StatusChange(d, DeviceStatus.ONLINE, "",
                                               NOW - timedelta(hours=2)))
        await store.record_seen(d, NOW - timedelta(seconds=5), records=records,
                                records_cap=100_000)
        await store.record_identity(d, model="F18", firmware=firmware, platform="ZMM210",
                                    mac="00:17:61:00:00:01")
        await store.record_clock(d, drift, NOW - timedelta(minutes=1))
        await store.insert_punches(d, [], cursor=(records, "tail"),
                                   synced_at=NOW - timedelta(minutes=1))
    await store.record_status(StatusChange("dev_port_01", DeviceStatus.OFFLINE, "no answer",
                                           NOW - timedelta(minutes=20), DeviceStatus.ONLINE))
    await store.open_alert(target_kind="device", target="dev_port_01", site_id="port",
                           kind=AlertKind.OFFLINE, severity="critical", reason="no answer",
                           since=NOW - timedelta(minutes=20), now=NOW - timedelta(minutes=15),
                           notify=True)
    # three punches this morning at the farm (Nairobi: UTC+3, so 06:00 UTC is 09:00 there)
    morning = [NOW - timedelta(hours=3) + timedelta(minutes=m) for m in (0, 5, 9)]
    await store.insert_punches("dev_farm_02", [
        Punch("dev_farm_02", str(100 + i), (t + timedelta(hours=3)).replace(tzinfo=None),
              "Africa/Nairobi", t, TzFlag.OK, 0, 1, "sync", NOW) for i, t in enumerate(morning)
    ])


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store holding the fleet above."""
    s = await open_store(tmp_path / "fleet.db")
    await _fill(s)
    try:
        yield s
    finally:
        await s.close()


def _app(store: Store) -> FleetApp:
    return FleetApp(store, None, clock=lambda: NOW, refresh_s=0.2)


def _table(app: FleetApp) -> FleetTable:
    return app.query_one("#table", FleetTable)


def _ids(app: FleetApp) -> list[str]:
    return [r.id for r in _table(app).rows]


async def _open_table(pilot: Pilot[None], app: FleetApp) -> FleetTable:
    await wait_for(pilot, lambda: len(app.rows) == len(FLEET))
    await pilot.press("t")
    await wait_for(pilot, lambda: len(_table(app).rows) == len(FLEET))
    return _table(app)


# --- the columns' order (pure) -----------------------------------------------


def _row(device_id: str, **fields: object) -> DeviceRow:
    d = DeviceState(device_id, "S", "s1", "127.0.0.2", 4370, "tcp")
    for name, value in fields.items():
        setattr(d, name, value)
    return DeviceRow(d)


def test_a_column_sorts_by_value_with_unknown_values_last_both_ways() -> None:
    rows = [_row("a", records=10, records_cap=100), _row("b"),
            _row("c", records=90, records_cap=100), _row("d", records=10, records_cap=100)]
    facts = TableFacts(NOW)
    order = SortOrder().pressed(COL["buffer"])
    assert order.descending  # the fullest first
    assert [r.id for r in sort_rows(rows, order, facts)] == ["c", "a", "d", "b"]
    assert [r.id for r in sort_rows(rows, order.pressed(COL["buffer"]), facts)] == [
        "a", "d", "c", "b"]  # again: the other way, ties still by id, unknown still last
    assert [r.id for r in sort_rows(rows, SortOrder(), facts)] == ["a", "b", "c", "d"]


def test_drift_sorts_by_how_far_off_either_way_and_firmware_by_build_date() -> None:
    rows = [_row("slow", clock_drift_s=-150.0), _row("fast", clock_drift_s=437.0),
            _row("fine", clock_drift_s=0.5)]
    facts = TableFacts(NOW)
    by_drift = SortOrder().pressed(COL["drift"])
    assert [r.id for r in sort_rows(rows, by_drift, facts)] == ["fast", "slow", "fine"]
    assert firmware_date("Ver 6.60 Apr 26 2016").isoformat() == "2016-04-26"  # type: ignore[union-attr]
    assert firmware_date("Ver 6.60") is None
    assert firmware_date("Ver 6.60 Feb 31 2016") is None  # no such day: no date, no crash
    old = [_row("new", firmware="Ver 8.0 Jan 3 2021"), _row("none"),
           _row("odd", firmware="build 7"), _row("old", firmware="Ver 6.60 Apr 26 2016")]
    by_firmware = SortOrder().pressed(COL["firmware"])
    assert not by_firmware.descending  # the oldest build first
    assert [r.id for r in sort_rows(old, by_firmware, facts)] == ["old", "new", "odd", "none"]


def test_a_bulk_request_names_its_devices_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    import asyncio

    async def run() -> None:
        s = await open_store(tmp_path / "bulk.db")
        try:
            await _fill(s)
            with pytest.raises(CommandError, match="no device called nope"):
                await enqueue_devices(s, ["dev_hq_01", "nope"], "restart", now=NOW,
                                      source="test")
            with pytest.raises(CommandError, match="no device chosen"):
                await enqueue_devices(s, [], "restart", now=NOW, source="test")
            assert await s.commands() == []  # nothing was queued
            request, new = await enqueue_devices(s, ["dev_hq_02", "dev_hq_01", "dev_hq_02"],
                                                 "sync_time", now=NOW, source="test")
            assert new and request.target_kind == "devices"
            assert sorted(c.device_id for c in request.commands) == ["dev_hq_01", "dev_hq_02"]
        finally:
            await s.close()

    asyncio.run(run())


# --- on screen ---------------------------------------------------------------


async def test_t_shows_the_table_and_back_keeping_the_selection(store: Store) -> None:
    app = _app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await _open_table(pilot, app)
        assert table.display and table.has_focus
        assert not app.query_one("#tree", SiteTree).display
        # the problems first, as in the tree: the offline one on top
        assert _ids(app)[0] == "dev_port_01"
        await pilot.press("down", "down")
        chosen = table.selected_id
        assert chosen is not None and app.selected == ("device", chosen)
        await pilot.press("t")
        tree = app.query_one("#tree", SiteTree)
        await wait_for(pilot, lambda: tree.display and tree.selected_id == ("device", chosen))
        await pilot.press("t")
        await wait_for(pilot, lambda: table.display and table.selected_id == chosen)


async def test_sorting_by_buffer_and_drift_from_the_keyboard_and_by_a_click(
        store: Store) -> None:
    app = _app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await _open_table(pilot, app)
        await pilot.press(str(COL["buffer"] + 1))  # "3": sort by buffer
        await wait_for(pilot, lambda: _ids(app)[0] == "dev_hq_02")
        assert table.selected_id == "dev_hq_02"  # the cursor goes to the top
        header = table.render_line(0).text
        assert "buffer▼" in header
        assert "96%" in table.render_line(1).text and "dev_hq_02" in table.render_line(1).text
        await pilot.press(str(COL["buffer"] + 1))
        await wait_for(pilot, lambda: _ids(app)[0] == "dev_hq_01")  # 1%: the emptiest first
        assert "buffer▲" in table.render_line(0).text
        # a click on the drift title sorts by it: the 7-minutes-fast clock first
        x = header.index("drift")
        await pilot.click(FleetTable, offset=(x + 1 + 1, 1))  # +1: the table's border
        await wait_for(pilot, lambda: _ids(app)[:2] == ["dev_farm_01", "dev_port_02"])
        line = table.render_line(1).text
        assert "dev_farm_01" in line and "+7m" in line and "◷" in line  # marked a problem


async def test_the_filter_and_problems_only_apply_to_the_table(store: Store) -> None:
    app = _app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_table(pilot, app)
        await pilot.press("p")
        # offline, nearly full, two clocks off: the four problems, nothing else
        await wait_for(pilot, lambda: sorted(_ids(app)) == [
            "dev_farm_01", "dev_hq_02", "dev_port_01", "dev_port_02"])
        await pilot.press("p", "slash", *"farm", "enter")
        await wait_for(pilot, lambda: sorted(_ids(app)) == ["dev_farm_01", "dev_farm_02"])
        assert _table(app).has_focus  # Enter in the filter comes back to the table


async def test_marked_devices_restart_as_one_request_after_one_confirmation(
        store: Store) -> None:
    app = _app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await _open_table(pilot, app)
        await pilot.press(str(COL["device"] + 1))  # by id: farm_01, farm_02, hq_01…
        await wait_for(pilot, lambda: _ids(app)[0] == "dev_farm_01")
        await pilot.press("space", "down", "space")  # farm_01 and hq_01 (space moves on)
        assert table.marked == {"dev_farm_01", "dev_hq_01"}
        await wait_for(pilot, lambda: "2 marked" in str(app.query_one("#totals").render()))
        assert "✓" in table.render_line(1).text and "✓" not in table.render_line(2).text
        await pilot.press("ctrl+p")
        await pilot.press(*"Restart: the 2 marked")
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.query("#question"))
        question = str(app.screen.query_one("#question").render())
        assert "Restart 2 device(s): dev_farm_01, dev_hq_01?" in question
        await pilot.press("y")

        async def queued() -> list[tuple[str, list[str]]]:
            found = []
            for c in await store.commands():
                request = await store.command_request(c.request_id)
                assert request is not None
                found.append((request.target_kind,
                              sorted(m.device_id for m in request.commands)))
            return found

        for _ in range(100):
            if len(await queued()) == 2:
                break
            await pilot.pause(0.05)
        # one request holding both devices' commands
        assert await queued() == [("devices", ["dev_farm_01", "dev_hq_01"])] * 2
        await wait_for(pilot, lambda: not table.marked)  # done: the marks are cleared


async def test_star_marks_every_device_shown_and_again_none(store: Store) -> None:
    app = _app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await _open_table(pilot, app)
        await pilot.press("p", "asterisk")
        await wait_for(pilot, lambda: len(table.marked) == 4)
        await pilot.press("asterisk")
        assert table.marked == set()


async def test_enter_opens_the_device_in_the_tree_and_its_panel(store: Store) -> None:
    app = _app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await _open_table(pilot, app)
        await pilot.press(str(COL["drift"] + 1), "enter")
        tree = app.query_one("#tree", SiteTree)
        await wait_for(pilot, lambda: tree.display and tree.selected_id == (
            "device", "dev_farm_01"))
        assert not table.display


async def test_the_today_column_counts_punches_since_the_sites_midnight(
        store: Store) -> None:
    app = _app(store)
    async with app.run_test(size=(120, 30)) as pilot:
        table = await _open_table(pilot, app)
        await wait_for(pilot, lambda: app._today is not None)
        await pilot.press(str(COL["today"] + 1))
        await wait_for(pilot, lambda: _ids(app)[0] == "dev_farm_02")
        assert app._today == {"dev_farm_02": 3}
        assert table.render_line(0).text.index("today▼") < table.render_line(1).text.index(
            "3  ")  # its count, right-aligned under its title
