"""What the control room counts as a problem: each kind, its thresholds from the config,
its mark, and header counts that always add up to the fleet (pure logic, time injected);
then the same on screen, against emulated devices with those problems (Pilot)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleettui.config import ConfigError, parse_config
from fleettui.domain import DeviceState, DeviceStatus, Site
from fleettui.emulator.device import Profile
from fleettui.engine.engine import Engine
from fleettui.store import open_store
from fleettui.tui.app import FleetApp
from fleettui.tui.model import DeviceRow, arrange, totals
from fleettui.tui.problems import Issue, Limits, duration, issues_of, mark_text
from fleettui.tui.tree import SiteTree
from tests.conftest import Emulated, device_config, sample_users
from tests.test_tui import LAYOUT, OFFLINE, two_site_toml, wait_for

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def _device(device_id: str = "d1", status: DeviceStatus = DeviceStatus.ONLINE, *,
            transport: str = "tcp", **fields: object) -> DeviceState:
    d = DeviceState(device_id, f"S-{device_id}", "s1", "127.0.0.2", 4370, transport,
                    status=status, status_since=NOW - timedelta(minutes=5),
                    last_sync_at=NOW - timedelta(minutes=1))
    for name, value in fields.items():
        setattr(d, name, value)
    return d


def _row(device: DeviceState, flapping: bool = False, limits: Limits | None = None) -> DeviceRow:
    row = DeviceRow(device, flapping=flapping)
    row.issues = issues_of(device, flapping, limits or Limits(), NOW)
    row.notes = tuple(mark_text(m, device, NOW) for m in row.marks)
    return row


def test_a_healthy_device_has_no_issue() -> None:
    row = _row(_device(clock_drift_s=30.0, records=500, records_cap=1000))
    assert row.issues == () and not row.problem and row.marks == ()


@pytest.mark.parametrize(("fields", "issues", "notes"), [
    ({"status": DeviceStatus.OFFLINE}, (Issue.OFFLINE,), ()),
    ({"status": DeviceStatus.ERROR}, (Issue.ERROR,), ()),
    ({"clock_drift_s": 437.0}, (Issue.DRIFT,), ("clock +7m",)),
    ({"clock_drift_s": -120.0}, (Issue.DRIFT,), ("clock -2m",)),
    ({"clock_drift_s": 119.0}, (), ()),
    ({"records": 96_000, "records_cap": 100_000}, (Issue.BUFFER,), ("buffer 96%",)),
    ({"records": 89_999, "records_cap": 100_000}, (), ()),
    ({"last_sync_at": NOW - timedelta(hours=3)}, (Issue.UNSYNCED,), ("no sync 3h",)),
    # offline: its sync cannot fall behind, its clock and buffer still count
    ({"status": DeviceStatus.OFFLINE, "last_sync_at": NOW - timedelta(hours=3),
      "clock_drift_s": 500.0}, (Issue.OFFLINE, Issue.DRIFT), ("clock +8m",)),
])
def test_each_kind_of_problem_is_found_and_marked(
    fields: dict[str, object], issues: tuple[Issue, ...], notes: tuple[str, ...],
) -> None:
    status = fields.pop("status", DeviceStatus.ONLINE)
    assert isinstance(status, DeviceStatus)
    row = _row(_device(status=status, **fields))
    assert (row.issues, row.notes) == (issues, notes)
    assert row.problem is bool(issues)


def test_a_push_device_is_never_behind_on_syncs_and_flapping_is_a_mark() -> None:
    pushed = _row(_device(transport="push", last_sync_at=None,
                          status_since=NOW - timedelta(days=2)))
    assert pushed.issues == ()
    flapping = _row(_device(status=DeviceStatus.OFFLINE), flapping=True)
    assert flapping.issues == (Issue.OFFLINE, Issue.FLAPPING)
    assert flapping.labelled_marks() == [(Issue.FLAPPING, "flapping")]


def test_the_thresholds_come_from_the_problems_table() -> None:
    config = parse_config("[problems]\nclock_drift_s = 30\nbuffer_full_pct = 50\n"
                          "unsynced_after_s = 600\n")
    limits = Limits.of(config.problems)
    assert limits == Limits(30.0, 0.5, 600.0)
    assert Limits.of(None) == Limits() == Limits.of(parse_config("").problems)
    row = _row(_device(clock_drift_s=45.0, records=60, records_cap=100,
                       last_sync_at=NOW - timedelta(minutes=11)), limits=limits)
    assert row.issues == (Issue.DRIFT, Issue.BUFFER, Issue.UNSYNCED)
    with pytest.raises(ConfigError, match=r"problems\.buffer_full_pct"):
        parse_config("[problems]\nbuffer_full_pct = 150\n")


def test_the_header_counts_add_up_to_the_fleet_with_marks_counted_within_a_status() -> None:
    rows = [_row(_device("a")), _row(_device("b", clock_drift_s=437.0)),
            _row(_device("c", records=96, records_cap=100)),
            _row(_device("d"), flapping=True),
            _row(_device("e", DeviceStatus.OFFLINE), flapping=True),
            _row(_device("f", DeviceStatus.OFFLINE)), _row(_device("g", DeviceStatus.UNKNOWN))]
    t = totals([Site("s1", "S1", "UTC")], rows)
    assert t.online + t.offline + t.error + t.unknown == t.devices == 7
    assert t.text() == ("7 devices across 1 sites · 4 online (1 flapping, 1 clock off,"
                        " 1 buffer nearly full) · 2 offline (1 flapping) · 1 not checked yet")


def test_problems_only_shows_every_kind_of_problem() -> None:
    rows = [_row(_device("ok")), _row(_device("drifting", clock_drift_s=437.0)),
            _row(_device("full", records=96, records_cap=100)),
            _row(_device("down", DeviceStatus.OFFLINE))]
    (site,) = arrange([Site("s1", "S1", "UTC")], rows, problems_only=True)
    assert [r.id for r in site.devices] == ["down", "drifting", "full"]
    assert site.problems == 3


def test_durations_read_short() -> None:
    assert [duration(s) for s in (45, 89, 420, 5399, 7200, 86400 * 3)] == [
        "45s", "89s", "7m", "90m", "2h", "3d"]


async def test_a_drifting_clock_and_a_nearly_full_buffer_are_marked_counted_and_shown_under_p(
    emulate: Callable[..., Emulated], tmp_path: Path,
) -> None:
    """The demo's sick devices, for real: emulated terminals, one 437 s fast, one with its
    log 96% full, one offline; the control room marks and counts each, and "problems
    only" keeps exactly those."""
    profile = Profile(reboot_s=0.3, records_cap=400)
    configs = [device_config(d, profile=profile) for d in LAYOUT]
    em = emulate(configs, users={c.id: sample_users(3) for c in configs})
    em.emu.run(em.fleet.set_faults(OFFLINE, {"offline": True}))
    em.emu.run(em.fleet.set_faults("dev_b_01", {"clock_offset_s": 437}))
    em.fleet.fill_buffer("dev_a_03", 0.96)
    config = parse_config(two_site_toml(configs), tmp_path / "fleet.toml")
    store = await open_store(tmp_path / "fleet.db")
    try:
        app = FleetApp(store, Engine(config, store), refresh_s=0.2)
        async with app.run_test(size=(120, 30)) as pilot:
            def marked() -> bool:
                rows = app.rows
                return (len(rows) == len(LAYOUT)
                        and Issue.DRIFT in rows["dev_b_01"].issues
                        and Issue.BUFFER in rows["dev_a_03"].issues
                        and rows[OFFLINE].device.status is DeviceStatus.OFFLINE
                        and all(r.device.status is DeviceStatus.ONLINE for r in rows.values()
                                if r.id != OFFLINE))
            await wait_for(pilot, marked, 30)
            # nothing touched yet: the cursor rests on the worst problem, the panel shows it
            await wait_for(pilot, lambda: app.selected == ("device", OFFLINE))
            await pilot.pause()
            header = str(app.query_one("#totals").render())
            assert "4 online (1 clock off, 1 buffer nearly full) · 1 offline" in header
            tree = app.query_one("#tree", SiteTree)
            label = tree.render_label(tree.device_nodes["dev_b_01"], tree.rich_style,
                                      tree.rich_style).plain
            assert label.startswith("● dev_b_01 ◷ clock +7m")
            label = tree.render_label(tree.device_nodes["dev_a_03"], tree.rich_style,
                                      tree.rich_style).plain
            assert label == "● dev_a_03 ▮ buffer 96%"
            await pilot.press("p")
            await wait_for(pilot, lambda: set(tree.device_nodes) == {
                OFFLINE, "dev_a_03", "dev_b_01"})
            # the operator moves: the cursor is theirs from now on
            await pilot.press("down")
            await wait_for(pilot, lambda: app.selected not in (None, ("device", OFFLINE)))
            assert not app._auto_select
    finally:
        await store.close()
