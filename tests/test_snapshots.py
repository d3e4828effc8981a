"""Snapshots of the control room at fixed sizes, with a frozen clock and fixed data.

The app runs as a viewer of a database this test fills (no engine, no
devices), so every character on screen is fixed. SVGs live in the top-level
``snapshots/`` folder; ``pytest --snapshot-update`` rewrites them after a
deliberate change to the screen.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_textual_snapshot as _pts

from fleettui.config import parse_config
from fleettui.domain import DeviceState, DeviceStatus, FlapState, Punch, Site, StatusChange, TzFlag
from fleettui.store import open_store
from fleettui.tui.app import FleetApp

SNAPSHOT_ROOT = Path(__file__).resolve().parent.parent / "snapshots"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


class _TopLevelSVG(_pts.SVGImageExtension):  # type: ignore[misc]
    """Store snapshots under snapshots/<module>/ instead of tests/__snapshots__/."""

    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        return str(SNAPSHOT_ROOT / test_location.basename)


_pts.SVGImageExtension = _TopLevelSVG  # snap_compare looks the name up at call time


async def _fill(path: Path) -> None:
    store = await open_store(path)
    sites = [Site("wh-a", "Warehouse - Gate A", "Africa/Casablanca"),
             Site("farm-b", "Farm B", "Africa/Nairobi")]
    devices = [
        DeviceState("dev_wh_a_01", "AIOR19296001", "wh-a", "127.0.1.1", 4370, "tcp"),
        DeviceState("dev_wh_a_02", "AIOR19296002", "wh-a", "127.0.1.2", 4370, "tcp"),
        DeviceState("dev_wh_a_03", "AIOR19296003", "wh-a", "127.0.1.3", 4370, "tcp"),
        DeviceState("dev_farm_b_01", "A7K220456009", "farm-b", "127.0.1.4", 4370, "udp"),
    ]
    await store.sync_fleet(sites, devices)
    t0 = NOW - timedelta(hours=3)
    for d in devices:
        await store.record_status(StatusChange(d.id, DeviceStatus.ONLINE, "", t0))
        await store.record_seen(d.id, NOW - timedelta(seconds=3), users=40, users_cap=5000,
                                records=1200, records_cap=100_000)
        await store.record_identity(d.id, model="F18/ID", firmware="Ver 6.60 Apr 26 2016",
                                    platform="ZMM210_TFT", mac="00:17:61:11:45:08")
        await store.record_clock(d.id, 1.0, NOW - timedelta(minutes=1))
        # every record the device holds was read by the last sync
        await store.insert_punches(d.id, [], cursor=(1200, "tail"),
                                   synced_at=NOW - timedelta(minutes=1))
    await store.record_status(StatusChange("dev_wh_a_02", DeviceStatus.OFFLINE, "no answer",
                                           NOW - timedelta(minutes=12), DeviceStatus.ONLINE))
    # a morning of punches at the warehouse (site time is UTC in Casablanca in March)
    morning = [datetime(2026, 3, 2, 7, 0) + timedelta(minutes=7 * i) for i in range(20)]
    await store.insert_punches("dev_wh_a_01", [
        Punch("dev_wh_a_01", str(1001 + i), t, "Africa/Casablanca", t.replace(tzinfo=UTC),
              TzFlag.OK, 0, 1, "sync", NOW)
        for i, t in enumerate(morning)
    ])
    # dev_wh_a_03 is flapping on a bad link: down and up every few minutes
    for k in range(6):
        at = NOW - timedelta(minutes=40 - 6 * k)
        await store.record_status(StatusChange(
            "dev_wh_a_03", DeviceStatus.OFFLINE, "no answer", at, DeviceStatus.ONLINE))
        await store.record_status(StatusChange(
            "dev_wh_a_03", DeviceStatus.ONLINE, "", at + timedelta(minutes=2),
            DeviceStatus.OFFLINE))
    await store.save_flap_states([FlapState("dev_wh_a_03", "0101010101010", True, 62.0)], NOW)
    await store.close()


CONFIG = """
[[sites]]
id = "wh-a"
name = "Warehouse - Gate A"
timezone = "Africa/Casablanca"

[[sites]]
id = "farm-b"
name = "Farm B"
timezone = "Africa/Nairobi"
""" + "".join(
    f'\n[[devices]]\nid = "{d}"\nserial = "{s}"\nsite = "{site}"\nhost = "{h}"\n'
    f'transport = "{t}"\n'
    for d, s, site, h, t in [
        ("dev_wh_a_01", "AIOR19296001", "wh-a", "127.0.1.1", "tcp"),
        ("dev_wh_a_02", "AIOR19296002", "wh-a", "127.0.1.2", "tcp"),
        ("dev_wh_a_03", "AIOR19296003", "wh-a", "127.0.1.3", "tcp"),
        ("dev_farm_b_01", "A7K220456009", "farm-b", "127.0.1.4", "udp"),
    ]
)


@pytest.fixture
def frozen_app(tmp_path: Path) -> FleetApp:
    db = tmp_path / "snap.db"
    asyncio.run(_fill(db))
    return FleetApp(config=parse_config(CONFIG), db_path=db, embed=False, clock=lambda: NOW,
                    refresh_s=3600)


async def _settle(pilot: Any) -> None:
    pilot.app.animation_level = "none"
    await pilot.pause()
    await pilot.app.refresh_data()
    await pilot.pause()


def test_main_screen(snap_compare: Any, frozen_app: FleetApp) -> None:
    assert snap_compare(frozen_app, terminal_size=(120, 36), run_before=_settle)


def test_device_panel_of_the_offline_device(snap_compare: Any, frozen_app: FleetApp) -> None:
    async def select(pilot: Any) -> None:
        await _select(pilot, "device", "dev_wh_a_02")

    assert snap_compare(frozen_app, terminal_size=(120, 36), run_before=select)


def test_80_by_24(snap_compare: Any, frozen_app: FleetApp) -> None:
    """The smallest screen: the header (with the demo's banner) fits in its short form,
    and the offline device's panel shows its state and its commands without scrolling."""
    from fleettui.engine.enqueue import enqueue

    frozen_app.banner, frozen_app.short_banner = "demo: 4 sick devices", "demo"

    async def select(pilot: Any) -> None:
        # a restart queued from a shell (the viewer's owner would run it)
        await enqueue(pilot.app.store, "dev_wh_a_02", "restart", None, now=NOW, source="cli")
        await _select(pilot, "device", "dev_wh_a_02")

    assert snap_compare(frozen_app, terminal_size=(80, 24), run_before=select)


async def _select(pilot: Any, kind: str, ident: str) -> None:
    await _settle(pilot)
    pilot.app.jump((kind, ident))
    pilot.app.selected = (kind, ident)
    await pilot.app.refresh_panel()
    await pilot.pause()


def test_site_panel(snap_compare: Any, frozen_app: FleetApp) -> None:
    async def select(pilot: Any) -> None:
        await _select(pilot, "site", "wh-a")

    assert snap_compare(frozen_app, terminal_size=(120, 36), run_before=select)


def test_flapping_device(snap_compare: Any, frozen_app: FleetApp) -> None:
    async def select(pilot: Any) -> None:
        await _select(pilot, "device", "dev_wh_a_03")

    assert snap_compare(frozen_app, terminal_size=(120, 36), run_before=select)


def test_palette_with_a_query(snap_compare: Any, frozen_app: FleetApp) -> None:
    async def query(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"restart wh")
        # the palette searches in a worker: wait for it to finish, then for the repaint
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(frozen_app, terminal_size=(120, 36), run_before=query)


def test_help_screen(snap_compare: Any, frozen_app: FleetApp) -> None:
    async def help_(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(frozen_app, terminal_size=(100, 36), run_before=help_)


def test_wide_200_by_50(snap_compare: Any, frozen_app: FleetApp) -> None:
    async def select(pilot: Any) -> None:
        await _select(pilot, "device", "dev_wh_a_01")

    assert snap_compare(frozen_app, terminal_size=(200, 50), run_before=select)


#: the employee file of the sync snapshot: 1001 as on the devices, 1002 renamed, 2001 new
EMPLOYEES_CSV = "id,name,card\n1001,Worker 1,5000001\n1002,Renamed Two,42\n2001,Amina New,777\n"


def test_employee_sync_preview(snap_compare: Any, frozen_app: FleetApp, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync modal of a site after its preview: two devices answered with their counts,
    the offline one has not yet. This app is a viewer: the answers are written to the
    store as the owning poller writes them."""
    from textual.widgets import Footer, Input

    from fleettui.domain import CommandState
    from fleettui.tui.employees import EmployeeSync
    from tests.test_tui import click, wait_for

    (tmp_path / "employees.csv").write_text(EMPLOYEES_CSV)
    monkeypatch.chdir(tmp_path)  # a relative path: the same text on screen in every run

    async def preview(pilot: Any) -> None:
        app = pilot.app
        await _settle(pilot)
        # the footer draws its keys once the screen's bindings are first published: before
        # a modal covers the screen, or never (and straight from the screen, as the palette
        # does: passing through the palette raced the footer's redraw behind it)
        await wait_for(pilot, lambda: bool(app.screen.query_one(Footer).children))
        app.sync_employees("wh-a", "all 3 device(s) of Warehouse - Gate A")
        await wait_for(pilot, lambda: isinstance(app.screen, EmployeeSync)
                       and bool(app.screen.query("#path")))
        screen = app.screen
        path = screen.query_one("#path", Input)
        path.cursor_blink = False
        path.value = "employees.csv"
        await click(pilot, "#remove")
        await click(pilot, "#preview")
        await wait_for(pilot, lambda: "asking the device" in _message(screen))
        request = await app.store.command_request(1)
        assert request is not None
        for c in request.commands:
            if c.device_id == "dev_wh_a_02":  # offline: its poller has not reached it
                continue
            extra = c.device_id == "dev_wh_a_03"  # one more user, not in the file
            await app.store.start_command(c.id, NOW)
            await app.store.finish_command(c, CommandState.DONE, NOW, result={
                "added": 1, "updated": 1, "removed": 1 + extra, "unchanged": 1,
                "names": {"added": ["Amina New"], "updated": ["Renamed Two"],
                          "removed": ["Worker 3", "Worker 4"][:1 + extra]},
            })
        await wait_for(pilot, lambda: screen.preview is not None and "2/3" in str(
            screen.query_one("#preview-text").render()))
        await pilot.pause()

    assert snap_compare(frozen_app, terminal_size=(100, 32), run_before=preview)


def _message(screen: Any) -> str:
    return str(screen.query_one("#message").render())


async def _alerts_view(pilot: Any) -> None:
    """The alerts view (``a``) over the fill: dev_wh_a_02's offline alert open (escalated,
    not acknowledged), dev_farm_b_01's of this morning resolved. Nothing is notified: no
    toast covers the view."""
    from fleettui.domain import AlertKind
    from fleettui.tui.alerts_view import AlertsView
    from tests.test_tui import wait_for

    store = pilot.app.store
    offline = await store.open_alert(
        target_kind="device", target="dev_wh_a_02", site_id="wh-a", kind=AlertKind.OFFLINE,
        severity="warning", reason="no answer", since=NOW - timedelta(minutes=12),
        now=NOW - timedelta(minutes=10), notify=False)
    await store.update_alert(offline, NOW - timedelta(minutes=2), change="escalated",
                             notify=False, severity="critical")
    earlier = await store.open_alert(
        target_kind="device", target="dev_farm_b_01", site_id="farm-b",
        kind=AlertKind.OFFLINE, severity="warning", reason="no answer",
        since=NOW - timedelta(hours=2, minutes=2), now=NOW - timedelta(hours=2), notify=False)
    await store.update_alert(earlier, NOW - timedelta(hours=1, minutes=35), change="resolved",
                             notify=False)
    await _settle(pilot)
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, AlertsView)
                   and pilot.app.screen.shown is not None)
    await pilot.pause()


def test_alerts_view_80_by_24(snap_compare: Any, frozen_app: FleetApp) -> None:
    """The alerts view on the smallest screen: the states in one column, wrapping."""
    assert snap_compare(frozen_app, terminal_size=(80, 24), run_before=_alerts_view)


def test_alerts_view_200_by_50(snap_compare: Any, frozen_app: FleetApp) -> None:
    """The alerts view on a wide screen: a column per state, and the reasons."""
    assert snap_compare(frozen_app, terminal_size=(200, 50), run_before=_alerts_view)


SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((200, 50), id="200x50")]


async def _sicken(pilot: Any) -> None:
    """A nearly full buffer and a clock 7 minutes fast, as the demo has them."""
    store = pilot.app.store
    await store.record_seen("dev_farm_b_01", NOW - timedelta(seconds=3), users=40,
                            users_cap=5000, records=96_000, records_cap=100_000)
    await store.record_clock("dev_wh_a_01", 437.0, NOW - timedelta(minutes=1))


@pytest.mark.parametrize("size", SIZES)
def test_fleet_table_sorted_by_buffer(snap_compare: Any, frozen_app: FleetApp,
                                      size: tuple[int, int]) -> None:
    async def table(pilot: Any) -> None:
        await _sicken(pilot)
        await _settle(pilot)
        await pilot.press("t", "3")  # the table, sorted by buffer (the fullest first)
        await pilot.press("down", "space")  # one device marked for a bulk action
        await pilot.pause()

    assert snap_compare(frozen_app, terminal_size=size, run_before=table)


@pytest.mark.parametrize("size", SIZES)
def test_fleet_map(snap_compare: Any, frozen_app: FleetApp, size: tuple[int, int]) -> None:
    async def fleet_map(pilot: Any) -> None:
        await _sicken(pilot)
        await _settle(pilot)
        await pilot.press("m", "right")
        await pilot.pause()

    assert snap_compare(frozen_app, terminal_size=size, run_before=fleet_map)


@pytest.mark.parametrize("size", SIZES)
def test_folded_log(snap_compare: Any, frozen_app: FleetApp, size: tuple[int, int]) -> None:
    """A minute of routine syncs folds into one line per site; the outage stands out."""

    async def syncs(pilot: Any) -> None:
        store = pilot.app.store
        for second in range(0, 60, 4):
            device = ("dev_wh_a_01", "dev_wh_a_03", "dev_farm_b_01")[second % 3]
            await store.add_event("sync", f"{device}: 2 new punch(es) stored",
                                  at=NOW - timedelta(minutes=2) + timedelta(seconds=second),
                                  device_id=device, data={"new": 2})
        await _select(pilot, "device", "dev_wh_a_02")

    assert snap_compare(frozen_app, terminal_size=size, run_before=syncs)


@pytest.mark.parametrize("size", SIZES)
def test_help_screen_sizes(snap_compare: Any, frozen_app: FleetApp,
                           size: tuple[int, int]) -> None:
    async def help_(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(frozen_app, terminal_size=size, run_before=help_)
