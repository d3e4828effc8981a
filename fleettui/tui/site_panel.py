"""The site panel: a site's health, punches and work in progress, for the selected site.

Shown in the selection panel when a site node is selected. The app reads the
numbers (``SiteDetail``); this module only draws them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Console
from rich.text import Text

from fleettui.commands import label as command_label
from fleettui.domain import Command, CommandRequest, CommandState, DeviceStatus, Site
from fleettui.tui.charts import HourBucket, progress, request_text
from fleettui.tui.model import FLAP_GLYPH, GLYPHS, DeviceRow, gauge
from fleettui.tui.pictures import (
    LABEL_WIDTH,
    axis,
    hours_axis,
    hours_text,
    punches_today_text,
    short_ago,
    short_drift,
    site_zone,
    span,
)
from fleettui.tui.problems import Issue

#: only measures text for wrapping (never prints)
_CONSOLE = Console(file=io.StringIO(), color_system=None)
#: colour of a site heartbeat slot
SITE_SLOT_COLOURS = {"ok": "green", "partial": "yellow", "down": "red", "unknown": "bright_black"}


@dataclass(slots=True)
class SiteDetail:
    """What the panel shows for one site (read from the store by the app)."""

    site: Site
    now: datetime
    #: every device of the site (unfiltered), problems first
    devices: list[DeviceRow] = field(default_factory=list)
    #: share of the last 24 h its devices were online (mean over devices with a known status)
    uptime_24h: float | None = None
    #: per slot of the last 24 h: "ok", "partial", "down" or "unknown"
    heartbeat: list[str] = field(default_factory=list)
    punches_today: int | None = None
    last_punch: datetime | None = None
    hours: list[HourBucket] = field(default_factory=list)
    #: the newest site-wide requests, newest first
    requests: list[CommandRequest] = field(default_factory=list)
    #: commands queued for or running on its devices
    in_flight: list[Command] = field(default_factory=list)
    schedules: str = ""
    #: the poller that polls the site, when several share the database ("" otherwise)
    polled_by: str = ""

    @property
    def online(self) -> int:
        """Devices online now."""
        return sum(1 for r in self.devices if r.device.status is DeviceStatus.ONLINE)


def _site_bar(slots: list[str]) -> Text:
    bar = Text()
    for slot in slots:
        bar.append("█", style=SITE_SLOT_COLOURS[slot])
    return bar


def _request_line(request: CommandRequest, now: datetime, width: int | None) -> Text:
    """A gauge, then e.g. "Restart 3/4 done · 1 queued · #12, 2m ago", wrapping under itself."""
    p = progress(request.commands)
    line = Text(request_text(request),
                style="green" if p.finished and not p.failed else
                "red" if p.finished else "bold yellow")
    line.append(f" · #{request.id}, {span(request.created_at, now)} ago", style="dim")
    bar = gauge(p.fraction, 10).split(" ")[0]
    return _hang(Text(bar + " ", style="dim" if p.finished else "yellow"), line, width)


def _in_flight(commands: list[Command]) -> Text:
    """Commands queued or running on the site's devices, grouped by command (▶ running)."""
    by_command: dict[str, list[str]] = {}
    for c in commands:
        mark = " ▶" if c.state is CommandState.SENT else ""
        by_command.setdefault(c.command, []).append(c.device_id + mark)
    text = Text(f"In flight ({len(commands)}): ", style="bold")
    text.append(" · ".join(
        f"{command_label(name)} {', '.join(ids[:8])}"
        + (f" +{len(ids) - 8} more" if len(ids) > 8 else "")
        for name, ids in by_command.items()), style="yellow")
    return text


def _devices_lines(detail: SiteDetail) -> Text:
    """The site's devices as compact aligned columns: glyph, id, status, seen, buffer, drift."""
    rows = []
    for r in detail.devices:
        d = r.device
        glyph, colour = GLYPHS[d.status]
        state = (f"{FLAP_GLYPH} flap", "bold yellow") if r.flapping else (d.status.value, colour)
        fill = d.buffer_fill
        buffer = ("?" if fill is None else f"{fill:.0%}",
                  "bold red" if Issue.BUFFER in r.issues else "")
        drift = short_drift(d.clock_drift_s, Issue.DRIFT in r.issues)
        rows.append(((glyph, colour), (d.id, "bold" if r.problem else ""), state,
                     (short_ago(d.last_seen, detail.now), ""), buffer,
                     (drift.plain, str(drift.style))))
    out = Text("Devices", style="bold")
    out.append("\n")
    heads = ("", "device", "status", "seen", "buffer", "drift")
    widths = [max([len(h)] + [len(row[i][0]) for row in rows]) for i, h in enumerate(heads)]
    out.append(" ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip(),
               style="dim")
    for row in rows:
        out.append("\n")
        for i, ((text, style), width) in enumerate(zip(row, widths, strict=True)):
            cell = text.rjust(width) if i >= 4 else text.ljust(width)
            out.append(cell, style=style)
            if i < len(row) - 1:
                out.append(" ")
    if not rows:
        out.append("\nno devices", style="dim")
    return out


def _hang(head: Text, value: Text, width: int | None) -> Text:
    """``head`` then ``value``, a long value wrapping under itself, not under the head."""
    indent = len(head)
    line = head.copy()
    if width is None or width - indent < 10 or len(value) <= width - indent:
        line.append(value)
        return line
    for i, piece in enumerate(value.wrap(_CONSOLE, width - indent)):
        if i:
            line.append("\n" + " " * indent)
        line.append(piece)
    return line


def _pair(label: str, value: Text | str, width: int | None = None) -> Text:
    """A label and its value; a long value wraps under itself, not under the label."""
    value = value if isinstance(value, Text) else Text(value)
    return _hang(Text(label.ljust(LABEL_WIDTH + 1), style="bold"), value, width)


def _picture(label: str, picture: Text, under: Text) -> Text:
    out = _pair(label, picture)
    out.append("\n" + " " * (LABEL_WIDTH + 1))
    out.append(under)
    return out


def render_site(detail: SiteDetail, width: int | None = None) -> Text:
    """The panel's content for one site (one Text: aligned lines, wrapped to ``width``)."""
    s, now = detail.site, detail.now
    zone = site_zone(s)
    lines: list[Text] = [
        Text.assemble(("◆ ", "cyan"), (s.name, "bold"), (f"  ({s.id})", "dim")), Text(""),
    ]
    local = f" · local {now.astimezone(zone):%H:%M %a %d %b}" if zone is not None else ""
    total = len(detail.devices)
    health = Text(f"{detail.online}/{total} online",
                  style="green" if detail.online == total else "bold red")
    down = [r.id for r in detail.devices if r.problem]
    if down:
        health.append(f" · problems: {', '.join(down)}", style="default")
    lines += [_pair("Time zone", f"{s.timezone}{local}", width),
              _pair("Devices", health, width)]
    if detail.polled_by:
        lines.append(_pair("Polled by", detail.polled_by, width))
    if detail.heartbeat:
        lines.append(_picture("Heartbeat", _site_bar(detail.heartbeat),
                              axis(len(detail.heartbeat), "24h ago", "12h", "now")))
    uptime = "unknown" if detail.uptime_24h is None else f"{detail.uptime_24h:.1%}"
    lines += [
        _pair("Uptime 24h", uptime, width),
        _pair("Punches today",
              punches_today_text(detail.punches_today, detail.last_punch, now, zone), width),
    ]
    if detail.hours:
        lines.append(_picture("Per hour", hours_text(detail.hours), hours_axis(detail.hours)))
    if detail.requests or detail.in_flight:
        lines += [Text(""), Text("Work in progress", style="bold")]
        lines += [_request_line(r, now, width) for r in detail.requests]
        if detail.in_flight:
            lines.append(_in_flight(detail.in_flight))
    lines += [Text(""), _devices_lines(detail)]
    if detail.schedules:
        lines.append(Text("\n" + detail.schedules.strip("\n")))
    return Text("\n").join(lines)
