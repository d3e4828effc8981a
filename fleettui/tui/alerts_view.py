"""The alerts view (``a``): the open alerts to act on, and those resolved in the last 24 h.

Each open alert is one row: its severity, target, kind, how long it has lasted,
whether it escalated, who acknowledged it, and whether a silence covers it (its
target's, or for a device its site's). A cursor picks one: Enter or ``g`` goes to
its device or site in the tree, ``c`` acknowledges it, ``s`` silences its target
for a chosen time. Below, the alerts resolved in the last 24 h, newest first.

The view reads the store itself (every second, and whenever the control room
refreshes) at the control room's clock, and acts through the control room's own
acknowledge and silence (the palette's too). What the store holds is drawn as
plain text (``rich.text.Text``), its terminal controls made visible.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import ClassVar, Protocol

from rich.console import Group
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker

from fleettui.domain import Alert
from fleettui.printable import printable_fields
from fleettui.store import Store
from fleettui.tui.alerts_lines import (
    OPEN_HEADER,
    AlertsNow,
    GridLine,
    OpenAlert,
    acked_text,
    keys_text,
    open_cells,
    open_rows,
    recently_resolved,
    resolved_section,
    table_lines,
    target_of,
    target_text,
)

log = logging.getLogger("fleettui.tui")

#: alerts read for the resolved ones (the newest, open ones among them)
RESOLVED_READ = 500
#: the view re-reads the store this often (seconds) at least, and looks this often whether
#: the control room refreshed (its open alerts are then a new list) to read with it
READ_EVERY_S = 1.0
WATCH_APP_S = 0.2
#: what ``s`` offers, in hours: keys 1 to 5
SILENCE_HOURS = (1, 2, 4, 8, 24)


async def read_alerts(store: Store, now: datetime) -> AlertsNow:
    """Read the open and recently resolved alerts and the silences in force, made printable."""
    open_ = [printable_fields(a) for a in await store.alerts()]
    every = [printable_fields(a) for a in await store.alerts(open_only=False,
                                                              limit=RESOLVED_READ)]
    silences = [printable_fields(s) for s in await store.active_silences(now)]
    return AlertsNow(now, open_rows(open_, silences), recently_resolved(every, now))


class AlertDesk(Protocol):
    """What the view needs of the control room (``FleetApp``): its store and clock, the
    open alerts of its last refresh (a new list at each), the tree's cursor, and the
    acknowledge and silence the palette uses too."""

    open_alerts: list[Alert]

    @property
    def store(self) -> Store:
        """The store the control room views."""
        ...

    def now(self) -> datetime:
        """The control room's clock (UTC)."""
        ...

    def jump(self, target: tuple[str, str]) -> None:
        """Move the tree's cursor to ("device", id) or ("site", id)."""
        ...

    async def acknowledge_now(self, alert_id: int) -> Alert | None:
        """Acknowledge an open alert, with a toast."""
        ...

    async def silence_now(self, target: str, hours: float, reason: str = "") -> None:
        """Silence a device or a site for ``hours``, with a toast."""
        ...


# --- the screens -------------------------------------------------------------


class SilenceChoice(ModalScreen[float | None]):
    """How long to silence a target for: keys 1 to 5 pick (dismiss with the hours), Esc
    cancels (None)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(str(i), f"pick({h})", f"{h} h", id=f"silence.{i}")
          for i, h in enumerate(SILENCE_HOURS, 1)),
        Binding("escape,q", "cancel", "Cancel", id="silence.cancel"),
    ]
    DEFAULT_CSS = """
    SilenceChoice { align: center middle; }
    SilenceChoice > Vertical { width: 76; max-width: 95%; height: auto;
                               border: thick $warning; padding: 0 1; background: $surface; }
    """

    def __init__(self, target: Text) -> None:
        super().__init__()
        self.target = target

    def compose(self) -> ComposeResult:
        """The question and its answers, one key each."""
        with Vertical() as box:
            box.border_title = "Silence"
            yield Static(self.question(), id="silence-question")

    def question(self) -> Text:
        """ "Silence dev_x (notifications; alerts are still recorded) for:", then the keys."""
        choices = Text("   ").join(Text.assemble((f"{i}:", "bold"), f" {h} h")
                                  for i, h in enumerate(SILENCE_HOURS, 1))
        return Text.assemble("Silence ", self.target,
                             " (its notifications; alerts are still recorded) for:\n",
                             choices, "    ", ("Esc", "bold"), " cancel")

    def action_pick(self, hours: float) -> None:
        """Close with the hours chosen."""
        self.dismiss(hours)

    def action_cancel(self) -> None:
        """Close without silencing."""
        self.dismiss(None)


class AlertsView(ModalScreen[None]):
    """The open alerts under a cursor (to go to, acknowledge or silence) and the ones
    resolved in the last 24 h, re-read while it is open."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor(1)", "Down", show=False, id="alerts.down"),
        Binding("k", "cursor(-1)", "Up", show=False, id="alerts.up"),
        Binding("g", "go", "Go to", id="alerts.go"),
        Binding("c", "acknowledge", "Acknowledge", id="alerts.ack"),
        Binding("s", "silence", "Silence", id="alerts.silence"),
        Binding("escape,q,a", "close", "Close", id="alerts.close"),
    ]
    DEFAULT_CSS = """
    AlertsView { align: center middle; }
    AlertsView > #alerts-box { width: 96%; height: 92%; border: thick $warning;
                               padding: 0 1; background: $surface; }
    AlertsView #alerts-head { height: auto; padding: 0 2 0 1; }
    AlertsView #alerts-open { width: 1fr; height: auto; max-height: 60%; border: none;
                              padding: 0; background: $surface; scrollbar-gutter: stable;
                              scrollbar-size-vertical: 1; scrollbar-size-horizontal: 0; }
    AlertsView #alerts-open > .option-list--option { padding: 0 1; }
    AlertsView #alerts-resolved-box { height: 1fr; margin-top: 1; padding: 0 1; }
    AlertsView #alerts-keys { height: auto; padding: 0 1; }
    """

    def __init__(self, desk: AlertDesk) -> None:
        super().__init__()
        self.desk = desk
        #: what is shown (None until the first read)
        self.shown: AlertsNow | None = None
        self._reading = False
        self._read_again = False
        self._app_alerts: list[Alert] | None = None
        #: when the last read started (the monotonic clock: how often, not what time)
        self._read_at = 0.0

    def compose(self) -> ComposeResult:
        """Title and column names, the open alerts, the resolved ones, the keys."""
        with Vertical(id="alerts-box") as box:
            box.border_title = "Alerts"
            yield Static(Text("reading…", style="dim"), id="alerts-head")
            yield OptionList(id="alerts-open")
            with VerticalScroll(id="alerts-resolved-box"):
                yield Static("", id="alerts-resolved")
            yield Static("", id="alerts-keys")

    def on_mount(self) -> None:
        """Read now, then every second and whenever the control room refreshes."""
        self.query_one("#alerts-open", OptionList).focus()
        self._app_alerts = self.desk.open_alerts
        self.read()
        self.set_interval(WATCH_APP_S, self._tick)

    # --- reading -------------------------------------------------------------

    def _tick(self) -> None:
        """Read again when the control room has refreshed (it keeps a new list of open
        alerts each time), or ``READ_EVERY_S`` after the last read."""
        refreshed = self.desk.open_alerts is not self._app_alerts
        if refreshed or time.monotonic() - self._read_at >= READ_EVERY_S:
            self._app_alerts = self.desk.open_alerts
            self.read()

    def read(self) -> None:
        """Re-read the alerts from the store and redraw; a read asked for while one runs is
        made once after it, never two at a time."""
        if self._reading:
            self._read_again = True
            return
        self._reading = True
        self._read_at = time.monotonic()
        _w: Worker[None] = self.run_worker(self._read, group="alerts-view")

    async def _read(self) -> None:
        """The read itself (in a worker), repeated while reads were asked for meanwhile."""
        try:
            while True:
                self._read_again = False
                try:
                    shown = await read_alerts(self.desk.store, self.desk.now())
                except Exception:  # the database away: keep what is shown, try again later
                    log.warning("cannot read the alerts", exc_info=True)
                    return
                self._draw(shown)
                if not self._read_again:
                    return
        except NoMatches:
            return  # closed while reading
        finally:
            self._reading = False

    # --- drawing -------------------------------------------------------------

    def _draw(self, shown: AlertsNow) -> None:
        """Show the data read: head, open alerts (the cursor kept on its alert), resolved."""
        self.shown = shown
        now = shown.now
        header, lines = table_lines(OPEN_HEADER, [open_cells(r, now) for r in shown.open])
        self.query_one("#alerts-head", Static).update(self._head(shown, header))
        self._draw_options(shown, lines)
        self.query_one("#alerts-resolved", Static).update(
            resolved_section(shown.resolved, now))
        self.query_one("#alerts-keys", Static).update(
            keys_text(bool(shown.open), self._keys_in_force()))

    def _keys_in_force(self) -> dict[str, list[str]]:
        """This screen's keys by binding id, as Textual has them in force (with the app's
        keymap, ``[tui.keys]``, applied)."""
        keys: dict[str, list[str]] = {}
        for key, active in self.active_bindings.items():
            if active.binding.id:
                keys.setdefault(active.binding.id, []).append(key)
        return keys

    @staticmethod
    def _head(shown: AlertsNow, header: GridLine) -> Text | Group:
        """"No open alerts", or how many there are over the column names."""
        count = len(shown.open)
        if not count:
            return Text("No open alerts", style="bold green")
        title = Text(f"{count} open alert{'s' if count > 1 else ''} · times in UTC",
                     style="bold")
        return Group(title, header)

    def _draw_options(self, shown: AlertsNow, lines: list[GridLine]) -> None:
        """The open alerts as options: prompts replaced in place when they are the same
        alerts (cursor and scroll stay), else a new list with the cursor on its alert."""
        options = self.query_one("#alerts-open", OptionList)
        options.display = bool(lines)
        if lines and self.focused is None:
            options.focus()  # hidden while there was no open alert
        ids = [str(r.alert.id) for r in shown.open]
        if ids == [o.id for o in options.options]:
            for index, line in enumerate(lines):
                options.replace_option_prompt_at_index(index, line)
            return
        was = options.highlighted_option
        highlighted = options.highlighted
        options.set_options(Option(line, id=i) for line, i in zip(lines, ids, strict=True))
        if ids:
            options.highlighted = (ids.index(was.id) if was is not None and was.id in ids
                                   else min(highlighted or 0, len(ids) - 1))

    # --- the cursor's alert ----------------------------------------------------

    @property
    def selected(self) -> OpenAlert | None:
        """The open alert under the cursor, if any."""
        if self.shown is None:
            return None
        option = self.query_one("#alerts-open", OptionList).highlighted_option
        if option is None:
            return None
        return next((r for r in self.shown.open if str(r.alert.id) == option.id), None)

    def action_cursor(self, step: int) -> None:
        """Move the cursor down (1) or up (-1): j and k."""
        options = self.query_one("#alerts-open", OptionList)
        if step > 0:
            options.action_cursor_down()
        else:
            options.action_cursor_up()

    @on(OptionList.OptionSelected, "#alerts-open")
    def _chosen(self, _event: OptionList.OptionSelected) -> None:
        """Enter (or a click) on an alert goes to it, as ``g`` does."""
        self.action_go()

    def action_go(self) -> None:
        """Close and put the tree's cursor on the alert's device or site."""
        row = self.selected
        if row is None:
            return
        self.desk.jump(target_of(row.alert))
        self.dismiss(None)

    def action_acknowledge(self) -> None:
        """Acknowledge the cursor's alert (once: an acknowledged one says by whom)."""
        row = self.selected
        if row is None:
            return
        a = row.alert
        if a.acknowledged_at is not None:
            self.app.notify(f"alert {a.id} was acknowledged already "
                            f"({acked_text(a, self.desk.now(), short=False).plain})",
                            title="alert")
            return

        async def acknowledge() -> None:
            await self.desk.acknowledge_now(a.id)
            self.read()

        _w: Worker[None] = self.run_worker(acknowledge, group="alerts-act")

    def action_silence(self) -> None:
        """Ask for how long, then silence the cursor's alert's target (a device or a site)."""
        row = self.selected
        if row is None:
            return
        a = row.alert

        def chosen(hours: float | None) -> None:
            if hours is None:
                return

            async def silence() -> None:
                await self.desk.silence_now(a.target, hours,
                                            f"from the alerts view (alert {a.id})")
                self.read()

            _w: Worker[None] = self.run_worker(silence, group="alerts-act")

        self.app.push_screen(SilenceChoice(target_text(a)), chosen)

    def action_close(self) -> None:
        """Back to the control room."""
        self.dismiss(None)
