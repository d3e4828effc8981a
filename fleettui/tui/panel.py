"""The device panel: everything about the selected device, drawn from the store.

The same widget shows a site's summary when a site is selected (see
``site_panel``); the pictures (heartbeat bar, sparkline, gauges) are drawn
here from the numbers ``charts`` computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from fleettui.domain import Command, DeviceState, DeviceStatus, Site
from fleettui.engine.sync import SyncProgress
from fleettui.tui.charts import HourBucket, sync_text
from fleettui.tui.model import GLYPHS, gauge
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
    #: dominant status per slot of the last 24 h, oldest first
    heartbeat: list[DeviceStatus] = field(default_factory=list)
    #: punches in the site's local day so far (None: not counted)
    punches_today: int | None = None
    #: punches per hour of the site's local day
    hours: list[HourBucket] = field(default_factory=list)
    #: the sync running now (embedded engine only)
    sync: SyncProgress | None = None


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
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True, width=LABEL_WIDTH)
    grid.add_column()
    status = Text(d.status.value.upper(), style=f"bold {colour}")
    if d.status_reason:
        status.append(f" — {d.status_reason}", style="default")
    if detail.flapping:
        status.append(f"  ↯ flapping ({detail.flap_pct:.0f}% state change)", style="bold yellow")
    site = (f"{detail.site.name} ({detail.site.id}) · {detail.site.timezone}"
            if detail.site else d.site_id)
    if d.records is not None and d.records_cap:
        records = Text(gauge(d.buffer_fill))
        records.append(f"  {d.records:,}/{d.records_cap:,}")
        if (d.buffer_fill or 0) >= 0.9:
            records.stylize("bold red")
    else:
        records = Text("unknown")
    zone = site_zone(detail.site)
    rows: list[tuple[str, RenderableType]] = [
        ("Status", status),
        ("Since", _ago(d.status_since, now)),
        ("Last seen", _ago(d.last_seen, now)),
    ]
    if detail.sync is not None:
        sync = Text(sync_text(detail.sync.done, detail.sync.total), style="bold yellow")
        if detail.sync.total:
            sync.append("  " + gauge(detail.sync.done / detail.sync.total, 10), style="yellow")
        rows.append(("Sync", sync))
    if detail.heartbeat:
        width = len(detail.heartbeat)
        rows.append(("Heartbeat", Group(heartbeat_text(detail.heartbeat),
                                        axis(width, "24h ago", "12h", "now"))))
    rows += [
        ("Uptime", uptime_text(detail.uptime_24h, detail.uptime_30d)),
        ("Punches today", punches_today_text(detail.punches_today, d.last_punch_at, now, zone)),
    ]
    if detail.hours:
        rows.append(("Per hour", Group(hours_text(detail.hours), hours_axis(detail.hours))))
    rows += [
        ("Records", records),
        ("Clock drift", _drift(d.clock_drift_s)),
        ("Serial", d.serial),
        ("Model", d.model or "unknown"),
        ("Firmware", d.firmware or "unknown"),
        ("Address", f"{d.host}:{d.port}"),
        ("Transport", d.transport.upper()),
        ("Site", site),
    ]
    for label, value in rows:
        grid.add_row(label, value)
    cmds = Table(title="Commands", title_justify="left", title_style="bold",
                 show_edge=False, box=None, padding=(0, 1))
    for name in ("#", "command", "state", "when", "result"):
        cmds.add_column(name, no_wrap=name != "result")
    for c in detail.commands:
        style = {"done": "green", "failed": "red", "expired": "red",
                 "sent": "yellow", "queued": "cyan"}.get(c.state.value, "")
        result = c.error or ("" if c.result is None else ", ".join(
            f"{k}={v}" for k, v in c.result.items()))
        cmds.add_row(str(c.id), c.command, Text(c.state.value, style=style),
                     f"{c.updated_at:%H:%M:%S}", result)
    if not detail.commands:
        cmds.add_row("", Text("none yet (Ctrl+P: Restart / Sync clock)", style="dim"), "", "", "")
    return Group(title, Text(""), grid, Text(""), cmds)


class DevicePanel(Static):
    """Shows the selection: one device's detail, a site's summary, or a hint."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Text("Select a device in the tree (↑/↓, j/k).", style="dim"), id=id)
        self.detail: DeviceDetail | None = None
        self.site_detail: SiteDetail | None = None

    def show(self, detail: DeviceDetail | None, hint: str = "") -> None:
        """Show a device's detail, or a hint."""
        self.detail = detail
        self.site_detail = None
        self.border_title = "Device"
        if detail is None:
            self.update(Text(hint or "Select a device in the tree (↑/↓, j/k).", style="dim"))
        else:
            self.update(render_detail(detail))

    def show_site(self, detail: SiteDetail) -> None:
        """Show a site's summary."""
        self.detail = None
        self.site_detail = detail
        self.border_title = "Site"
        self.update(render_site(detail))

    def picture_width(self) -> int:
        """How many cells a picture next to a label gets (at least 24)."""
        return max(24, self.content_size.width - LABEL_WIDTH - 1)


def heartbeat_slots(width: int) -> int:
    """Slots of the 24 h heartbeat that fit: quarter-hours, half-hours or hours."""
    return 96 if width >= 96 else 48 if width >= 48 else 24

