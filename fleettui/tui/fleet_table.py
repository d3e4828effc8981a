"""The fleet table: one line per device, sortable by any column, with a multi-selection.

A scroll view drawn line by line (Textual's line API): only the lines on
screen are rendered, so 2,000 devices cost what 20 do, and a sort is a sort of
the rows (``table_model.py``), not a rebuild of widgets. The header line and
the device column stay put while the rest scrolls. Keys: ↑ ↓ PgUp PgDn Home
End move, 1-9 and 0 sort by a column (again: the other way), Space marks a
device, * marks every device shown (or none), Enter opens the device.
"""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from fleettui.tui.model import DeviceRow
from fleettui.tui.table_model import COLUMNS, SortOrder, TableFacts, sort_rows

#: columns are this far apart
GAP = 2
#: the mark in front of a marked device (two cells with its space)
MARKED = "✓ "
#: the sort keys, in the columns' order
SORT_KEYS = "1234567890"


def _sort_bindings() -> list[BindingType]:
    return [Binding(key, f"sort({n})", f"sort by {column.about}", show=False,
                    id=f"table.sort_{column.key}")
            for n, (key, column) in enumerate(zip(SORT_KEYS, COLUMNS, strict=True))]


class FleetTable(ScrollView, can_focus=True):
    """Every device shown (the filter and "problems only" apply), in a sortable table."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False, id="table.up"),
        Binding("down,j", "cursor(1)", "Down", show=False, id="table.down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="table.page_up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="table.page_down"),
        Binding("home", "edge(0)", "First", show=False, id="table.first"),
        Binding("end", "edge(1)", "Last", show=False, id="table.last"),
        Binding("space", "mark", "Mark / unmark the device (for a bulk action)", show=False,
                id="table.mark"),
        Binding("asterisk", "mark_all", "Mark every device shown (or none)", show=False,
                id="table.mark_all"),
        Binding("enter", "open", "Open the device in the tree", show=False, id="table.open"),
        *_sort_bindings(),
    ]

    class Moved(Message):
        """The cursor rests on another device."""

        def __init__(self, device_id: str) -> None:
            super().__init__()
            self.device_id = device_id

    class Opened(Message):
        """Enter (or a click on the cursor's line): open the device."""

        def __init__(self, device_id: str) -> None:
            super().__init__()
            self.device_id = device_id

    class MarksChanged(Message):
        """The set of marked devices changed."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.order = SortOrder()
        #: the devices marked for a bulk action (kept when hidden by the filter)
        self.marked: set[str] = set()
        self.rows: list[DeviceRow] = []
        self._given: list[DeviceRow] = []
        self._facts: TableFacts | None = None
        self._cursor = 0
        self._cursor_id: str | None = None
        self._widths: list[int] = [len(c.title) + 1 for c in COLUMNS]

    # --- data -----------------------------------------------------------

    def show(self, rows: list[DeviceRow], facts: TableFacts) -> None:
        """Show these devices (in the tree's order until a column is sorted), keeping
        the cursor on its device."""
        self._given = rows
        self._facts = facts
        self._resort()

    def sort_by(self, column: int) -> None:
        """Sort by a column (again: the other way)."""
        self.order = self.order.pressed(column)
        self._resort()
        self._move_to(0)  # what the sort put on top is what the operator asked to see
        self._show_column(column)

    def _show_column(self, column: int) -> None:
        """Scroll sideways so a column is on screen (the sorted one, at 80 columns)."""
        if column == 0:
            return
        start = sum(w + GAP for w in self._widths[1:column])
        end = start + self._widths[column] + GAP
        room = max(1, self.scrollable_content_region.width - self._frozen_width())
        x = self.scroll_offset.x
        if start < x or end > x + room:
            self.scroll_to(x=start if end - start > room or start < x else end - room,
                           animate=False, immediate=True)

    def _resort(self) -> None:
        if self._facts is None:
            return
        self.rows = sort_rows(self._given, self.order, self._facts)
        self._measure()
        index = next((i for i, r in enumerate(self.rows) if r.id == self._cursor_id), None)
        self._cursor = min(self._cursor, max(0, len(self.rows) - 1)) if index is None else index
        if self.rows and self.rows[self._cursor].id != self._cursor_id:
            self._cursor_id = self.rows[self._cursor].id
            self.post_message(self.Moved(self._cursor_id))
        self.virtual_size = Size(self._frozen_width() + self._rest_width(), len(self.rows) + 1)
        self._keep_cursor_in_view()
        self.refresh()

    def _measure(self) -> None:
        """Column widths: the device column fits the longest id (never cut); the others
        their longest text on screen, up to their limit."""
        ids = max((len(r.id) for r in self.rows), default=6)
        self._widths[0] = max(ids, len(COLUMNS[0].title) + 1)
        facts = self._facts
        if facts is None:
            return
        # the widths follow what is on screen, and the first problems (wherever they are,
        # so a width does not jump as the operator scrolls to them): measuring every one
        # of 2,000 rows took a sixth of a refresh
        top = self.scroll_offset.y
        sample = self.rows[top:top + self._body_height() + 1] + [
            r for r in self.rows if r.problem][:30]
        for n, column in enumerate(COLUMNS[1:], start=1):
            if column.key == "site":  # every site's name is at hand: the longest of all
                widest = max((len(name) for name in facts.site_names.values()), default=0)
            else:
                widest = max((column.cell(r, facts).cell_len for r in sample), default=0)
            # the title and its sort arrow always fit
            self._widths[n] = max(min(column.max_width, widest), len(column.title) + 1)

    @property
    def selected_id(self) -> str | None:
        """The device under the cursor."""
        return self._cursor_id if self.rows else None

    def select(self, device_id: str | None) -> bool:
        """Put the cursor on a device, if shown."""
        index = next((i for i, r in enumerate(self.rows) if r.id == device_id), None)
        if index is None:
            return False
        self._move_to(index)  # told, so it comes after any Moved still queued
        return True

    # --- drawing --------------------------------------------------------

    def _frozen_width(self) -> int:
        return len(MARKED) + self._widths[0] + GAP

    def _rest_width(self) -> int:
        return sum(w + GAP for w in self._widths[1:])

    def render_line(self, y: int) -> Strip:
        """The header (y 0) or a device's line, the device column fixed, the rest scrolled."""
        width = self.scrollable_content_region.width
        scroll_x, scroll_y = self.scroll_offset
        if y == 0:
            frozen, rest = self._header_cells()
            style = Style(bold=True, underline=True)
        else:
            index = scroll_y + y - 1
            if index >= len(self.rows) or self._facts is None:
                return Strip.blank(width, self.rich_style)
            frozen, rest = self._row_cells(self.rows[index])
            style = Style(reverse=True) if index == self._cursor and self.has_focus else (
                Style(bgcolor="grey23") if index == self._cursor else Style())
        left = Strip(list(frozen.render(self.app.console)))
        right = Strip(list(rest.render(self.app.console)))
        right = right.crop(scroll_x, scroll_x + max(0, width - left.cell_length))
        line = Strip.join([left, right]).extend_cell_length(width)
        return line.apply_style(self.rich_style + style)

    def _header_cells(self) -> tuple[Text, Text]:
        frozen = Text(" " * len(MARKED))
        frozen.append(self._fit(self._title(0), 0))
        rest = Text()
        for n in range(1, len(COLUMNS)):
            rest.append(self._fit(self._title(n), n))
        return frozen, rest

    def _title(self, n: int) -> Text:
        arrow = self.order.arrow(n)
        return Text(COLUMNS[n].title + arrow, style="bold cyan" if arrow else "")

    def _row_cells(self, row: DeviceRow) -> tuple[Text, Text]:
        facts = self._facts
        assert facts is not None
        frozen = Text(MARKED if row.id in self.marked else " " * len(MARKED),
                      style="bold green")
        frozen.append(self._fit(COLUMNS[0].cell(row, facts), 0))
        rest = Text()
        for n in range(1, len(COLUMNS)):
            rest.append(self._fit(COLUMNS[n].cell(row, facts), n))
        return frozen, rest

    def _fit(self, text: Text, n: int) -> Text:
        """A cell at its column's width (cut with "…" if longer), then the gap."""
        width = self._widths[n]
        if text.cell_len > width:
            text = text.copy()
            text.truncate(width - 1)
            text.append("…")
        pad = width - text.cell_len
        cell = Text(" " * pad) + text if COLUMNS[n].numeric else text + Text(" " * pad)
        return cell + Text(" " * GAP)

    # --- moving ---------------------------------------------------------

    def _body_height(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _move_to(self, index: int) -> None:
        if not self.rows:
            return
        self._cursor = max(0, min(index, len(self.rows) - 1))
        moved = self.rows[self._cursor].id != self._cursor_id
        self._cursor_id = self.rows[self._cursor].id
        self._keep_cursor_in_view()
        self.refresh()
        if moved:
            self.post_message(self.Moved(self._cursor_id))

    def _keep_cursor_in_view(self) -> None:
        top = self.scroll_offset.y
        height = self._body_height()
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False, immediate=True)
        elif self._cursor >= top + height:
            self.scroll_to(y=self._cursor - height + 1, animate=False, immediate=True)

    def action_cursor(self, step: int) -> None:
        """One line up or down."""
        self._move_to(self._cursor + step)

    def action_page(self, step: int) -> None:
        """A screenful up or down."""
        self._move_to(self._cursor + step * self._body_height())

    def action_edge(self, last: int) -> None:
        """The first or the last device."""
        self._move_to(len(self.rows) - 1 if last else 0)

    def action_sort(self, column: int) -> None:
        """Sort by a column, or the other way if already sorted by it."""
        self.sort_by(column)

    def action_mark(self) -> None:
        """Mark or unmark the device under the cursor, then go to the next one."""
        ident = self.selected_id
        if ident is None:
            return
        self.marked.symmetric_difference_update({ident})
        self.post_message(self.MarksChanged())
        self._move_to(self._cursor + 1)
        self.refresh()

    def action_mark_all(self) -> None:
        """Mark every device shown; if they all were, unmark them."""
        shown = {r.id for r in self.rows}
        if shown <= self.marked:
            self.marked -= shown
        else:
            self.marked |= shown
        self.post_message(self.MarksChanged())
        self.refresh()

    def action_open(self) -> None:
        """Open the device under the cursor."""
        if self.selected_id is not None:
            self.post_message(self.Opened(self.selected_id))

    def on_click(self, event: events.Click) -> None:
        """A click on a title sorts by its column; on a device, moves there (on the
        cursor's line, opens it)."""
        at = event.get_content_offset(self)
        if at is None:
            return  # on the border or a scroll bar
        if at.y == 0:
            column = self._column_at(at.x)
            if column is not None:
                self.sort_by(column)
            return
        index = self.scroll_offset.y + at.y - 1
        if 0 <= index < len(self.rows):
            if index == self._cursor and event.chain > 1:
                self.action_open()
            self._move_to(index)

    def _column_at(self, x: int) -> int | None:
        """Which column's title is at ``x`` (screen cells inside the table)."""
        frozen = self._frozen_width()
        if x < frozen:
            return 0 if x >= len(MARKED) else None
        at = x - frozen + self.scroll_offset.x
        for n in range(1, len(COLUMNS)):
            width = self._widths[n] + GAP
            if at < width:
                return n
            at -= width
        return None

    def on_focus(self) -> None:
        """The cursor's line turns from dim to reversed."""
        self.refresh()

    def on_blur(self) -> None:
        """The cursor's line dims."""
        self.refresh()
