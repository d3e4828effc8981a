"""The fleet map: its layout (a pure function) and the widget, driven by Textual's Pilot.

The layout must put 2,000 devices on 100 sites on one 80x24 screen (78x19
inside the app's border), draw every device exactly once in the order given,
and scroll rather than drop any when even the densest form cannot fit. Then the
map in the control room, over a real store: the opening view, moving between
the views with the selection kept, 2,000 devices on one 80x24 screen.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import RichLog

from fleettui.domain import DeviceState, DeviceStatus, Site, StatusChange
from fleettui.store import Store, open_store
from fleettui.tui.fleet_map import FleetMap, FleetMapStatus
from fleettui.tui.map_layout import (
    Label,
    MapLayout,
    Pitch,
    layout_map,
    nearest_survivor,
    site_step,
)
from fleettui.tui.map_text import Tone, legend, shorten, status_text, tone_of
from fleettui.tui.model import DeviceRow, SiteRow
from fleettui.tui.problems import Issue

KINDS = ("Plant", "Warehouse", "Store", "Farm", "Office", "Clinic")
CITIES = ("Lyon", "Casablanca", "Mexico City", "Ho Chi Minh City", "Sao Paulo", "Tokyo", "Lima")


def site_name(i: int) -> str:
    """A name like the demo's ("Plant C - Lyon"), different for each index."""
    return f"{KINDS[i % len(KINDS)]} {chr(65 + i // len(KINDS) % 26)} - {CITIES[i % len(CITIES)]}"


def row(device_id: str, site_id: str, status: DeviceStatus = DeviceStatus.ONLINE,
        flapping: bool = False, issues: tuple[Issue, ...] = ()) -> DeviceRow:
    """A device row as the app arranges them."""
    return DeviceRow(DeviceState(device_id, f"S{device_id}", site_id, "h", 1, "tcp",
                                 status=status), flapping=flapping, issues=issues)


def fleet(sizes: list[int], names: list[str] | None = None) -> list[SiteRow]:
    """Sites of these sizes, devices "s<site>d<n>", mostly online with a few down."""
    out = []
    statuses = [DeviceStatus.ONLINE] * 7 + [DeviceStatus.OFFLINE, DeviceStatus.ERROR,
                                            DeviceStatus.UNKNOWN]
    for s, size in enumerate(sizes):
        site = Site(f"site{s}", names[s] if names else site_name(s), "UTC")
        rows = [row(f"s{s}d{d}", site.id, statuses[(s + d) % len(statuses)]) for d in range(size)]
        out.append(SiteRow(site, rows, total=size))
    return out


def sizes_summing_to(total: int, sites: int, seed: int = 7) -> list[int]:
    """``sites`` uneven sizes (1 to about 3x the mean) that add up to ``total``."""
    rng = random.Random(seed)
    weights = [rng.uniform(0.2, 3.0) for _ in range(sites)]
    sizes = [max(1, int(total * w / sum(weights))) for w in weights]
    sizes[0] += total - sum(sizes)
    return sizes


def shape(sites: list[SiteRow]) -> list[tuple[str, int]]:
    """What the layout takes: each site's name and device count."""
    return [(s.site.name, len(s.devices)) for s in sites]


def assert_drawn_once_in_order(layout: MapLayout, sizes: list[tuple[str, int]]) -> None:
    """Every device has one position of its own, inside the width, in the order given;
    every site has its label; nothing overlaps."""
    total = sum(n for _, n in sizes)
    assert layout.devices == total
    positions = list(zip(layout.line, layout.col, layout.half, strict=True))
    assert len(set(positions)) == total
    assert positions == sorted(positions)  # flat order runs left to right, line by line
    assert all(0 <= col < layout.width for col in layout.col)
    assert all(0 <= line < layout.height for line in layout.line)
    assert [label.site for label in layout.labels] == list(range(len(sizes)))
    for label, (name, _) in zip(layout.labels, sizes, strict=True):
        assert label.text == shorten(name, layout.form.label) and label.text
    site_of = [s for s, (_, n) in enumerate(sizes) for _ in range(n)]
    assert layout.site == site_of
    for items in layout.items:
        spans = sorted((i.x, i.x + (len(i.text) if isinstance(i, Label)
                                    else layout.form.pitch.advance(i.size))) for i in items)
        assert all(a[1] <= b[0] for a, b in pairwise(spans))
        assert all(end <= layout.width + 1 for _, end in spans)  # a sparse run's last space


# --- layout ------------------------------------------------------------------


def test_two_thousand_devices_on_a_hundred_sites_fit_in_78_by_19() -> None:
    for sizes in (sizes_summing_to(2000, 100), [20] * 100):
        sites = shape(fleet(sizes))
        layout = layout_map(sites, 78, 19)
        assert layout.fits and layout.height <= 19 and layout.width == 78
        assert layout.form.pitch is Pitch.HALF and not layout.form.table
        assert layout.form.label >= 3  # names shortened, not reduced to a letter or two
        assert_drawn_once_in_order(layout, sites)
        # two rows less (a status line inside the border) still fit, with shorter names
        assert layout_map(sites, 78, 17).fits


def test_the_demo_sized_fleet_gets_a_cell_per_device_and_full_names() -> None:
    sites = shape(fleet(sizes_summing_to(62, 14)))
    layout = layout_map(sites, 78, 19)
    assert layout.fits
    assert layout.form.pitch in (Pitch.SPARSE, Pitch.FULL)
    assert [label.text for label in layout.labels] == [name for name, _ in sites]
    assert_drawn_once_in_order(layout, sites)


def test_a_lopsided_fleet_fits_and_a_huge_one_scrolls_without_dropping_a_device() -> None:
    lopsided = shape(fleet([1200] + [10] * 80))
    layout = layout_map(lopsided, 78, 19)
    assert layout.fits and layout.height <= 19
    assert_drawn_once_in_order(layout, lopsided)

    huge = shape(fleet(sizes_summing_to(6000, 150)))
    layout = layout_map(huge, 78, 19)
    assert not layout.fits and layout.height > 19
    assert layout.width == 77  # a column for the scrollbar
    assert_drawn_once_in_order(layout, huge)


def test_forms_go_from_the_most_readable_to_the_densest_as_the_fleet_grows() -> None:
    pitches = [layout_map(shape(fleet([n] * 10)), 78, 19).form.pitch for n in (5, 90, 200)]
    assert pitches == [Pitch.SPARSE, Pitch.FULL, Pitch.HALF]
    # a fleet with no device and a site with none do not break anything
    assert layout_map([], 78, 19).devices == 0
    empty = layout_map([("Alpha", 0), ("Beta", 2)], 78, 19)
    assert empty.devices == 2 and [label.text for label in empty.labels] == ["Alpha", "Beta"]
    tiny = layout_map(shape(fleet([30, 3])), 4, 2)
    assert_drawn_once_in_order(tiny, shape(fleet([30, 3])))
    assert layout_map(shape(fleet([30, 3])), 1, 0).devices == 33  # labels cut, devices kept


def test_device_order_is_kept_in_every_form() -> None:
    sites = shape(fleet([7, 1, 12, 3]))
    for width, height in ((78, 19), (20, 12), (12, 3)):
        layout = layout_map(sites, width, height)
        assert_drawn_once_in_order(layout, sites)


def test_site_names_shorten_to_what_tells_them_apart() -> None:
    assert shorten("Plant A - Lyon", 32) == "Plant A - Lyon"
    assert shorten("Plant A - Lyon", 12) == "Plant A Lyon"
    assert shorten("Plant A - Lyon", 10) == "Pla A Lyon"
    assert shorten("Plant A - Lyon", 5) == "PALyo"
    assert shorten("Plant A - Lyon", 3) == "PAL"
    assert shorten("Site 042", 3) == "S42"
    assert shorten("Site 1042", 3) == "042"  # a number's last digits tell sites apart
    assert shorten("  Two\tlines\n ", 20) == "Two lines"
    assert all(len(shorten(site_name(i), w)) <= w for i in range(40) for w in range(1, 30))


def test_up_and_down_go_to_the_nearest_column_of_the_next_line_with_devices() -> None:
    # a table: "Alpha ● ● ● ● ●" / "Beta  ● ●" / "Empty" / "Gamma ● ● ● ●"
    layout = layout_map([("Alpha", 5), ("Beta", 2), ("Empty", 0), ("Gamma", 4)], 40, 10)
    assert layout.form.table and layout.form.pitch is Pitch.SPARSE
    assert layout.vertical(4, 1) == 6  # a5 → b2 (the nearest)
    assert layout.vertical(0, 1) == 5  # a1 → b1
    assert layout.vertical(6, -1) == 1  # b2 → a2 (the same column)
    assert layout.vertical(6, 1) == 8  # b2 → g2, over the site with no device
    assert layout.vertical(0, -1) is None
    assert layout.hit(0, layout.col[2]) == 2 and layout.hit(0, 0) is None


def test_page_keys_go_by_site_and_a_vanished_cursor_lands_on_its_neighbour() -> None:
    starts = [0, 5, 7]  # the first devices of three sites
    assert site_step(starts, 2, 1) == 5 and site_step(starts, 7, 1) is None
    assert site_step(starts, 6, -1) == 5 and site_step(starts, 5, -1) == 0
    assert site_step(starts, 0, -1) is None and site_step([], 0, 1) is None
    before = ["a", "b", "c", "d"]
    assert nearest_survivor(before, 2, {"a", "d"}) == "d"
    assert nearest_survivor(before, 1, {"a", "d"}) == "a"
    assert nearest_survivor(before, 1, set()) is None


def test_a_click_on_a_half_block_picks_its_half() -> None:
    layout = layout_map([("Big", 2000)], 78, 19)
    assert layout.form.pitch is Pitch.HALF
    line, col = layout.line[10], layout.col[10]  # devices 10 and 11 share a character
    assert layout.click(line, col, 0.0, cursor=0) == 10
    assert layout.click(line, col, 0.7, cursor=0) == 11  # the terminal reports pixels
    assert layout.click(line, col, 0.0, cursor=10) == 11  # no pixels: the other half
    assert layout.click(line, col, 0.0, cursor=11) == 10
    assert layout.click(line, col, 0.2, cursor=10) == 10  # pixels: the cursor's own half
    assert layout.holds(11, line, col) and not layout.holds(12, line, col)


def test_tones_say_what_the_operator_should_see() -> None:
    assert tone_of(row("a", "s")) is Tone.OK
    assert tone_of(row("a", "s", flapping=True)) is Tone.PROBLEM
    assert tone_of(row("a", "s", issues=(Issue.DRIFT,))) is Tone.PROBLEM
    assert tone_of(row("a", "s", DeviceStatus.OFFLINE, flapping=True)) is Tone.OFFLINE
    assert tone_of(row("a", "s", DeviceStatus.ERROR)) is Tone.ERROR
    assert tone_of(row("a", "s", DeviceStatus.UNKNOWN)) is Tone.UNKNOWN


def test_the_status_line_names_the_device_its_site_and_its_marks() -> None:
    site = fleet([1], ["Warehouse B - Mexico City"])[0]
    device = DeviceRow(row("dev_7", site.id).device, flapping=True,
                       issues=(Issue.FLAPPING, Issue.DRIFT), notes=("flapping", "clock +7m"))
    text = status_text(device, site, 120).plain
    assert text.startswith("dev_7 · Warehouse B - Mexico City · ● online")
    assert "↯ flapping" in text and "◷ clock +7m" in text
    assert text.endswith(legend().plain) and len(text) == 120
    assert legend().plain == "● online ● problem ✖ offline ▲ error ○ unknown"
    assert status_text(device, site, 96).plain.endswith(legend(short=True).plain)
    assert len(status_text(device, site, 30).plain) == 30


# --- the widget --------------------------------------------------------------


class MapApp(App[None]):
    """Only the map, recording what it says."""

    def __init__(self) -> None:
        super().__init__()
        self.moved: list[str] = []
        self.opened: list[str] = []

    def compose(self) -> ComposeResult:
        yield FleetMap(id="map")

    def on_fleet_map_moved(self, message: FleetMap.Moved) -> None:
        self.moved.append(message.device_id)

    def on_fleet_map_opened(self, message: FleetMap.Opened) -> None:
        self.opened.append(message.device_id)


async def test_arrows_move_the_cursor_along_the_flow_and_to_the_nearest_cell() -> None:
    app = MapApp()
    async with app.run_test(size=(80, 24)) as pilot:
        fleet_map = app.query_one(FleetMap)
        fleet_map.show(fleet([5, 2, 4]))
        fleet_map.focus()
        await pilot.pause()
        assert fleet_map.selected_id == "s0d0" and app.moved == ["s0d0"]
        await pilot.press("right", "l", "right", "right")
        assert fleet_map.selected_id == "s0d4"
        await pilot.press("down")
        assert fleet_map.selected_id == "s1d1"  # the nearest cell of the shorter row
        await pilot.press("up", "h")
        assert fleet_map.selected_id == "s0d0"
        await pilot.press("j", "j")
        assert fleet_map.selected_id == "s2d0"
        await pilot.press("end")
        assert fleet_map.selected_id == "s2d3"
        await pilot.press("pageup", "pageup")
        assert fleet_map.selected_id == "s1d0"
        await pilot.press("pagedown", "home")
        assert fleet_map.selected_id == "s0d0"
        await pilot.press("left", "up")  # at the edges: nowhere to go
        assert fleet_map.selected_id == "s0d0"
        await pilot.pause()
        assert app.moved == ["s0d0", "s0d1", "s0d2", "s0d3", "s0d4", "s1d1", "s0d1", "s0d0",
                             "s1d0", "s2d0", "s2d3", "s2d0", "s1d0", "s2d0", "s0d0"]


async def test_enter_and_a_click_on_the_cursor_open_the_device() -> None:
    app = MapApp()
    async with app.run_test(size=(80, 24)) as pilot:
        fleet_map = app.query_one(FleetMap)
        fleet_map.show(fleet([5, 2, 4]))
        fleet_map.focus()
        await pilot.pause()
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.opened == ["s1d0"]
        layout = fleet_map.map_layout
        assert layout is not None
        target = 9  # s2d2
        await pilot.click(FleetMap, offset=(layout.col[target], layout.line[target]))
        await pilot.pause()
        assert fleet_map.selected_id == "s2d2" and app.opened == ["s1d0"]
        await pilot.click(FleetMap, offset=(layout.col[target], layout.line[target]))
        await pilot.pause()
        assert app.opened == ["s1d0", "s2d2"]
        await pilot.click(FleetMap, offset=(layout.col[0], layout.line[0]), times=2)
        await pilot.pause()
        assert fleet_map.selected_id == "s0d0" and app.opened == ["s1d0", "s2d2", "s0d0"]
        await pilot.click(FleetMap, offset=(0, 20))  # nothing there
        await pilot.pause()
        assert fleet_map.selected_id == "s0d0"


async def test_half_blocks_show_and_click_each_device_of_a_character() -> None:
    app = MapApp()
    sites = fleet(sizes_summing_to(2000, 100))
    async with app.run_test(size=(78, 19)) as pilot:
        fleet_map = app.query_one(FleetMap)
        fleet_map.show(sites)
        await pilot.pause()
        layout = fleet_map.map_layout
        assert layout is not None and layout.fits and layout.form.pitch is Pitch.HALF
        lines = [fleet_map.render_line(y) for y in range(19)]
        text = "\n".join("".join(seg.text for seg in line) for line in lines)
        assert text.count("▌") == sum((len(s.devices) + 1) // 2 for s in sites)
        assert all(label.text in text for label in layout.labels)
        assert fleet_map.max_scroll_y == 0  # no scrolling needed
        # the cursor's half is bright white, the other half keeps its device's colour
        first = next(seg for seg in lines[layout.line[0]] if seg.text.startswith("▌"))
        assert first.style is not None and first.style.color is not None
        assert first.style.color.name == "bright_white"
        # a click on the cursor's character (no pixel position) selects its other half
        await pilot.click(FleetMap, offset=(layout.col[0], layout.line[0]))
        await pilot.pause()
        assert fleet_map.selected_id == "s0d1" and app.opened == []
        await pilot.press("right", "right")
        assert fleet_map.selected_id == "s0d3" and layout.half[3] == 1


async def test_an_update_that_reorders_keeps_the_cursor_on_its_device() -> None:
    app = MapApp()
    async with app.run_test(size=(80, 24)) as pilot:
        fleet_map = app.query_one(FleetMap)
        sites = fleet([4, 3])
        fleet_map.show(sites)
        await pilot.pause()
        assert fleet_map.select("s1d2") and fleet_map.selected_id == "s1d2"
        layout = fleet_map.map_layout
        # a status change alone does not lay the map out again
        changed = [SiteRow(s.site, [DeviceRow(replace(r.device, status=DeviceStatus.OFFLINE))
                                    for r in s.devices]) for s in sites]
        fleet_map.show(changed)
        assert fleet_map.map_layout is layout and fleet_map.selected_id == "s1d2"
        # problems first: the site and the device move; the cursor goes with its device
        reordered = [SiteRow(sites[1].site, sites[1].devices[::-1]), sites[0]]
        fleet_map.show(reordered)
        await pilot.pause()
        assert fleet_map.selected_id == "s1d2"
        assert fleet_map.selected_site is not None and fleet_map.selected_site.id == "site1"
        assert fleet_map.selected_row is not None and fleet_map.selected_row.id == "s1d2"
        # the device is filtered out: the cursor goes to its nearest neighbour
        moved = len(app.moved)
        fleet_map.show([SiteRow(sites[1].site, sites[1].devices[1::-1]), sites[0]])
        await pilot.pause()
        assert fleet_map.selected_id == "s1d1" and app.moved[moved:] == ["s1d1"]
        assert not fleet_map.select("gone")


async def test_select_before_the_first_show_and_a_huge_fleet_scrolls_to_the_cursor() -> None:
    app = MapApp()
    async with app.run_test(size=(80, 24)) as pilot:
        fleet_map = app.query_one(FleetMap)
        assert not fleet_map.select("s3d1") and fleet_map.selected_id is None
        fleet_map.show(fleet(sizes_summing_to(6000, 150)))
        await pilot.pause()
        assert fleet_map.selected_id is not None
        fleet_map.focus()
        await pilot.press("end")
        await pilot.pause()
        layout = fleet_map.map_layout
        assert layout is not None and not layout.fits
        assert fleet_map.scroll_offset.y == layout.height - 24
        await pilot.press("home")
        await pilot.pause()
        assert fleet_map.scroll_offset.y == 0


async def test_the_map_starts_on_the_device_asked_for_and_the_status_line_shows_it() -> None:
    class Both(App[None]):
        def compose(self) -> ComposeResult:
            yield FleetMap()
            yield FleetMapStatus()

    app = Both()
    async with app.run_test(size=(80, 24)) as pilot:
        fleet_map = app.query_one(FleetMap)
        fleet_map.select("s1d1")
        fleet_map.show(fleet([3, 3]))
        await pilot.pause()
        assert fleet_map.selected_id == "s1d1"
        status = app.query_one(FleetMapStatus)
        status.show(fleet_map.selected_row, fleet_map.selected_site)
        await pilot.pause()
        assert status.render().plain.startswith(f"s1d1 · {site_name(1)} · ")


# --- the map in the control room ---------------------------------------------


#: the control room's clock in these tests (the fleet came online then)
AT = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


async def _healthy_store(path: Path, sites: int, per_site: int) -> Store:
    """A store of a fleet all online (no problem anywhere)."""
    store = await open_store(path)
    at = AT
    site_list = [Site(f"s{i:03d}", site_name(i), "UTC") for i in range(sites)]
    devices = [DeviceState(f"d{i:03d}_{j:02d}", f"SN{i:03d}{j:02d}", s.id,
                           f"127.0.{i % 250}.{j + 1}", 4370, "tcp")
               for i, s in enumerate(site_list) for j in range(per_site)]
    await store.sync_fleet(site_list, devices)
    for d in devices:
        await store.record_status(StatusChange(d.id, DeviceStatus.ONLINE, "", at))
    return store


async def test_with_nothing_wrong_the_app_opens_on_the_map_and_m_and_enter_leave_it(
        tmp_path: Path) -> None:
    from fleettui.tui.app import FleetApp
    from fleettui.tui.fleet_table import FleetTable
    from fleettui.tui.tree import SiteTree
    from tests.test_tui import wait_for

    store = await _healthy_store(tmp_path / "fleet.db", sites=14, per_site=4)
    try:
        app = FleetApp(store, refresh_s=0.2, clock=lambda: AT)
        async with app.run_test(size=(80, 24)) as pilot:
            fleet_map = app.query_one("#map", FleetMap)
            await wait_for(pilot, lambda: app.view == "map" and fleet_map.has_focus)
            await wait_for(pilot, lambda: fleet_map.selected_id is not None)
            await pilot.press("right", "right")
            chosen = fleet_map.selected_id
            assert chosen is not None and app.selected == ("device", chosen)
            status = app.query_one("#map-status", FleetMapStatus)
            assert chosen in status.render().plain
            await pilot.press("t")  # the table keeps the device under its cursor
            await wait_for(pilot, lambda: app.query_one("#table", FleetTable).selected_id
                           == chosen)
            await pilot.press("m")
            await wait_for(pilot, lambda: app.view == "map")
            await pilot.press("m")  # back to where the map was opened from
            await wait_for(pilot, lambda: app.view == "table")
            await pilot.press("m")
            await wait_for(pilot, lambda: app.view == "map")
            for i in range(40):  # the log, hidden, goes on taking lines
                await store.add_event("device.online", f"d000_00 online ({i})", at=AT,
                                      device_id="d000_00")
            newest = await store.last_event_id()
            await wait_for(pilot, lambda: app.last_event_id == newest)
            await pilot.press("enter")  # Enter opens the device in the tree
            tree = app.query_one("#tree", SiteTree)
            await wait_for(pilot, lambda: app.view == "tree"
                           and tree.selected_id == ("device", chosen))
            # the log, hidden under the map, comes back drawn at its width, at its end
            log = app.query_one("#events", RichLog)
            await wait_for(pilot, lambda: log.scroll_y == log.max_scroll_y
                           and bool(log.lines)
                           and log.lines[-1].text.rstrip().endswith("online (39)"))
    finally:
        await store.close()


async def test_two_thousand_devices_fit_on_one_80_by_24_screen(tmp_path: Path) -> None:
    from fleettui.tui.app import FleetApp
    from tests.test_tui import wait_for

    store = await _healthy_store(tmp_path / "fleet.db", sites=100, per_site=20)
    try:
        app = FleetApp(store, refresh_s=0.5, clock=lambda: AT)
        async with app.run_test(size=(80, 24)) as pilot:
            fleet_map = app.query_one("#map", FleetMap)
            await wait_for(pilot, lambda: app.view == "map"
                           and fleet_map.map_layout is not None, timeout=30)
            layout = fleet_map.map_layout
            assert layout is not None
            assert layout.devices == 2000 and layout.fits
            assert fleet_map.max_scroll_y == 0  # nothing below the fold
    finally:
        await store.close()


async def test_with_a_problem_the_app_opens_on_the_tree_at_the_worst_one(
        tmp_path: Path) -> None:
    from fleettui.tui.app import FleetApp
    from fleettui.tui.tree import SiteTree
    from tests.test_tui import wait_for

    store = await _healthy_store(tmp_path / "fleet.db", sites=3, per_site=3)
    try:
        await store.record_status(StatusChange(
            "d001_02", DeviceStatus.OFFLINE, "no answer",
            datetime(2026, 12, 3, 9, 5, tzinfo=UTC), DeviceStatus.ONLINE))
        app = FleetApp(store, refresh_s=0.2, clock=lambda: AT)
        async with app.run_test(size=(80, 24)) as pilot:
            tree = app.query_one("#tree", SiteTree)
            await wait_for(pilot, lambda: tree.selected_id == ("device", "d001_02"))
            # the opening view was chosen with the problem in sight: the tree stays
            assert not app._opening and app.view == "tree"
    finally:
        await store.close()
