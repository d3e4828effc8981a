"""Small pictures for the panels, as Rich text: heartbeat bar, sparkline, axes, spans.

16-colour names only (no true colour), so they read the same over SSH.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from rich.text import Text

from fleettui.domain import DeviceStatus, Site
from fleettui.tui.charts import HourBucket, sparkline
from fleettui.tui.model import GLYPHS
from fleettui.tui.problems import duration

#: the label column's width in the panels; the pictures get the rest
LABEL_WIDTH = 13


def span(dt: datetime, now: datetime) -> str:
    """How long ago, compactly: "42s", "3m 2s", "5h 10m", "2d 3h"."""
    s = max(0, int((now - dt).total_seconds()))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def short_ago(dt: datetime | None, now: datetime) -> str:
    """E.g. "3m 2s" (or "never"): for tables."""
    return "never" if dt is None else span(dt, now)


def short_drift(value: float | None, problem: bool = False) -> Text:
    """Clock drift for a table cell, red when it is a problem (past ``[problems]``)."""
    if value is None:
        return Text("?", style="dim")
    return Text(f"{value:+.0f}s", style="bold red" if problem else "")


def heartbeat_text(slots: list[DeviceStatus]) -> Text:
    """One block per slot, coloured by the status that held longest in it; a slot in which
    nothing was known (before the device was first checked) is hatched, not a block."""
    bar = Text()
    for status in slots:
        if status is DeviceStatus.UNKNOWN:
            bar.append("░", style="bright_black")
        else:
            bar.append("█", style=GLYPHS[status][1])
    return bar


def axis(width: int, left: str, middle: str, right: str) -> Text:
    """A dim axis line under a picture: labels at its left, middle and right."""
    if width < len(left) + len(middle) + len(right) + 2:
        middle = ""
    line = [" "] * max(width, len(left) + len(right) + 1)
    line[: len(left)] = left
    if middle:
        mid = width // 2 - len(middle) // 2
        line[mid : mid + len(middle)] = middle
    line[len(line) - len(right):] = right
    return Text("".join(line), style="dim")


def hours_text(hours: list[HourBucket]) -> Text:
    """The sparkline of punches per hour: quiet hours as grey floor, hours to come as dots."""
    past = [h.count for h in hours if not h.future]
    line = Text()
    for count, char in zip(past, sparkline(past), strict=True):
        line.append("▁" if count == 0 else char, style="bright_black" if count == 0 else "cyan")
    line.append("·" * (len(hours) - len(past)), style="dim")
    return line


def hours_axis(hours: list[HourBucket]) -> Text:
    """Local hour labels every six hours under the sparkline."""
    line = ""
    for i, h in enumerate(hours):
        if i % 6 == 0 and len(line) <= i:
            line = line.ljust(i) + h.label
    return Text(line, style="dim")


def punches_today_text(count: int | None, last: datetime | None, now: datetime,
                       zone: ZoneInfo | None) -> Text:
    """E.g. "42 on Wed 25 Nov · last 08:58 (3m 2s ago)" (day and times in the site's zone)."""
    if count is None:
        return Text("unknown", style="dim")
    text = Text(f"{count:,}", style="bold")
    if zone is not None:
        text.append(f" on {now.astimezone(zone):%a %d %b}", style="dim")
    if last is None:
        text.append(" · no punch yet")
    elif zone is not None:
        text.append(f" · last {last.astimezone(zone):%H:%M} ({span(last, now)} ago)")
    else:
        text.append(f" · last {span(last, now)} ago")
    return text


def site_zone(site: Site | None) -> ZoneInfo | None:
    """The site's zone (None when unknown or not a zone name)."""
    if site is None:
        return None
    try:
        return ZoneInfo(site.timezone)
    except (KeyError, ValueError):
        return None


#: a window this much known counts as the whole window (a check's gap at its start)
_COVERED = 0.99


def uptime_text(day: float | None, month: float | None, *, day_seen_s: float | None = None,
                month_seen_s: float | None = None) -> str:
    """E.g. "99.2% 24h · 97.0% 30d"; over less history than a window, says how much:
    "100.0% over the 21s seen" (a device first seen 21 s ago), "99.9% 24h · 99.2% over
    the 3d seen" (``*_seen_s``: the seconds of each window in which it was known)."""
    def pct(v: float | None) -> str:
        return "unknown" if v is None else f"{v:.1%}"

    if day is not None and day_seen_s is not None and day_seen_s < _COVERED * 86400:
        return f"{pct(day)} over the {duration(day_seen_s)} seen"
    if month is not None and month_seen_s is not None and \
            month_seen_s < _COVERED * 30 * 86400:
        return f"{pct(day)} 24h · {pct(month)} over the {duration(month_seen_s)} seen"
    return f"{pct(day)} 24h · {pct(month)} 30d"
