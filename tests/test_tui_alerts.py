"""The alerts view (``a``): open alerts to act on, the last 24 h of resolved ones.

The app is a viewer of a real SQLite store in tmp_path that the test fills as
a poller would (sites, devices, statuses, alerts opened, escalated and
resolved through the store's own calls), on a frozen clock, driven by the
Pilot. Waits are bounded polls on what the screen or the store says.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.style import Style
from textual.pilot import Pilot
from textual.widgets import OptionList

from fleettui.domain import Alert, AlertKind, DeviceState, DeviceStatus, Site, StatusChange
from fleettui.store import Store, open_store
from fleettui.tui.alerts_view import AlertsView, SilenceChoice
from fleettui.tui.app import FleetApp
from fleettui.tui.tree import SiteTree
from tests.test_tui import wait_for

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
#: two sites, three devices; dev_a_02 is offline since 12 minutes
DEVICES = {"dev_a_01": "site-a", "dev_a_02": "site-a", "dev_b_01": "site-b"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store filled with the fleet, no alert yet."""
    store = await open_store(tmp_path / "alerts.db")
    await store.sync_fleet(
        [Site("site-a", "Site A", "UTC"), Site("site-b", "Site B", "Africa/Nairobi")],
        [DeviceState(d, f"SN-{d}", site, f"127.0.2.{i}", 4370, "tcp")
         for i, (d, site) in enumerate(DEVICES.items(), 1)])
    for d in DEVICES:
        await store.record_status(StatusChange(d, DeviceStatus.ONLINE, "",
                                               NOW - timedelta(hours=3)))
    await store.record_status(StatusChange("dev_a_02", DeviceStatus.OFFLINE, "no answer",
                                           NOW - timedelta(minutes=12), DeviceStatus.ONLINE))
    try:
        yield store
    finally:
        await store.close()


async def open_alert(store: Store, target: str, kind: AlertKind = AlertKind.OFFLINE, *,
                     since_min: float = 12, severity: str = "warning",
                     reason: str = "no answer") -> Alert:
    """Open an alert as the engine does: on a device (or, for site_down, a site)."""
    site = target if kind is AlertKind.SITE_DOWN else DEVICES[target]
    since = NOW - timedelta(minutes=since_min)
    return await store.open_alert(
        target_kind="site" if kind is AlertKind.SITE_DOWN else "device", target=target,
        site_id=site, kind=kind, severity=severity, reason=reason, since=since,
        now=since + timedelta(minutes=2), notify=True)


def viewer(store: Store) -> FleetApp:
    """The control room as a viewer of ``store``, on the frozen clock."""
    return FleetApp(store, clock=lambda: NOW, refresh_s=0.2)


def screen_text(app: FleetApp) -> str:
    """What the terminal shows now (the screen composited over the one under it), line by
    line."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def box_lines(app: FleetApp) -> list[str]:
    """The lines the terminal shows inside the alerts view's box (its border, its padding
    and the column its parts are inset by, off)."""
    region = app.screen.query_one("#alerts-box").content_region
    lines = screen_text(app).splitlines()[region.y:region.bottom]
    return [line[region.x + 1:region.right].rstrip() for line in lines]


def words(text: str) -> str:
    """The text with its runs of spaces and line breaks as one space (a wrapped cell reads
    on)."""
    return re.sub(r"\s+", " ", text).strip()


def box_words(app: FleetApp) -> str:
    """The view's text as words."""
    return words(" ".join(box_lines(app)))


def open_row(app: FleetApp, target: str) -> str:
    """An open alert's row as words: from its line to the next row or blank line."""
    lines = box_lines(app)
    start = next(i for i, line in enumerate(lines) if _ROW.match(line) and f" {target} " in line)
    end = next((i for i in range(start + 1, len(lines))
                if _ROW.match(lines[i]) or not lines[i].strip()), len(lines))
    return words(" ".join(lines[start:end]))


#: the first line of an open alert's row
_ROW = re.compile(r"^\s*(warning|critical) ")


def style_of(app: FleetApp, text: str) -> str:
    """The style the terminal draws ``text`` in (its first segment of that text)."""
    for strip in app.screen._compositor.render_strips():
        for segment in strip:
            if segment.text.strip() == text:
                return str(segment.style)
    raise AssertionError(f"{text!r} is not on screen")


def view(app: FleetApp) -> AlertsView:
    """The alerts view, which must be the screen shown."""
    assert isinstance(app.screen, AlertsView), app.screen
    return app.screen


async def open_view(pilot: Pilot[None], app: FleetApp) -> AlertsView:
    """Press ``a`` on the main screen once the fleet is read, and wait for the first read."""
    await wait_for(pilot, lambda: len(app.rows) == len(DEVICES))
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(app.screen, AlertsView)
                   and app.screen.shown is not None)
    await pilot.pause()
    return view(app)


async def test_no_open_alert_says_so_and_a_closes_the_view(store: Store) -> None:
    app = viewer(store)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app)
        assert "Alerts" in screen_text(app)  # the box's title
        assert box_lines(app)[0] == "No open alerts"
        shown = box_words(app)
        assert "Resolved in the last 24 h: none" in shown
        assert shown.endswith("Esc q a close") and "acknowledge" not in shown
        app.action_alerts()  # not opened twice
        await pilot.pause()
        assert app.screen is screen and len(app.screen_stack) == 2
        await pilot.press("a")
        await wait_for(pilot, lambda: not isinstance(app.screen, AlertsView))


async def test_an_offline_devices_alert_is_listed_with_its_severity_target_and_age(
        store: Store) -> None:
    await open_alert(store, "dev_a_02", since_min=12)
    site = await open_alert(store, "site-b", AlertKind.SITE_DOWN, since_min=5)
    await store.update_alert(site, NOW - timedelta(minutes=1), change="escalated",
                             notify=False, severity="critical")
    app = viewer(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_view(pilot, app)
        lines = box_lines(app)
        assert lines[:2] == ["2 open alerts · times in UTC",
                             "severity  target       kind       for     state"]
        # the critical one first, a site said to be one; then the offline device
        assert _ROW.match(lines[2]) and "site-b" in lines[2]
        assert open_row(app, "site-b") == ("critical site site-b site_down 5m 0s "
                                           "escalated 09:29 · not acked")
        assert open_row(app, "dev_a_02") == "warning dev_a_02 offline 12m 0s not acked"
        # the severities are coloured: critical in bold red, warning in yellow
        critical, warning = Style.parse(style_of(app, "critical")), Style.parse(
            style_of(app, "warning"))
        assert critical.bold and not warning.bold and critical.color != warning.color
        prompts = [o.prompt for o in view(app).query_one("#alerts-open", OptionList).options]
        assert [str(p.cells.narrow[0].style) for p in prompts] == ["bold red", "yellow"]
        assert box_words(app).endswith(
            "↑↓ j k move Enter g go to c acknowledge s silence Esc q a close")


async def test_a_wide_screen_has_a_column_each_and_the_reason(store: Store) -> None:
    await open_alert(store, "dev_a_02", reason="no answer \x1b[2J from 127.0.2.2")
    await store.add_silence("site-a", NOW + timedelta(hours=2), "works", "amina", NOW)
    app = viewer(store)
    async with app.run_test(size=(200, 50)) as pilot:
        await open_view(pilot, app)
        assert words(box_lines(app)[1]) == (
            "severity target kind for escalated acknowledged silenced reason")
        # the site's silence covers its device; the reason's escape is drawn, not obeyed
        assert open_row(app, "dev_a_02") == ("warning dev_a_02 offline 12m 0s no no "
                                             "until 11:30 (site) no answer \\x1b[2J from "
                                             "127.0.2.2")
        assert "\x1b" not in screen_text(app)


async def test_c_acknowledges_the_cursors_alert(store: Store) -> None:
    alert = await open_alert(store, "dev_a_02")
    app = viewer(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_view(pilot, app)
        await pilot.press("c")
        await wait_for(pilot, lambda: open_row(app, "dev_a_02") == (
            "warning dev_a_02 offline 12m 0s acked by tui 09:30"))
        (stored,) = await store.alerts()
        assert (stored.id, stored.acknowledged_by, stored.acknowledged_at) == (
            alert.id, "tui", NOW)
        assert any(n.message == f"alert {alert.id} acknowledged" for n in app._notifications)
        await pilot.press("c")  # once: pressed again, it says by whom
        await wait_for(pilot, lambda: any(
            n.message == f"alert {alert.id} was acknowledged already (acked by tui 09:30)"
            for n in app._notifications))


async def test_the_hint_line_says_the_keys_in_force(store: Store) -> None:
    """``[tui.keys]`` remaps the view's keys by their ids: the hint line follows."""
    await open_alert(store, "dev_a_02")
    app = viewer(store)
    async with app.run_test(size=(80, 24)) as pilot:
        app.set_keymap({"alerts.ack": "x", "alerts.close": "escape"})
        await open_view(pilot, app)
        assert box_words(app).endswith(
            "↑↓ j k move Enter g go to x acknowledge s silence Esc close")
        await pilot.press("c")  # no longer a key of the view
        await app.workers.wait_for_complete()
        assert (await store.alerts())[0].acknowledged_at is None
        await pilot.press("x")
        await wait_for(pilot, lambda: "acked by tui" in open_row(app, "dev_a_02"))
        assert (await store.alerts())[0].acknowledged_by == "tui"


async def test_s_silences_the_target_for_the_time_chosen(store: Store) -> None:
    await open_alert(store, "dev_a_02")
    app = viewer(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_view(pilot, app)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SilenceChoice) and (
            "1: 1 h 2: 2 h 3: 4 h 4: 8 h 5: 24 h Esc cancel" in words(screen_text(app))))
        assert "Silence dev_a_02 (its notifications" in words(screen_text(app))
        await pilot.press("escape")  # cancelled: nothing silenced
        await wait_for(pilot, lambda: isinstance(app.screen, AlertsView))
        assert await store.active_silences(NOW) == []

        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SilenceChoice))
        await pilot.press("3")  # 4 h
        await wait_for(pilot, lambda: isinstance(app.screen, AlertsView) and open_row(
            app, "dev_a_02").endswith("not acked · silenced until 13:30"))
        (silence,) = await store.active_silences(NOW)
        assert (silence.target, silence.until, silence.created_by) == (
            "dev_a_02", NOW + timedelta(hours=4), "tui")
        assert silence.reason.startswith("from the alerts view")
        assert any(n.message == "dev_a_02 silenced until 13:30 UTC" for n in app._notifications)


async def test_enter_or_g_goes_to_the_alerts_device_or_site(store: Store) -> None:
    await open_alert(store, "dev_a_02")
    await open_alert(store, "dev_a_01", AlertKind.FLAPPING, since_min=30)
    await open_alert(store, "site-b", AlertKind.SITE_DOWN, since_min=5, severity="critical")
    app = viewer(store)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app)
        assert screen.shown is not None
        assert [r.alert.target for r in screen.shown.open] == ["site-b", "dev_a_01", "dev_a_02"]
        await pilot.press("j", "j", "k")  # down, down, up: the flapping dev_a_01
        assert screen.selected is not None and screen.selected.alert.target == "dev_a_01"
        await pilot.press("g")
        await wait_for(pilot, lambda: not isinstance(app.screen, AlertsView))
        tree = app.query_one("#tree", SiteTree)
        await wait_for(pilot, lambda: tree.selected_id == ("device", "dev_a_01")
                       and app.selected == ("device", "dev_a_01"))
        assert tree.has_focus

        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AlertsView)
                       and app.screen.shown is not None)
        await pilot.press("enter")  # the cursor starts on the first: the site
        await wait_for(pilot, lambda: not isinstance(app.screen, AlertsView)
                       and tree.selected_id == ("site", "site-b"))


async def test_resolved_in_the_last_24_h_are_listed_below_newest_first(store: Store) -> None:
    await open_alert(store, "dev_a_02")
    for target, opened_h, resolved_h in (("dev_b_01", 3, 2), ("dev_a_01", 1.5, 1),
                                         ("dev_a_02", 31, 30)):
        opened = NOW - timedelta(hours=opened_h)
        old = await store.open_alert(
            target_kind="device", target=target, site_id=DEVICES[target],
            kind=AlertKind.ERROR, severity="warning", reason="", since=opened,
            now=opened, notify=True)
        await store.update_alert(old, NOW - timedelta(hours=resolved_h), change="resolved",
                                 notify=True)
    app = viewer(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_view(pilot, app)
        lines = [words(line) for line in box_lines(app)]
        at = lines.index("Resolved in the last 24 h (2)")
        assert lines[at + 1:at + 4] == [
            "severity target kind opened → resolved lasted reason",
            "warning dev_a_01 error 08:00 → 08:30 30m 0s",
            "warning dev_b_01 error 06:30 → 07:30 1h 0m",
        ]
        assert not any("03:30" in line for line in lines)  # the one of 30 h ago
        assert open_row(app, "dev_a_02").startswith("warning dev_a_02 offline")


async def test_the_view_follows_the_store_while_open(store: Store) -> None:
    app = viewer(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_view(pilot, app)
        alert = await open_alert(store, "dev_a_02")
        await wait_for(pilot, lambda: box_lines(app)[0] == "1 open alert · times in UTC")
        assert open_row(app, "dev_a_02") == "warning dev_a_02 offline 12m 0s not acked"
        await store.update_alert(alert, NOW, change="resolved", notify=True)
        await wait_for(pilot, lambda: box_lines(app)[0] == "No open alerts"
                       and "Resolved in the last 24 h (1)" in box_words(app))
        assert "dev_a_02 offline 09:20 → 09:30 10m 0s" in box_words(app)


async def test_a_long_id_is_never_cut_at_80_columns(store: Store) -> None:
    """An id too long for the columns at 80: the row is stacked, the id whole on its line."""
    long_id = "gate-north-entrance.building-7.warehouse-02"
    await store.open_alert(
        target_kind="device", target=long_id, site_id="site-a", kind=AlertKind.OFFLINE,
        severity="warning", reason="", since=NOW - timedelta(minutes=3), now=NOW,
        notify=False)
    app = viewer(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_view(pilot, app)
        lines = box_lines(app)
        assert lines[1:5] == ["severity  target",
                              "          kind  for  state",
                              f"warning   {long_id}",
                              "          offline  3m 0s  not acked"]


def test_resolved_within_24_h_exactly_and_the_silence_that_ends_last() -> None:
    from fleettui.domain import Silence
    from fleettui.tui.alerts_lines import recently_resolved, silence_over

    def alert(ident: int, resolved: timedelta | None) -> Alert:
        return Alert(ident, "device", "dev_a_01", "site-a", AlertKind.OFFLINE, "warning",
                     "open" if resolved is None else "resolved", "", NOW - timedelta(days=2),
                     NOW - timedelta(days=2),
                     resolved_at=None if resolved is None else NOW - resolved)

    alerts = [alert(1, timedelta(hours=24)), alert(2, timedelta(hours=24, seconds=1)),
              alert(3, None), alert(4, timedelta(minutes=1))]
    assert [a.id for a in recently_resolved(alerts, NOW)] == [4, 1]

    def silence(ident: int, target: str, hours: float) -> Silence:
        return Silence(ident, target, NOW + timedelta(hours=hours), "", "tui", NOW)

    silences = [silence(1, "dev_a_01", 1), silence(2, "site-a", 8), silence(3, "dev_b_01", 24)]
    assert silence_over(alerts[2], silences) == silences[1]  # its site's, ending last
    assert silence_over(alerts[2], silences[:1]) == silences[0]
    assert silence_over(alerts[2], silences[2:]) is None
