"""The fleet map: every device as one cell coloured by its status, grouped by site.

``map_layout.py`` says where each device goes, ``map_draw.py`` how a line
looks; this widget draws with the Line API and moves a cursor over the cells.
``show()`` is called on every refresh (every second, several times a second in
a burst of changes): the layout is computed again only when the sites' names,
sizes or order, or the widget's size, change; a line is drawn again only when
a device on it changed colour or the cursor came or went. ``FleetMapStatus``
is the line under it: the device under the cursor, and a legend.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from fleettui.tui.map_draw import Paint, draw_line
from fleettui.tui.map_layout import Label, MapLayout, layout_map, nearest_survivor, site_step
from fleettui.tui.map_text import status_text, tone_of
from fleettui.tui.model import DeviceRow, SiteRow


class FleetMap(ScrollView, can_focus=True):
    """The whole fleet on one screen, a cell per device; arrows move, Enter opens."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,h", "move(-1)", "Previous device", show=False, id="map.left"),
        Binding("right,l", "move(1)", "Next device", show=False, id="map.right"),
        Binding("up,k", "vertical(-1)", "Device above", show=False, id="map.up"),
        Binding("down,j", "vertical(1)", "Device below", show=False, id="map.down"),
        Binding("home", "edge(0)", "First device", show=False, id="map.first"),
        Binding("end", "edge(-1)", "Last device", show=False, id="map.last"),
        Binding("pageup", "site(-1)", "Previous site", show=False, id="map.previous_site"),
        Binding("pagedown", "site(1)", "Next site", show=False, id="map.next_site"),
        Binding("enter", "open", "Open device", show=False, id="map.open"),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {"fleet-map--label", "fleet-map--site"}
    DEFAULT_CSS = """
    FleetMap { overflow-x: hidden; overflow-y: auto; scrollbar-size-vertical: 1; }
    FleetMap > .fleet-map--label { text-style: bold; }
    FleetMap > .fleet-map--site { text-style: bold reverse; }
    """

    class _DeviceMessage(Message):
        """A message about one device of the map."""

        def __init__(self, fleet_map: FleetMap, device_id: str) -> None:
            super().__init__()
            self.fleet_map = fleet_map
            self.device_id = device_id

        @property
        def control(self) -> FleetMap:
            """The map that sent it (for ``@on(..., selector)``)."""
            return self.fleet_map

    class Moved(_DeviceMessage):
        """The cursor is on another device (keys, mouse, ``select()``, or the one it
        was on is no longer shown)."""

    class Opened(_DeviceMessage):
        """Enter, a click on the cursor's device, or a double click: show its detail."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._arranged: list[SiteRow] = []
        self._rows: list[DeviceRow] = []
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        #: the flat index of each site's first device, and of those of the sites with some
        self._site_starts: list[int] = []
        self._starts: list[int] = []
        self._tones = b""
        self._layout: MapLayout | None = None
        self._layout_key: tuple[object, ...] = ()
        #: each line drawn, with what it was drawn from (drawn again when that changes)
        self._strips: dict[int, tuple[tuple[object, ...], Strip]] = {}
        self._paint: Paint | None = None
        self._cursor = -1
        #: the device the cursor is on, or the one asked for before the first show()
        self._cursor_id: str | None = None
        self._opened_by_click = False

    # --- what the app calls -------------------------------------------------

    def show(self, arranged: list[SiteRow]) -> None:
        """Show these sites and devices (in this order), keeping the cursor on its device."""
        self._arranged = arranged
        rows = [r for site in arranged for r in site.devices]
        ids = [r.id for r in rows]
        previous, at = self._ids, self._cursor
        if ids != self._ids:
            self._ids, self._index = ids, {d: i for i, d in enumerate(ids)}
        self._rows = rows
        self._count_sites(arranged)
        tones = bytes(tone_of(r) for r in rows)
        if self._relayout() or tones != self._tones:
            self._tones = tones
            self.refresh()
        self._follow(previous, at)

    def select(self, device_id: str) -> bool:
        """Put the cursor on a device; False if it is not shown (before the first
        ``show()``, the map remembers it and starts there)."""
        index = self._index.get(device_id)
        if index is None:
            if not self._ids:
                self._cursor_id = device_id
            return False
        self._move_to(index)
        return True

    @property
    def selected_id(self) -> str | None:
        """The device under the cursor."""
        return self._ids[self._cursor] if 0 <= self._cursor < len(self._ids) else None

    @property
    def selected_row(self) -> DeviceRow | None:
        """The row of the device under the cursor (for the status line)."""
        return self._rows[self._cursor] if 0 <= self._cursor < len(self._rows) else None

    @property
    def selected_site(self) -> SiteRow | None:
        """The site of the device under the cursor."""
        if not 0 <= self._cursor < len(self._ids):
            return None
        return self._arranged[bisect_right(self._site_starts, self._cursor) - 1]

    @property
    def map_layout(self) -> MapLayout | None:
        """Where everything is drawn now (None while the map has no size)."""
        return self._layout

    # --- layout and cursor --------------------------------------------------

    def _count_sites(self, arranged: list[SiteRow]) -> None:
        """Where each site's devices start in the flat order."""
        self._site_starts, self._starts, first = [], [], 0
        for site in arranged:
            self._site_starts.append(first)
            if site.devices:
                self._starts.append(first)
            first += len(site.devices)

    def on_resize(self) -> None:
        """Lay the map out again for its new size (the cursor kept in view)."""
        if self._relayout():
            self.refresh()
            self._reveal(self._cursor)

    def _relayout(self) -> bool:
        """Compute the layout again if the sites or the size changed; whether it did."""
        width, height = self.size
        shape = tuple((s.site.name, len(s.devices)) for s in self._arranged)
        key = (shape, width, height)
        if key == self._layout_key:
            return False
        self._layout_key = key
        self._strips.clear()
        self._layout = layout_map(shape, width, height) if width > 0 else None
        if self._layout is not None:
            self.virtual_size = Size(self._layout.width, self._layout.height)
        return True

    def _follow(self, previous: list[str], at: int) -> None:
        """After new data: the cursor on its device; if that one is gone, on the
        nearest survivor of the old order (else the first device)."""
        if not self._ids:
            self._cursor = -1
            return
        want = self._cursor_id
        if want is not None and want in self._index:
            if self._index[want] != self._cursor:
                self._cursor = self._index[want]
                self.refresh()
            return
        survivor = nearest_survivor(previous, at, self._index)
        self._cursor = -1
        self._move_to(self._index[survivor] if survivor is not None else 0)

    def _move_to(self, index: int) -> None:
        """Put the cursor on device ``index``, reveal it, and say so if it moved."""
        if not self._ids:
            return
        index = max(0, min(index, len(self._ids) - 1))
        before = self._cursor_id
        self._cursor, self._cursor_id = index, self._ids[index]
        self.refresh()
        self._reveal(index)
        if self._cursor_id != before:
            self.post_message(self.Moved(self, self._cursor_id))

    def _reveal(self, index: int) -> None:
        """Scroll so that device ``index`` is on screen."""
        if self._layout is None or not 0 <= index < self._layout.devices:
            return
        line, top = self._layout.line[index], self.scroll_offset.y
        height = max(1, self.scrollable_content_region.height)
        if line < top:
            self.scroll_to(y=line, animate=False)
        elif line >= top + height:
            self.scroll_to(y=line - height + 1, animate=False)

    # --- keys and mouse -----------------------------------------------------

    def action_move(self, step: int) -> None:
        """Along the flow: the previous or next device."""
        if self._cursor >= 0:
            self._move_to(self._cursor + step)

    def action_vertical(self, dy: int) -> None:
        """The device visually above or below (the nearest column)."""
        if self._layout is not None and 0 <= self._cursor < self._layout.devices:
            target = self._layout.vertical(self._cursor, dy)
            if target is not None:
                self._move_to(target)

    def action_edge(self, end: int) -> None:
        """The first (0) or the last (-1) device."""
        self._move_to(len(self._ids) - 1 if end < 0 else 0)

    def action_site(self, step: int) -> None:
        """The first device of the previous or next site (PgUp first goes back to the
        start of the cursor's own site)."""
        target = site_step(self._starts, self._cursor, step)
        if target is not None:
            self._move_to(target)

    def action_open(self) -> None:
        """Ask for the detail of the device under the cursor."""
        if self.selected_id is not None:
            self.post_message(self.Opened(self, self.selected_id))

    def on_click(self, event: events.Click) -> None:
        """A click selects the cell under it; a click on the cursor's cell, or a double
        click, opens it (``MapLayout.click`` says which half of a half block)."""
        offset = event.get_content_offset(self)
        if offset is None or self._layout is None:
            return
        line, col = offset.y + self.scroll_offset.y, offset.x
        if event.chain > 1:
            if self._layout.holds(self._cursor, line, col) and not self._opened_by_click:
                self.action_open()
            self._opened_by_click = True
            return
        self._opened_by_click = False
        target = self._layout.click(line, col, event.pointer_x % 1, self._cursor)
        if target == self._cursor:
            self._opened_by_click = True
            self.action_open()
        elif target is not None:
            self._move_to(target)

    # --- drawing ------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        """The visible lines; the styles they need are looked up once for all of them."""
        self._paint = None
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        """One line of the map, drawn again only when what it shows changed."""
        width = self.scrollable_content_region.width
        paint = self._styles()
        layout = self._layout
        line = y + self.scroll_offset.y
        if layout is None or not 0 <= line < layout.height:
            return Strip.blank(width, paint.base)
        start, end = layout.line_devices[line]
        site = layout.site[self._cursor] if 0 <= self._cursor < layout.devices else -1
        here = self._cursor if start <= self._cursor < end else -1
        labelled = any(isinstance(i, Label) and i.site == site for i in layout.items[line])
        key = (self._tones[start:end], here, site if labelled else -1, paint)
        cached = self._strips.get(line)
        if cached is None or cached[0] != key:
            segments, used = draw_line(layout, line, self._tones, self._cursor, paint)
            cached = self._strips[line] = (key, Strip(segments, used))
        return cached[1].crop_extend(0, width, paint.base)

    def _styles(self) -> Paint:
        """The widget's style and its labels' (looked up once a frame: it is not cheap)."""
        if self._paint is None:
            base = self.rich_style
            self._paint = Paint(base, base + self.get_component_rich_style("fleet-map--label"),
                                base + self.get_component_rich_style("fleet-map--site"))
        return self._paint


class FleetMapStatus(Widget):
    """One line under the map: the device under the cursor, and the legend."""

    DEFAULT_CSS = "FleetMapStatus { height: 1; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._row: DeviceRow | None = None
        self._site: SiteRow | None = None

    def show(self, row: DeviceRow | None, site: SiteRow | None) -> None:
        """Show this device (and its site); repaints only if the line would change."""
        if _line_key(row, site) != _line_key(self._row, self._site):
            self.refresh()
        self._row, self._site = row, site

    def render(self) -> Text:
        """The line at the widget's width."""
        return status_text(self._row, self._site, self.size.width)


def _line_key(row: DeviceRow | None, site: SiteRow | None) -> tuple[object, ...]:
    """What the status line depends on."""
    return (row.id if row else None, row.key() if row else None,
            site.site.name if site else None)
