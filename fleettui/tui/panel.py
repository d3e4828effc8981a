"""The device panel: everything about the selected device, drawn from the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from fleettui.domain import Command, DeviceState, Site
from fleettui.tui.model import GLYPHS, gauge


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


def _ago(dt: datetime | None, now: datetime) -> str:
    if dt is None:
        return "never"
    s = max(0, int((now - dt).total_seconds()))
    if s < 60:
        span = f"{s}s"
    elif s < 3600:
        span = f"{s // 60}m {s % 60}s"
    elif s < 86400:
        span = f"{s // 3600}h {s % 3600 // 60}m"
    else:
        span = f"{s // 86400}d {s % 86400 // 3600}h"
    return f"{span} ago · {dt:%Y-%m-%d %H:%M:%S} UTC"


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
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    status = Text(d.status.value.upper(), style=f"bold {colour}")
    if d.status_reason:
        status.append(f" — {d.status_reason}", style="default")
    if detail.flapping:
        status.append(f"  ↯ flapping ({detail.flap_pct:.0f}% state change)", style="bold yellow")
    site = (f"{detail.site.name} ({detail.site.id}) · {detail.site.timezone}"
            if detail.site else d.site_id)
    uptime = "unknown" if detail.uptime_24h is None else f"{detail.uptime_24h:.1%}"
    if d.records is not None and d.records_cap:
        records = Text(gauge(d.buffer_fill))
        records.append(f"  {d.records:,}/{d.records_cap:,}")
        if (d.buffer_fill or 0) >= 0.9:
            records.stylize("bold red")
    else:
        records = Text("unknown")
    rows: list[tuple[str, RenderableType]] = [
        ("Status", status),
        ("Since", _ago(d.status_since, now)),
        ("Last seen", _ago(d.last_seen, now)),
        ("Uptime 24h", uptime),
        ("Serial", d.serial),
        ("Model", d.model or "unknown"),
        ("Firmware", d.firmware or "unknown"),
        ("Address", f"{d.host}:{d.port}"),
        ("Transport", d.transport.upper()),
        ("Site", site),
        ("Records", records),
        ("Clock drift", _drift(d.clock_drift_s)),
        ("Last punch", _ago(d.last_punch_at, now)),
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
    """Shows one device's detail (or a hint when nothing is selected)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Text("Select a device in the tree (↑/↓, j/k).", style="dim"), id=id)
        self.detail: DeviceDetail | None = None

    def show(self, detail: DeviceDetail | None, hint: str = "") -> None:
        """Show a device's detail, or a hint."""
        self.detail = detail
        if detail is None:
            self.update(Text(hint or "Select a device in the tree (↑/↓, j/k).", style="dim"))
        else:
            self.update(render_detail(detail))
