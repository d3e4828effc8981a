"""The control room, driven by Textual's Pilot against real emulated devices.

A small fleet (5 devices on 2 sites, one offline) is served by the emulator on
loopback; a real Store in tmp_path and a real Engine with fast polling sit
under the app, as in ``fleettui demo``. Waits are bounded polls, never guesses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from fleettui.config import parse_config
from fleettui.domain import CommandState, DeviceStatus
from fleettui.emulator.device import DeviceConfig, Profile
from fleettui.engine.engine import Engine
from fleettui.store import open_store
from fleettui.tui.app import FleetApp
from fleettui.tui.model import DeviceRow, arrange, gauge
from fleettui.tui.panel import DevicePanel
from fleettui.tui.tree import SiteTree
from tests.conftest import Emulated, device_config, sample_users
from tests.test_engine import FAST_POLL

SITES = {"site-a": ("Site A", "Africa/Casablanca"), "site-b": ("Site B", "Europe/Paris")}
LAYOUT = {"dev_a_01": "site-a", "dev_a_02": "site-a", "dev_a_03": "site-a",
          "dev_b_01": "site-b", "dev_b_02": "site-b"}
OFFLINE = "dev_a_02"


def two_site_toml(devices: list[DeviceConfig]) -> str:
    """A config for the emulated devices, on two sites, with fast polling."""
    lines = ["[poll]"] + [f"{k} = {v}" for k, v in FAST_POLL.items()] + [""]
    for site_id, (name, tz) in SITES.items():
        lines += ["[[sites]]", f'id = "{site_id}"', f'name = "{name}"', f'timezone = "{tz}"', ""]
    for d in devices:
        lines += ["[[devices]]", f'id = "{d.id}"', f'serial = "{d.serial}"',
                  f'site = "{LAYOUT[d.id]}"', f'host = "{d.host}"', f"port = {d.port}",
                  'transport = "tcp"', f"comm_key = {d.comm_key}", ""]
    lines += ["[[schedules]]", 'name = "nightly-clock"', 'command = "sync_time"',
              'cron = "0 3 * * *"', 'target = "site-a"', ""]
    return "\n".join(lines)


@pytest.fixture
async def app(
    emulate: Callable[..., Emulated], tmp_path: Path
) -> AsyncIterator[FleetApp]:
    """The app over a store and an engine polling 5 emulated devices (one offline)."""
    configs = [device_config(d, profile=Profile(reboot_s=0.3)) for d in LAYOUT]
    em = emulate(configs, users={c.id: sample_users(3) for c in configs})
    em.emu.run(em.fleet.set_faults(OFFLINE, {"offline": True}))
    config = parse_config(two_site_toml(configs), tmp_path / "fleet.toml")
    store = await open_store(tmp_path / "fleet.db")
    try:
        yield FleetApp(store, Engine(config, store), refresh_s=0.2)
    finally:
        await store.close()


async def wait_for(pilot: Pilot[None], cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the app run until ``cond()`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await pilot.pause(0.05)


async def click(pilot: Pilot[None], selector: str) -> None:
    """Click a widget of the current screen once the screen has laid out what changed.

    A pilot's click aims at where the widget was last laid out: right after a
    dialog grew (a preview arriving), its buttons are about to move, and a click
    aimed then lands on what is there next (it did, once in a dozen runs on a busy
    machine). So the app runs until idle first, and a click that misses fails here.
    """
    await pilot.pause()
    assert await pilot.click(selector), f"the click at {selector} landed elsewhere"


def _settled(app: FleetApp) -> bool:
    rows = app.rows
    return len(rows) == len(LAYOUT) and all(
        r.device.status == (DeviceStatus.OFFLINE if r.id == OFFLINE else DeviceStatus.ONLINE)
        for r in rows.values()
    )


def _tree(app: FleetApp) -> SiteTree:
    return app.query_one("#tree", SiteTree)


def _header(app: FleetApp) -> str:
    return str(app.query_one("#totals").render())


async def test_tree_header_offline_select_and_filter(app: FleetApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: _settled(app))
        await wait_for(pilot, lambda: "4 online" in _header(app))
        assert _header(app).startswith(
            "5 devices across 2 sites · 4 online · 1 offline   [poller]")

        tree = _tree(app)
        assert set(tree.site_nodes) == set(SITES)
        assert set(tree.device_nodes) == set(LAYOUT)
        # per-site counts, and the site with a problem comes first
        first_site = tree.root.children[0]
        assert first_site.data is not None and first_site.data.id == "site-a"
        assert "2/3 online" in str(tree.render_label(first_site, tree.rich_style,
                                                     tree.rich_style))
        # the offline device shows as offline, first in its site
        node = tree.device_nodes[OFFLINE]
        assert node.parent is first_site and first_site.children[0] is node
        assert "offline" in tree.render_label(node, tree.rich_style, tree.rich_style).plain

        # selecting a device (keyboard) shows its panel
        panel = app.query_one("#panel", DevicePanel)
        await pilot.press("down")
        await wait_for(pilot, lambda: app.selected is not None)
        for _ in range(len(LAYOUT) + len(SITES)):
            if app.selected == ("device", "dev_b_01"):
                break
            await pilot.press("j")
            await pilot.pause()
        assert app.selected == ("device", "dev_b_01")
        await wait_for(pilot, lambda: panel.detail is not None
                       and panel.detail.device.id == "dev_b_01")
        assert panel.detail is not None
        assert panel.detail.device.serial == next(
            r.device.serial for r in app.rows.values() if r.id == "dev_b_01")
        assert panel.detail.site is not None and panel.detail.site.timezone == "Europe/Paris"

        # "/" filters the tree by text; Esc clears it
        await pilot.press("slash")
        await pilot.press(*"dev_b_02")
        await wait_for(pilot, lambda: set(_tree(app).device_nodes) == {"dev_b_02"})
        assert set(_tree(app).site_nodes) == {"site-b"}
        await pilot.press("enter")  # keeps the filter, back to the tree
        assert set(_tree(app).device_nodes) == {"dev_b_02"}
        await pilot.press("escape")
        await wait_for(pilot, lambda: set(_tree(app).device_nodes) == set(LAYOUT))

        # "p": problems only, and back
        await pilot.press("p")
        await wait_for(pilot, lambda: set(_tree(app).device_nodes) == {OFFLINE})
        await pilot.press("p")
        await wait_for(pilot, lambda: set(_tree(app).device_nodes) == set(LAYOUT))


async def test_palette_restart_runs_through_the_engine(app: FleetApp) -> None:
    target = "dev_b_01"
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: target in app.rows
                       and app.rows[target].device.status == DeviceStatus.ONLINE)
        # "problems only" hides the (healthy) target; acting on it from the palette shows it
        await pilot.press("p")
        await wait_for(pilot, lambda: target not in _tree(app).device_nodes)
        await pilot.press("ctrl+p")
        await pilot.press(*f"restart {target}")
        await wait_for(pilot, lambda: _palette_top(app) == f"Restart {target}")
        await pilot.press("enter")

        async def states() -> list[CommandState]:
            return [c.state for c in await app.store.commands(device_id=target)]

        panel = app.query_one("#panel", DevicePanel)
        # queued from the palette, with source "tui", and the panel shows the device
        await wait_for(pilot, lambda: panel.detail is not None
                       and panel.detail.device.id == target and bool(panel.detail.commands))
        assert panel.detail is not None
        assert panel.detail.commands[0].command == "restart"
        assert target in _tree(app).device_nodes
        await wait_for(pilot, lambda: _tree(app).selected_id == ("device", target))
        request = await app.store.command_request(panel.detail.commands[0].request_id)
        assert request is not None and request.source == "tui"
        # the engine runs it; the store and then the panel show it done
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while await states() != [CommandState.DONE]:
            assert loop.time() < deadline, await states()
            await pilot.pause(0.1)
        await wait_for(pilot, lambda: panel.detail is not None and bool(panel.detail.commands)
                       and panel.detail.commands[0].state == CommandState.DONE)
        # and a toast says so (recorded, not mounted, under run_test)
        await wait_for(pilot, lambda: any(f"{target}: restart done" in str(n.message)
                                          for n in app._notifications))


async def test_viewer_reads_another_pollers_store_and_queues_for_it(
    emulate: Callable[..., Emulated], tmp_path: Path
) -> None:
    """Without an engine the app is a viewer: state from the store, commands run by the owner."""
    configs = [device_config(d, profile=Profile(reboot_s=0.3)) for d in LAYOUT]
    em = emulate(configs, users={c.id: sample_users(3) for c in configs})
    em.emu.run(em.fleet.set_faults(OFFLINE, {"offline": True}))
    config = parse_config(two_site_toml(configs), tmp_path / "fleet.toml")
    owner_store = await open_store(tmp_path / "fleet.db")
    engine = Engine(config, owner_store)
    await engine.start()
    viewer_store = await open_store(tmp_path / "fleet.db")
    try:
        app = FleetApp(viewer_store, refresh_s=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: _settled(app))
            await wait_for(pilot, lambda: "1 offline" in _header(app))
            assert "viewer" in _header(app)
            app.queue_command("dev_a_01", "sync_time")
            panel = app.query_one("#panel", DevicePanel)
            await wait_for(pilot, lambda: panel.detail is not None
                           and panel.detail.device.id == "dev_a_01"
                           and bool(panel.detail.commands)
                           and panel.detail.commands[0].state == CommandState.DONE,
                           timeout=15)
            assert panel.detail is not None and panel.detail.commands[0].command == "sync_time"
    finally:
        await engine.stop()
        await viewer_store.close()
        await owner_store.close()


def _palette_top(app: FleetApp) -> str | None:
    from textual.command import CommandList

    lists = app.screen.query(CommandList)
    if not lists:
        return None
    option_list = lists.first()
    if option_list.option_count == 0:
        return None
    prompt = option_list.get_option_at_index(0).prompt
    return getattr(prompt, "plain", str(prompt)).split("\n")[0].strip()


def test_arrange_sorts_problems_first_and_filters() -> None:
    from fleettui.domain import DeviceState, Site

    sites = [Site("a", "Alpha", "UTC"), Site("b", "Beta", "UTC")]

    def row(i: str, site: str, status: DeviceStatus, flapping: bool = False) -> DeviceRow:
        return DeviceRow(DeviceState(id=i, serial=f"S{i}", site_id=site, host="h", port=1,
                                     transport="tcp", status=status), flapping=flapping)

    rows = [row("a1", "a", DeviceStatus.ONLINE), row("b1", "b", DeviceStatus.ONLINE),
            row("b2", "b", DeviceStatus.OFFLINE), row("a2", "a", DeviceStatus.ONLINE, True)]
    out = arrange(sites, rows)
    # the worst first: the site with a device down, then the one with a flapping device
    assert [s.id for s in out] == ["b", "a"]
    assert [r.id for r in out[0].devices] == ["b2", "b1"]
    assert [r.id for r in out[1].devices] == ["a2", "a1"]
    assert (out[0].online, out[0].total) == (1, 2)
    assert [r.id for s in arrange(sites, rows, problems_only=True) for r in s.devices] == [
        "b2", "a2"]
    # the selected device stays in "problems only" after it recovers
    assert "a1" in [r.id for s in arrange(sites, rows, problems_only=True, keep="a1")
                    for r in s.devices]
    assert [r.id for s in arrange(sites, rows, text="beta") for r in s.devices] == ["b2", "b1"]
    assert [r.id for s in arrange(sites, rows, text="Sa1") for r in s.devices] == ["a1"]
    assert gauge(0.5, 10) == "█████░░░░░ 50%"
    assert gauge(None) == "unknown"


def test_demo_command_defaults_and_styles_are_found() -> None:
    from fleettui.cli import build_parser
    from fleettui.tui.paths import styles_dir

    args = build_parser().parse_args(["demo"])
    assert (args.devices, args.sites, args.seed) == (62, 14, 1)
    assert (args.base_address, args.port, args.punch_rate) == ("127.0.1.1", 4370, 2.0)
    assert (styles_dir() / "fleettui.tcss").is_file()
    assert Path(str(FleetApp.CSS_PATH)).is_file()


async def test_palette_ranks_its_own_actions_first_and_the_selected_device_first(
    app: FleetApp,
) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: all(d in app.rows for d in LAYOUT))
        app.jump(("device", "dev_b_02"))
        await wait_for(pilot, lambda: app.selected == ("device", "dev_b_02"))
        await pilot.press("ctrl+p")
        # every device's restart matches "restart": the selected device's comes first
        await pilot.press(*"restart")
        await wait_for(pilot, lambda: _palette_top(app) == "Restart dev_b_02")
        await pilot.press(*["backspace"] * 7)
        # "s" matches Textual's Screenshot as well as fleettui's "Sync clock ...": ours win
        await pilot.press("s")
        await wait_for(pilot, lambda: (_palette_top(app) or "").startswith(
            ("Sync", "Silence", "Restart", "Jump")))
        assert "Screenshot" not in (_palette_top(app) or "")
        await pilot.press("escape")


async def test_palette_restarts_a_whole_site_after_naming_the_count(app: FleetApp) -> None:
    """Restart every device of a site: a confirmation names the count; one request results."""
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: all(d in app.rows for d in LAYOUT))
        await pilot.press("ctrl+p")
        await pilot.press(*"restart all devices of site b")
        await wait_for(pilot, lambda: (_palette_top(app) or "").startswith(
            "Restart all devices of"))
        assert "(site-b)" in (_palette_top(app) or "")
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(app.screen.query("#question")))
        question = str(app.screen.query_one("#question").render())
        assert "all 2 device(s)" in question
        await pilot.press("y")

        async def site_states() -> list[CommandState]:
            cmds = [c for c in await app.store.commands() if c.device_id.startswith("dev_b")]
            return sorted(c.state for c in cmds)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while await site_states() != [CommandState.DONE, CommandState.DONE]:
            assert loop.time() < deadline, await site_states()
            await pilot.pause(0.1)
        requests = {c.request_id for c in await app.store.commands()}
        assert len(requests) == 1


async def test_palette_declined_site_restart_queues_nothing(app: FleetApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: all(d in app.rows for d in LAYOUT))
        await pilot.press("ctrl+p")
        await pilot.press(*"restart all devices of site a")
        await wait_for(pilot, lambda: (_palette_top(app) or "").startswith(
            "Restart all devices of"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(app.screen.query("#question")))
        await pilot.press("n")
        await wait_for(pilot, lambda: not app.screen.query("#question"))
        assert await app.store.commands() == []


async def test_palette_silences_a_device(app: FleetApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: OFFLINE in app.rows)
        await pilot.press("ctrl+p")
        await pilot.press(*f"silence {OFFLINE}")
        await wait_for(pilot, lambda: _palette_top(app) == f"Silence {OFFLINE} for 2h")
        await pilot.press("enter")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not await app.store.active_silences(app.now()):
            assert loop.time() < deadline
            await pilot.pause(0.1)
        (silence,) = await app.store.active_silences(app.now())
        assert (silence.target, silence.created_by) == (OFFLINE, "tui")


async def test_a_site_panel_lists_its_schedules(app: FleetApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: all(d in app.rows for d in LAYOUT))
        app.jump(("site", "site-a"))
        app.selected = ("site", "site-a")
        await app.refresh_panel()
        text = str(app.query_one("#panel", DevicePanel).render())
        assert "nightly-clock: sync_time → site-a · next" in text


async def test_opening_on_a_long_history_shows_only_the_last_events(tmp_path: Path) -> None:
    """A database with years of events opens at once: the log starts near the end."""
    from datetime import UTC, datetime

    from textual.widgets import RichLog

    from fleettui.domain import DeviceState, Site

    store = await open_store(tmp_path / "old.db")
    try:
        await store.sync_fleet([Site("s", "S", "UTC")],
                               [DeviceState("d1", "S1", "s", "127.20.230.1", 4370, "tcp")])
        for i in range(1200):
            await store.add_event("sync", f"old event {i}", at=datetime(2025, 1, 1, tzinfo=UTC),
                                  device_id="d1")
        newest = await store.last_event_id()
        read: list[int] = []
        real = store.events_after

        async def counting(last_id: int = 0, limit: int = 1000):  # type: ignore[no-untyped-def]
            events = await real(last_id, limit)
            read.extend(e.id for e in events)
            return events

        store.events_after = counting  # type: ignore[method-assign]
        app = FleetApp(store, refresh_s=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.last_event_id == newest)
            log = app.query_one("#events", RichLog)
            assert len(log.lines) <= 500
        assert min(read) > newest - 500  # history before the last screenful is never read
    finally:
        await store.close()


async def test_a_viewer_hears_of_alerts_the_owning_poller_raises(
    emulate: Callable[..., Emulated], tmp_path: Path
) -> None:
    """Alerts come from the owner's engine; a viewer reads them from the store's events and
    toasts them (rate-limited like an embedded engine's sinks). Alerts already in the log when
    it opens are not toasted again."""
    configs = [device_config(d, profile=Profile(reboot_s=0.3)) for d in LAYOUT]
    em = emulate(configs, users={c.id: sample_users(3) for c in configs})
    toml = two_site_toml(configs) + "\n[alerts]\nconfirm_after_s = 0\n"
    config = parse_config(toml, tmp_path / "fleet.toml")
    owner_store = await open_store(tmp_path / "fleet.db")
    engine = Engine(config, owner_store)
    await engine.start()
    viewer_store = await open_store(tmp_path / "fleet.db")
    try:
        app = FleetApp(viewer_store, config=config, embed=False, refresh_s=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: len(app.rows) == len(LAYOUT) and all(
                r.device.status == DeviceStatus.ONLINE for r in app.rows.values()))
            em.emu.run(em.fleet.set_faults(OFFLINE, {"offline": True}))
            await wait_for(pilot, lambda: _settled(app))
            assert not app._notifications
            # the owner's alert evaluation (its timer runs every 10 s; run it now)
            await engine.alerts.evaluate(engine.clock())
            await wait_for(pilot, lambda: any(OFFLINE in n.message and n.title == "alert"
                                              for n in app._notifications))
            assert (await owner_store.alerts())[0].target == OFFLINE
    finally:
        await engine.stop()
        await viewer_store.close()
        await owner_store.close()


async def test_palette_refreshes_a_devices_info_through_the_queue(app: FleetApp) -> None:
    target = "dev_a_01"
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: target in app.rows
                       and app.rows[target].device.status == DeviceStatus.ONLINE)
        await pilot.press("ctrl+p")
        await pilot.press(*f"refresh info {target}")
        await wait_for(pilot, lambda: _palette_top(app) == f"Refresh info {target}")
        await pilot.press("enter")

        async def states() -> list[tuple[str, CommandState]]:
            return [(c.command, c.state) for c in await app.store.commands(device_id=target)]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while await states() != [("refresh_info", CommandState.DONE)]:
            assert loop.time() < deadline, await states()
            await pilot.pause(0.1)


async def test_the_tree_reorders_its_nodes_in_place_when_only_the_order_changes() -> None:
    """A device going offline moves it (and its site) first: the same nodes are put in
    the new order, the cursor stays on what it was on; a filter that hides devices
    still rebuilds."""
    from textual.app import App, ComposeResult

    from fleettui.domain import DeviceState, Site

    sites = [Site("a", "Alpha", "UTC"), Site("b", "Beta", "UTC")]

    def rows(offline: str = "") -> list[DeviceRow]:
        return [DeviceRow(DeviceState(id=i, serial=f"S{i}", site_id=i[0], host="h", port=1,
                                      transport="tcp",
                                      status=DeviceStatus.OFFLINE if i == offline
                                      else DeviceStatus.ONLINE))
                for i in ("a1", "a2", "b1", "b2", "b3")]

    class TreeApp(App[None]):
        def compose(self) -> ComposeResult:
            yield SiteTree(id="tree")

    app = TreeApp()
    async with app.run_test(size=(60, 20)) as pilot:
        tree = app.query_one(SiteTree)
        tree.show(arrange(sites, rows()))
        await pilot.pause()
        nodes = dict(tree.device_nodes)
        tree.focus_on(("device", "a2"))
        await pilot.pause()
        assert tree.selected_id == ("device", "a2")

        tree.show(arrange(sites, rows(offline="b3")))
        await pilot.pause()
        assert tree.device_nodes == nodes and all(
            tree.device_nodes[k] is nodes[k] for k in nodes)  # not rebuilt
        assert [n.data.id for n in tree.root.children] == ["b", "a"]  # type: ignore[union-attr]
        assert [n.data.id for n in tree.root.children[0].children] == [  # type: ignore[union-attr]
            "b3", "b1", "b2"]
        assert "offline" in tree.render_label(nodes["b3"], tree.rich_style,
                                              tree.rich_style).plain
        assert tree.selected_id == ("device", "a2")
        assert tree.cursor_node is nodes["a2"]

        tree.show(arrange(sites, rows(offline="b3"), problems_only=True))
        await pilot.pause()
        assert set(tree.device_nodes) == {"b3"}


async def test_a_burst_of_events_is_drawn_bounded_in_time_order_with_its_syncs_folded(
    tmp_path: Path,
) -> None:
    """300 events arriving in one refresh, a third of them syncs: the syncs are one line,
    the newest status lines are drawn (LOG_SHOWN in all) in time order, however they were
    committed (the store keeps every one)."""
    from datetime import UTC, datetime, timedelta

    from textual.widgets import RichLog

    from fleettui.domain import DeviceState, Site
    from fleettui.tui.app import LOG_SHOWN

    store = await open_store(tmp_path / "burst.db")
    try:
        await store.sync_fleet([Site("s", "S", "UTC")],
                               [DeviceState("d1", "S1", "s", "127.20.230.1", 4370, "tcp")])
        app = FleetApp(store, refresh_s=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app._tailing)
            log = app.query_one("#events", RichLog)
            t0 = datetime(2026, 1, 1, tzinfo=UTC)
            async with app._refresh_lock:  # no refresh reads the log while they land
                for i in range(300):
                    # committed newest first: the log puts them back in time order
                    sync = i % 3 == 0
                    at = t0 + (timedelta(minutes=10) if sync else timedelta(seconds=300 - i))
                    await store.add_event("sync" if sync else "device.offline", f"burst {i}",
                                          at=at, device_id="d1")
            newest = await store.last_event_id()
            await wait_for(pilot, lambda: app.last_event_id == newest)
            await pilot.pause()
            texts = [strip.text.rstrip() for strip in log.lines]
            assert len(texts) == LOG_SHOWN  # the fold and the newest 99 outages
            assert texts[-1] == "00:10:00 sync      100 events from 1 device at s"
            offline = texts[:-1]
            assert all(t.split()[1] == "offline" for t in offline)
            assert [t.split()[0] for t in offline] == sorted(t.split()[0] for t in offline)
            assert offline[0].endswith("burst 148") and offline[-1].endswith("burst 1")
    finally:
        await store.close()


def test_the_header_counts_shorten_for_narrow_screens() -> None:
    from fleettui.domain import DeviceStatus
    from fleettui.tui.model import Totals
    from fleettui.tui.problems import Issue

    t = Totals(devices=62, sites=14, online=59, offline=2, error=1, unknown=0, flapping=1,
               marked=((DeviceStatus.ONLINE, Issue.FLAPPING, 1),
                       (DeviceStatus.ONLINE, Issue.DRIFT, 1)))
    assert t.text() == ("62 devices across 14 sites · 59 online (1 flapping, 1 clock off)"
                        " · 2 offline · 1 in error")
    assert t.text(1) == ("62 devices · 14 sites · 59 online (1 flapping, 1 clock) · 2 offline"
                         " · 1 error")
    # the shortest still says "online" and "offline" (what an operator scans for)
    assert t.text(2) == "62 devices · 59 online (1 flapping, 1 clock) · 2 offline · 1 error"
    fresh = Totals(devices=3, sites=1, online=0, offline=0, error=0, unknown=3, flapping=0)
    assert fresh.text(1).endswith("3 unchecked") and fresh.text().endswith("3 not checked yet")


async def test_devices_and_sites_added_while_running_appear_in_the_tree(tmp_path: Path) -> None:
    """A device registered at run time shows up, on a known site or on a site new since the
    app started (the store is the integration point: the app just reads it)."""
    from fleettui.domain import DeviceState, Site

    store = await open_store(tmp_path / "fleet.db")
    site_a, site_b = Site("site-a", "Site A", "UTC"), Site("site-b", "Site B", "UTC")

    def device(device_id: str, site: Site, n: int) -> DeviceState:
        return DeviceState(device_id, f"SN{n}", site.id, f"127.0.9.{n}", 4370, "tcp")

    first = [device("dev_a_01", site_a, 1)]
    await store.sync_fleet([site_a], first)
    try:
        app = FleetApp(store, refresh_s=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            tree = app.query_one("#tree", SiteTree)
            await wait_for(pilot, lambda: set(tree.device_nodes) == {"dev_a_01"})
            await store.sync_fleet([site_a, site_b], [*first, device("dev_a_02", site_a, 2),
                                                      device("dev_b_01", site_b, 3)])
            await wait_for(pilot, lambda: set(tree.device_nodes) == {
                "dev_a_01", "dev_a_02", "dev_b_01"})
            assert set(tree.site_nodes) == {"site-a", "site-b"}
            assert "3 devices across 2 sites" in _header(app)
    finally:
        await store.close()


async def test_a_viewer_of_a_shared_database_is_woken_by_notify(pg_url: str) -> None:
    """A viewer of a PostgreSQL store hears another process's event at its commit (LISTEN/
    NOTIFY), with no steady refresh to find it (this app's tick is an hour)."""
    from datetime import UTC, datetime

    from textual.widgets import RichLog

    from fleettui.domain import Site

    writer, viewer_store = await open_store(pg_url), await open_store(pg_url)
    try:
        await writer.sync_fleet([Site("a", "A", "UTC")], [])
        app = FleetApp(viewer_store, refresh_s=3600)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app._tailing)  # the first read is done
            event = await writer.add_event("device.operation", "told by NOTIFY",
                                          at=datetime.now(UTC))
            await wait_for(pilot, lambda: app.last_event_id == event.id, timeout=30)
            log = app.query_one("#events", RichLog)
            assert any("told by NOTIFY" in line.text for line in log.lines)
    finally:
        await viewer_store.close()
        await writer.close()
