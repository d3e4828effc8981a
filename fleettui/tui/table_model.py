"""The fleet table's columns: what each cell says, and how each column sorts.

No Textual here: ``fleet_table.py`` draws what this computes. A row is a
``DeviceRow`` (``model.py``) read with the facts only the table shows (the
site's name, punches today, the open alert), all passed in as ``TableFacts``.
A column sorts by a value, never by its text ("12m" after "3h"): empty values
(never seen, no buffer reported) sort last in either direction, and equal
values keep the devices' ids in order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from rich.style import Style
from rich.text import Text

from fleettui.domain import Alert, DeviceStatus
from fleettui.tui.model import GLYPHS, MARK_GLYPHS, DeviceRow
from fleettui.tui.problems import Issue, duration

#: a sort value: None sorts last whichever the direction
SortValue = tuple[object, ...] | None


@dataclass(frozen=True, slots=True)
class TableFacts:
    """What the table shows beyond the device rows, read once per refresh."""

    now: datetime
    #: site id → its name
    site_names: dict[str, str] = field(default_factory=dict)
    #: device id → punches since its site's local midnight (None: not counted yet)
    today: dict[str, int] | None = None
    #: device id → its worst open alert
    alerts: dict[str, Alert] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its title, how its cell reads, what it sorts by and which way first."""

    key: str
    title: str
    #: what "sort by …" says in the help
    about: str
    cell: Callable[[DeviceRow, TableFacts], Text]
    value: Callable[[DeviceRow, TableFacts], SortValue]
    #: the first press sorts descending (what matters most on top: fullest, worst)
    descending_first: bool = False
    #: right-aligned (numbers)
    numeric: bool = False
    #: the widest the cell may get (longer text is cut with "…"; ids never are)
    max_width: int = 24


def _status_cell(row: DeviceRow, facts: TableFacts) -> Text:
    d = row.device
    glyph, colour = GLYPHS[d.status]
    text = Text.assemble((f"{glyph} ", colour), (d.status.value, colour))
    if d.status_since is not None:
        text.append(f" {duration((facts.now - d.status_since).total_seconds())}")
    for mark in row.marks:
        mark_glyph, mark_colour = MARK_GLYPHS[mark]
        text.append(f" {mark_glyph}", Style(color=mark_colour, bold=True))
    return text


def _status_value(row: DeviceRow, facts: TableFacts) -> SortValue:
    """Worst first, then the longest in that state."""
    since = row.device.status_since
    held = (facts.now - since).total_seconds() if since is not None else 0.0
    return (3 - row.severity, _STATUS_RANK[row.device.status], held)


_STATUS_RANK = {DeviceStatus.OFFLINE: 3, DeviceStatus.ERROR: 2, DeviceStatus.UNKNOWN: 1,
                DeviceStatus.ONLINE: 0}


def _seen_cell(row: DeviceRow, facts: TableFacts) -> Text:
    seen = row.device.last_seen
    if seen is None:
        return Text("never", style="dim")
    return Text(duration((facts.now - seen).total_seconds()))


def _seen_value(row: DeviceRow, facts: TableFacts) -> SortValue:
    """How long ago: the longest silent first."""
    seen = row.device.last_seen
    return None if seen is None else ((facts.now - seen).total_seconds(),)


def _today_cell(row: DeviceRow, facts: TableFacts) -> Text:
    if facts.today is None:
        return Text("…", style="dim")
    return Text(f"{facts.today.get(row.id, 0):,}")


def _today_value(row: DeviceRow, facts: TableFacts) -> SortValue:
    return None if facts.today is None else (facts.today.get(row.id, 0),)


def _buffer_cell(row: DeviceRow, _facts: TableFacts) -> Text:
    fill = row.device.buffer_fill
    if fill is None:
        return Text("-", style="dim")
    return Text(f"{fill:.0%}", style="bold yellow" if Issue.BUFFER in row.issues else "")


def _buffer_value(row: DeviceRow, _facts: TableFacts) -> SortValue:
    fill = row.device.buffer_fill
    return None if fill is None else (fill,)


def _drift_cell(row: DeviceRow, _facts: TableFacts) -> Text:
    drift = row.device.clock_drift_s
    if drift is None:
        return Text("-", style="dim")
    if abs(drift) < 0.5:
        text = "0s"
    elif abs(drift) < 90:
        text = f"{drift:+.0f}s"
    else:
        text = ("+" if drift >= 0 else "-") + duration(drift)
    return Text(text, style="bold yellow" if Issue.DRIFT in row.issues else "")


def _drift_value(row: DeviceRow, _facts: TableFacts) -> SortValue:
    """The furthest off first, either way."""
    drift = row.device.clock_drift_s
    return None if drift is None else (abs(drift),)


#: a ZKTeco firmware string's build date: "Ver 6.60 Apr 26 2016"
_FIRMWARE_DATE = re.compile(r"([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{4})")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def firmware_date(firmware: str) -> date | None:
    """The build date in a firmware string, if it has one (what "oldest" means)."""
    found = _FIRMWARE_DATE.search(firmware)
    if found is None or found.group(1) not in _MONTHS:
        return None
    try:
        return date(int(found.group(3)), _MONTHS[found.group(1)], int(found.group(2)))
    except ValueError:
        return None


def _firmware_cell(row: DeviceRow, _facts: TableFacts) -> Text:
    return Text(row.device.firmware or "-", style="" if row.device.firmware else "dim")


def _firmware_value(row: DeviceRow, _facts: TableFacts) -> SortValue:
    """The oldest build first; firmware without a date after those with one."""
    firmware = row.device.firmware
    if not firmware:
        return None
    built = firmware_date(firmware)
    return (0, built.toordinal(), firmware) if built is not None else (1, 0, firmware)


def _alert_cell(row: DeviceRow, facts: TableFacts) -> Text:
    alert = facts.alerts.get(row.id)
    if alert is None:
        return Text("")
    style = "bold red" if alert.severity == "critical" else "yellow"
    acked = " (ack)" if alert.acknowledged_at is not None else ""
    return Text(f"{alert.severity} {alert.kind.value}{acked}", style=style)


def _alert_value(row: DeviceRow, facts: TableFacts) -> SortValue:
    alert = facts.alerts.get(row.id)
    if alert is None:
        return None
    return (alert.severity == "critical", alert.acknowledged_at is None,
            -alert.since.timestamp())


def _plain(text: Callable[[DeviceRow, TableFacts], str]) -> Callable[[DeviceRow, TableFacts], Text]:
    return lambda row, facts: Text(text(row, facts))


def _site_name(row: DeviceRow, facts: TableFacts) -> str:
    return facts.site_names.get(row.device.site_id, row.device.site_id)


#: the columns, what matters most at a glance first (80 columns show the first six)
COLUMNS: tuple[Column, ...] = (
    Column("device", "device", "device id", _plain(lambda r, _f: r.id),
           lambda r, _f: (r.id,), max_width=10_000),
    Column("status", "status", "status (the worst and the longest first)", _status_cell,
           _status_value, descending_first=True, max_width=26),
    Column("buffer", "buffer", "buffer fill (the fullest first)", _buffer_cell, _buffer_value,
           descending_first=True, numeric=True, max_width=6),
    Column("drift", "drift", "clock drift (the furthest off first)", _drift_cell,
           _drift_value, descending_first=True, numeric=True, max_width=7),
    Column("seen", "seen", "last seen (the longest silent first)", _seen_cell, _seen_value,
           descending_first=True, numeric=True, max_width=6),
    Column("today", "today", "punches today", _today_cell, _today_value,
           descending_first=True, numeric=True, max_width=8),
    Column("site", "site", "site name", _plain(_site_name),
           lambda r, f: (_site_name(r, f).casefold(),), max_width=22),
    Column("alert", "alert", "open alert (critical first)", _alert_cell, _alert_value,
           descending_first=True, max_width=22),
    Column("firmware", "firmware", "firmware (the oldest build first)", _firmware_cell,
           _firmware_value, max_width=22),
    Column("transport", "link", "transport (tcp, udp, push)",
           _plain(lambda r, _f: r.device.transport), lambda r, _f: (r.device.transport,),
           max_width=5),
)


@dataclass(frozen=True, slots=True)
class SortOrder:
    """Which column the table is sorted by and which way (None: the tree's order,
    problems first)."""

    column: int | None = None
    descending: bool = False

    def pressed(self, column: int) -> SortOrder:
        """The order after the operator asks to sort by ``column``: the column's own
        first direction, or the other way if it was already sorted by it."""
        if self.column == column:
            return SortOrder(column, not self.descending)
        return SortOrder(column, COLUMNS[column].descending_first)

    def arrow(self, column: int) -> str:
        """"▲" or "▼" for the sorted column (by value: ▲ smallest first), else ""."""
        if self.column != column:
            return ""
        return "▼" if self.descending else "▲"


def sort_rows(rows: Sequence[DeviceRow], order: SortOrder, facts: TableFacts
              ) -> list[DeviceRow]:
    """The rows in the table's order: as given (problems first) when unsorted, else by
    the column's value, ties by device id, devices without a value last."""
    if order.column is None:
        return list(rows)
    value = COLUMNS[order.column].value
    keyed = [(value(r, facts), r) for r in rows]
    known = sorted(((v, r) for v, r in keyed if v is not None), key=lambda vr: vr[1].id)
    known.sort(key=lambda vr: vr[0], reverse=order.descending)
    missing = sorted((r for v, r in keyed if v is None), key=lambda r: r.id)
    return [r for _v, r in known] + missing
