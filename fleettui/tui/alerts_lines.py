"""What the alerts view draws: its rows, their cells, and columns that fit the width.

Pure rendering (Rich, no Textual): an open alert's severity, target, kind, age,
escalation, acknowledgement and silence (its target's, or for a device its site's),
in separate columns when the screen is wide and one state cell when not; an id is
never cut (a row too wide splits over two lines instead). ``alerts_view.py`` is the
screen that shows them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from fleettui.domain import Alert, Silence
from fleettui.tui.pictures import span

#: how far back resolved alerts are listed
RESOLVED_WINDOW = timedelta(hours=24)
SEVERITY_STYLES = {"critical": "bold red", "warning": "yellow"}
#: the room the last column keeps at least before a table drops to its narrow columns
MIN_LAST = 16
#: spaces between two columns
GAP = 2


# --- what is shown ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An open alert and the silence in force over it, if any (the one that ends last)."""

    alert: Alert
    silence: Silence | None = None

    @property
    def silenced_by_site(self) -> bool:
        """Whether the silence is its site's, not its own target's."""
        return self.silence is not None and self.silence.target != self.alert.target


@dataclass(frozen=True, slots=True)
class AlertsNow:
    """The view's data at ``now``: the open alerts (critical first, then newest) and those
    resolved within ``RESOLVED_WINDOW`` (newest first)."""

    now: datetime
    open: list[OpenAlert]
    resolved: list[Alert]


def open_rows(alerts: Iterable[Alert], silences: list[Silence]) -> list[OpenAlert]:
    """Each open alert with its silence, critical ones first (the store's newest-first
    order kept within a severity)."""
    rows = [OpenAlert(a, silence_over(a, silences)) for a in alerts if a.open]
    return sorted(rows, key=lambda r: r.alert.severity != "critical")


def silence_over(alert: Alert, silences: list[Silence]) -> Silence | None:
    """The silence in force over an alert's target (or its site's) that ends last."""
    targets = {alert.target, alert.site_id}
    over = [s for s in silences if s.target in targets]
    return max(over, key=lambda s: s.until) if over else None


def recently_resolved(alerts: Iterable[Alert], now: datetime) -> list[Alert]:
    """The alerts resolved within ``RESOLVED_WINDOW`` before ``now``, newest first."""
    since = now - RESOLVED_WINDOW
    done = [a for a in alerts if a.resolved_at is not None and a.resolved_at >= since]
    return sorted(done, key=lambda a: a.resolved_at or now, reverse=True)


def target_of(alert: Alert) -> tuple[str, str]:
    """Where the alert points in the tree: ("device", id) or ("site", id)."""
    return ("site" if alert.target_kind == "site" else "device", alert.target)


# --- how it reads -----------------------------------------------------------


def clock(dt: datetime, now: datetime) -> str:
    """A time in UTC: "09:25" today, "01 Mar 09:25" another day."""
    return f"{dt:%H:%M}" if dt.date() == now.date() else f"{dt:%d %b %H:%M}"


def target_text(alert: Alert) -> Text:
    """The alert's target, a site's said to be one: "dev_wh_a_02", "site wh-a"."""
    if alert.target_kind == "site":
        return Text.assemble(("site ", "dim"), alert.target)
    return Text(alert.target)


def severity_text(alert: Alert) -> Text:
    """The severity, coloured: critical red, warning yellow."""
    return Text(alert.severity, style=SEVERITY_STYLES.get(alert.severity, ""))


def escalated_text(alert: Alert, now: datetime, *, short: bool) -> Text:
    """When it escalated ("escalated 09:25"; ``short``: "09:25", or "no")."""
    if alert.escalated_at is None:
        return Text("no" if short else "", style="dim")
    when = clock(alert.escalated_at, now)
    return Text(when if short else f"escalated {when}", style="red")


def acked_text(alert: Alert, now: datetime, *, short: bool) -> Text:
    """Who acknowledged it and when ("acked by tui 09:27"; ``short``: "tui 09:27"), or
    that nobody has ("not acked"; ``short``: "no")."""
    if alert.acknowledged_at is None:
        return Text("no" if short else "not acked", style="yellow")
    who = f"{alert.acknowledged_by} " if alert.acknowledged_by else ""
    when = clock(alert.acknowledged_at, now)
    return Text(f"{who}{when}" if short else f"acked by {who}{when}", style="green")


def silenced_text(row: OpenAlert, now: datetime, *, short: bool) -> Text:
    """Until when a silence covers it ("silenced until 11:30 (site)"; ``short``:
    "until 11:30 (site)", or "no")."""
    if row.silence is None:
        return Text("no" if short else "", style="dim")
    site = " (site)" if row.silenced_by_site else ""
    until = f"until {clock(row.silence.until, now)}{site}"
    return Text(until if short else f"silenced {until}", style="cyan")


def state_text(row: OpenAlert, now: datetime) -> Text:
    """Escalation, acknowledgement and silence in one cell (the narrow layout's)."""
    parts = [escalated_text(row.alert, now, short=False), acked_text(row.alert, now, short=False),
             silenced_text(row, now, short=False)]
    return Text(" · ").join(p for p in parts if p.plain)


# --- tables drawn across widgets ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Cells:
    """One line of a table in its two layouts: all its columns, and the few a narrow
    screen keeps (the last cell of each takes the room left, wrapping). ``key`` is the
    narrow cell that holds the id: on a screen too narrow even for those columns (a long
    id), the line is stacked, the id ending its first line and the rest below it."""

    wide: tuple[Text, ...]
    narrow: tuple[Text, ...]
    key: int


def fits(widths: tuple[int, ...], width: int) -> bool:
    """Whether columns of ``widths`` fit ``width`` with room left for a last one."""
    return sum(widths) + GAP * len(widths) + MIN_LAST <= width


@dataclass(frozen=True, slots=True)
class Widths:
    """The widths of a table's columns but the last, shared by all its lines (each may
    be drawn by another widget: the header, each option), in both layouts."""

    wide: tuple[int, ...]
    narrow: tuple[int, ...]

    @classmethod
    def of(cls, lines: list[Cells]) -> Widths:
        """Each column as wide as its widest cell: an id is never cut."""
        def widest(cells: list[tuple[Text, ...]]) -> tuple[int, ...]:
            return tuple(max(c[i].cell_len for c in cells) for i in range(len(cells[0]) - 1))

        return cls(widest([c.wide for c in lines]), widest([c.narrow for c in lines]))


@dataclass(frozen=True, slots=True)
class GridLine:
    """A Rich renderable: one line of a table, in the layout its width allows."""

    cells: Cells
    widths: Widths

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """The line at the width it is given: wide if that fits, else narrow, else
        stacked."""
        width = options.max_width
        if fits(self.widths.wide, width):
            yield grid(self.cells.wide, self.widths.wide)
        elif fits(self.widths.narrow, width):
            yield grid(self.cells.narrow, self.widths.narrow)
        else:
            yield from stacked(self.cells, self.widths.narrow)


def grid(cells: tuple[Text, ...], widths: tuple[int, ...]) -> Table:
    """The cells in columns of the given widths, the last one taking the rest (wrapping:
    a cell is never cut)."""
    table = Table.grid(padding=(0, GAP, 0, 0), expand=True)
    for width in widths:
        table.add_column(width=width, overflow="fold")
    table.add_column(ratio=1, overflow="fold")
    table.add_row(*cells)
    return table


def stacked(cells: Cells, widths: tuple[int, ...]) -> RenderResult:
    """The narrow cells up to the id on a first line (the id with the whole rest of the
    line), the others after it on the next, under the id."""
    key = cells.key
    yield grid(cells.narrow[:key + 1], widths[:key])
    indent = sum(widths[:key]) + GAP * key
    yield Padding(Text("  ").join(cells.narrow[key + 1:]), (0, 0, 0, indent))


def table_lines(header: Cells, rows: list[Cells]) -> tuple[GridLine, list[GridLine]]:
    """The header and the rows as lines sharing their column widths."""
    widths = Widths.of([header, *rows])
    return GridLine(header, widths), [GridLine(r, widths) for r in rows]


def heading(*names: str) -> tuple[Text, ...]:
    """Column titles."""
    return tuple(Text(n, style="bold") for n in names)


OPEN_HEADER = Cells(
    heading("severity", "target", "kind", "for", "escalated", "acknowledged", "silenced",
            "reason"),
    heading("severity", "target", "kind", "for", "state"), key=1)
RESOLVED_HEADER = Cells(
    heading("severity", "target", "kind", "opened → resolved", "lasted", "reason"),
    heading("target", "kind", "opened → resolved", "lasted"), key=0)


def open_cells(row: OpenAlert, now: datetime) -> Cells:
    """An open alert's cells: wide, each state in its column and the reason; narrow, the
    states in one cell."""
    a = row.alert
    first = (severity_text(a), target_text(a), Text(a.kind.value), Text(span(a.since, now)))
    return Cells(
        (*first, escalated_text(a, now, short=True), acked_text(a, now, short=True),
         silenced_text(row, now, short=True), Text(a.reason, style="dim")),
        (*first, state_text(row, now)), key=1)


def resolved_cells(alert: Alert, now: datetime) -> Cells:
    """A resolved alert's cells: when it opened and resolved, and how long it lasted."""
    resolved = alert.resolved_at or now
    when = Text(f"{clock(alert.opened_at, now)} → {clock(resolved, now)}")
    lasted = Text(span(alert.opened_at, resolved))
    both = (target_text(alert), Text(alert.kind.value), when, lasted)
    return Cells((severity_text(alert), *both, Text(alert.reason, style="dim")), both, key=0)


def resolved_section(resolved: list[Alert], now: datetime) -> Group | Text:
    """The alerts resolved in the last 24 h under their title (or the title saying none)."""
    if not resolved:
        return Text("Resolved in the last 24 h: none", style="dim")
    header, lines = table_lines(RESOLVED_HEADER, [resolved_cells(a, now) for a in resolved])
    title = Text(f"Resolved in the last 24 h ({len(resolved)})", style="bold")
    return Group(title, header, *lines)


#: the hint line: (what, the ids of the bindings that do it, keys of the list's own first)
HINTS = (("move", ("alerts.down", "alerts.up"), "↑↓"), ("go to", ("alerts.go",), "Enter"),
         ("acknowledge", ("alerts.ack",), ""), ("silence", ("alerts.silence",), ""))
CLOSE_HINT = ("close", ("alerts.close",), "")
KEY_NAMES = {"escape": "Esc", "enter": "Enter", "up": "↑", "down": "↓", "space": "Space"}


def keys_text(any_open: bool, keys: Mapping[str, list[str]]) -> Text:
    """The hint line: the keys in force (``keys``: each binding id's keys, as
    ``[tui.keys]`` may have remapped them) and what they do; with no open alert, only
    how to close."""
    hints = [*HINTS, CLOSE_HINT] if any_open else [CLOSE_HINT]
    parts = []
    for what, ids, own in hints:
        names = [own] if own else []
        names += [KEY_NAMES.get(k, k) for ident in ids for k in keys.get(ident, [])]
        if names:
            parts.append(Text.assemble((" ".join(names), "bold"), " ", (what, "dim")))
    return Text("  ").join(parts)


