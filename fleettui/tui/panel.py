"""The device panel: everything about the selected device, drawn from the store.

The same widget shows a site's summary when a site is selected (see
``site_panel``); the pictures (heartbeat bar, sparkline, gauges) are drawn
here from the numbers ``charts`` computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.segment import Segment
from rich.table import Table
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from fleettui.domain import Command, DeviceState, DeviceStatus, Site
from fleettui.engine.sync import SyncProgress
from fleettui.tui.charts import HourBucket, sync_text, sync_worth_showing
from fleettui.tui.model import GLYPHS, MARK_GLYPHS, gauge
from fleettui.tui.pictures import (
    LABEL_WIDTH,
    axis,
    heartbeat_text,
    hours_axis,
    hours_text,
    punches_today_text,
    site_zone,
    span,
    uptime_text,
)
from fleettui.tui.problems import Issue
from fleettui.tui.site_panel import SiteDetail, render_site


@dataclass(slots=True)
class DeviceDetail:
    """What the panel shows for one device (read from the store by the app)."""

    device: DeviceState
    site: Site | None
    now: datetime
    uptime_24h: float | None = None
    flapping: bool = False
    flap_pct: float = 0.0
    commands: list[Command] = field(default_factory=list)
    uptime_30d: float | None = None
    #: seconds of the last 24 h and 30 d in which its status was known (None: not given)
    seen_24h_s: float | None = None
    seen_30d_s: float | None = None
    #: dominant status per slot of the last 24 h, oldest first
    heartbeat: list[DeviceStatus] = field(default_factory=list)
    #: punches in the site's local day so far (None: not counted)
    punches_today: int | None = None
    #: punches per hour of the site's local day
    hours: list[HourBucket] = field(default_factory=list)
    #: the sync running now (embedded engine only)
    sync: SyncProgress | None = None
    #: what is wrong with it (``problems.issues_of``), and its marks as they read
    issues: tuple[Issue, ...] = ()
    marks: list[tuple[Issue, str]] = field(default_factory=list)


def _ago(dt: datetime | None, now: datetime) -> str:
    if dt is None:
        return "never"
    when = f"{dt:%H:%M:%S}" if dt.date() == now.date() else f"{dt:%Y-%m-%d %H:%M}"
    return f"{span(dt, now)} ago ({when} UTC)"


def _drift(value: float | None) -> str:
    if value is None:
        return "not checked yet"
    if abs(value) < 1:
        return f"{value:+.1f} s (ok)"
    return f"{value:+.0f} s ({'fast' if value > 0 else 'slow'})"


def render_detail(detail: DeviceDetail) -> RenderableType:
    """The panel's content for one device."""
    d, now = detail.device, detail.now
    glyph, colour = GLYPHS[d.status]
    title = Text.assemble((f"{glyph} ", colour), (d.id, "bold"))
    if d.name and d.name != d.id:
        title.append(f"  {d.name}")
    status = Text(d.status.value.upper(), style=f"bold {colour}")
    if d.status_reason:
        status.append(f" — {d.status_reason}", style="default")
    if detail.flapping:
        status.append(f"  ↯ flapping ({detail.flap_pct:.0f}% state change)", style="bold yellow")
    for mark, note in detail.marks:
        if mark is not Issue.FLAPPING:
            status.append(f"  {MARK_GLYPHS[mark][0]} {note}", style="bold yellow")
    site = (f"{detail.site.name} ({detail.site.id}) · {detail.site.timezone}"
            if detail.site else d.site_id)
    if d.records is not None and d.records_cap:
        records = Text(gauge(d.buffer_fill))
        records.append(f"  {d.records:,}/{d.records_cap:,}")
        if Issue.BUFFER in detail.issues:
            records.stylize("bold red")
    else:
        records = Text("unknown")
    zone = site_zone(detail.site)
    # what the operator came for first (at 80x24 it is what shows without scrolling): the
    # state, then the commands; the pictures and the identity below
    first: list[tuple[str, RenderableType]] = [
        ("Status", status),
        ("Since", _ago(d.status_since, now)),
        ("Last seen", _ago(d.last_seen, now)),
    ]
    if detail.sync is not None and sync_worth_showing(detail.sync.total, d.records,
                                                      d.synced_records):
        sync = Text(sync_text(detail.sync.done, detail.sync.total, d.records),
                    style="bold yellow")
        if detail.sync.total:
            sync.append("  " + gauge(detail.sync.done / detail.sync.total, 10), style="yellow")
        first.append(("Sync", sync))
    rest: list[tuple[str, RenderableType]] = []
    if detail.heartbeat:
        width = len(detail.heartbeat)
        rest.append(("Heartbeat", Group(heartbeat_text(detail.heartbeat),
                                        axis(width, "24h ago", "12h", "now"))))
    rest += [
        ("Uptime", uptime_text(detail.uptime_24h, detail.uptime_30d,
                               day_seen_s=detail.seen_24h_s,
                               month_seen_s=detail.seen_30d_s)),
        ("Punches today", punches_today_text(detail.punches_today, d.last_punch_at, now, zone)),
    ]
    if detail.hours:
        rest.append(("Per hour", Group(hours_text(detail.hours), hours_axis(detail.hours))))
    rest += [
        ("Records", records),
        ("Clock drift", Text(_drift(d.clock_drift_s),
                             style="bold red" if Issue.DRIFT in detail.issues else "")),
        ("Serial", d.serial),
        ("Model", d.model or "unknown"),
        ("Firmware", d.firmware or "unknown"),
        ("Address", f"{d.host}:{d.port}" if not d.push else
         f"dials in, last from {d.push_address}" if d.push_address else "dials in"),
        ("Transport", "PUSH (ADMS)" if d.push else d.transport.upper()),
        ("Site", site),
    ]
    if d.origin == "api":  # config devices are the norm: only the exception is said
        rest.append(("Declared", "through the HTTP API, not the config file"))
    return Group(title, Text(""), _label_grid(first), Text(""), _commands(detail.commands),
                 Text(""), _label_grid(rest))


def _label_grid(rows: list[tuple[str, RenderableType]]) -> Table:
    """Label | value rows (labels in a column of fixed width, so two grids line up)."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True, width=LABEL_WIDTH)
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def _commands(commands: list[Command]) -> Group:
    """The device's latest commands, newest first: one line each (when, what, state,
    number), what it returned on the line below, indented and wrapping, so the list
    fits the panel's 44 columns at 80."""
    lines: list[RenderableType] = [Text("Commands", style="bold")]
    width = max((len(c.command) for c in commands), default=0)
    for c in commands:
        style = {"done": "green", "failed": "red", "expired": "red",
                 "sent": "yellow", "queued": "cyan"}.get(c.state.value, "")
        lines.append(Text.assemble(f"{c.updated_at:%H:%M:%S} ", f"{c.command:<{width}} ",
                                   (f"{c.state.value:<7}", style), (f" #{c.id}", "dim")))
        result = c.error or ("" if c.result is None else ", ".join(
            f"{k}={v}" for k, v in c.result.items()))
        if result:
            lines.append(Padding(Text(result, style="red" if c.error else "dim"), (0, 0, 0, 9)))
    if not commands:
        lines.append(Text("none yet (Ctrl+P: Restart / Sync clock)", style="dim"))
    return Group(*lines)


HINT = "Select a device in the tree (↑/↓, j/k)."


class DevicePanel(ScrollView, can_focus=True):
    """Shows the selection: one device's detail, a site's summary, or a hint.

    A scroll view (line API): the content is rendered to lines at the panel's
    width, so a detail taller than the screen (80x24) scrolls, with the mouse
    or, once focused (Tab from the tree), the keyboard. ``render()`` returns
    the content as one renderable (for tests and exports).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "scroll_up", "Scroll up", show=False, id="panel.scroll_up"),
        Binding("down,j", "scroll_down", "Scroll down", show=False, id="panel.scroll_down"),
        Binding("pageup", "page_up", "Page up", show=False, id="panel.page_up"),
        Binding("pagedown,space", "page_down", "Page down", show=False, id="panel.page_down"),
        Binding("home", "scroll_home", "Top", show=False, id="panel.top"),
        Binding("end", "scroll_end", "Bottom", show=False, id="panel.bottom"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.detail: DeviceDetail | None = None
        self.site_detail: SiteDetail | None = None
        self._content: RenderableType = Text(HINT, style="dim")
        self._lines: list[Strip] = []

    def render(self) -> RenderableType:
        """The content shown (drawing goes through ``render_line``)."""
        return self._content

    def update(self, content: RenderableType) -> None:
        """Replace the content, keeping the scroll position where it can."""
        self._content = content
        self._layout_lines()

    def on_resize(self) -> None:
        """Re-render the content at the new width."""
        self._layout_lines()

    def _layout_lines(self) -> None:
        width = self.scrollable_content_region.width
        if width <= 0:
            return
        console = self.app.console
        segments = console.render(self._content, console.options.update_width(width))
        lines = Strip.from_lines(list(Segment.split_lines(segments)))
        if lines == self._lines and self.virtual_size.width == width:
            # the app redraws the panel on every refresh: during a burst of changes
            # elsewhere in the fleet it is mostly the same, and repainting it for
            # nothing held keys back
            return
        self._lines = lines
        self.virtual_size = Size(width, len(lines))
        self.refresh()

    def render_line(self, y: int) -> Strip:
        """One line of the content, scrolled."""
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        index = scroll_y + y
        if index >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        line = self._lines[index].crop_extend(scroll_x, scroll_x + width, self.rich_style)
        return line.apply_style(self.rich_style)

    def show(self, detail: DeviceDetail | None, hint: str = "") -> None:
        """Show a device's detail, or a hint."""
        self.detail = detail
        self.site_detail = None
        self.border_title = "Device"
        if detail is None:
            self.update(Text(hint or HINT, style="dim"))
        else:
            self.update(render_detail(detail))

    def show_site(self, detail: SiteDetail) -> None:
        """Show a site's summary."""
        self.detail = None
        self.site_detail = detail
        self.border_title = "Site"
        self.update(render_site(detail, self.scrollable_content_region.width or None))

    def picture_width(self) -> int:
        """How many cells a picture next to a label gets (at least 24)."""
        return max(24, self.scrollable_content_region.width - LABEL_WIDTH - 1)


def heartbeat_slots(width: int) -> int:
    """Slots of the 24 h heartbeat that fit: quarter-hours, half-hours or hours."""
    return 96 if width >= 96 else 48 if width >= 48 else 24

