"""The control room app: header totals, site tree, device panel, event log, palette.

A view over the engine and the store: it reads state and events from the
store, queues commands through ``enqueue`` (the engine runs them), and never
talks to a device. With an engine it owns polling (started on mount in the
app's loop, stopped on unmount); without one it is a viewer of a store that
another poller fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult, ScreenStackError
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.driver import Driver
from textual.message import Message
from textual.widgets import Footer, Input, RichLog, Static, Tree
from textual.worker import Worker

from fleettui.config import AlertSettings, Config
from fleettui.domain import Alert, DeviceStatus, Event, EventKind, PendingDevice, Site
from fleettui.engine.alerts import Notification, RateLimitedSink, Sink, log_sink
from fleettui.engine.desktop import DesktopSink
from fleettui.engine.engine import Engine
from fleettui.printable import printable, printable_fields
from fleettui.runtime import ApiUnavailable, PushUnavailable, Runtime
from fleettui.store import Store
from fleettui.store.where import StoreTarget
from fleettui.tui.eventlog import EventLog
from fleettui.tui.fleet_map import FleetMap, FleetMapStatus
from fleettui.tui.fleet_table import FleetTable
from fleettui.tui.header import HeaderFacts, fit_header
from fleettui.tui.log_view import LogPainter
from fleettui.tui.model import DeviceRow, SiteRow, Totals, arrange, totals
from fleettui.tui.notify import OscSink
from fleettui.tui.palette import BuiltIns, DeviceCommands
from fleettui.tui.panel import DevicePanel, heartbeat_slots
from fleettui.tui.panel_data import PanelReader
from fleettui.tui.paths import styles_dir
from fleettui.tui.problems import PENDING_SITE, Issue, Limits, issues_of, mark_text, pending_state
from fleettui.tui.terminal import (
    STOP_SIGNALS,
    StopSignals,
    TerminalGone,
    detach_standard_streams,
    terminal_alive,
)
from fleettui.tui.tree import SiteTree
from fleettui.tui.views import FleetViews

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("fleettui.tui")

#: the panel is drawn once the tree's cursor has rested this long (seconds)
PANEL_SETTLE_S = 0.05
#: events read back into the log when the app opens (the last screenfuls of history)
LOG_LINES = 500
#: event-log lines drawn (the newest; the log model keeps more for its filters, the store
#: everything): drawing is bounded whatever a burst brings
LOG_SHOWN = 100
#: the opening view waits this long at most for every status to be known (seconds)
OPENING_WAIT_S = 15.0
#: the fleet table's punches-today counts are read again after this long (seconds): a
#: count over a day of the whole fleet's punches, not worth every refresh
TODAY_EVERY_S = 30.0
#: alert events in the store → the change a notification names
ALERT_CHANGES = {EventKind.ALERT_OPENED: "opened", EventKind.ALERT_ESCALATED: "escalated",
                 EventKind.ALERT_REMINDER: "reminder", EventKind.ALERT_RESOLVED: "resolved"}
FINAL_COMMAND_EVENTS = (EventKind.COMMAND_DONE, EventKind.COMMAND_FAILED, EventKind.COMMAND_EXPIRED)


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


def freeze_startup_objects() -> None:
    """Keep what start-up built out of the garbage collector's full passes.

    Python's full collection walks every object alive, and a started control
    room holds ~150,000 (Textual, its CSS, the widgets, the engine, the
    modules): each full pass held the event loop for ~100 ms, and a key
    pressed then waited for it (bench/tui.py: key latency p99 during bursts).
    Garbage is collected first; what survives is long-lived, so it is moved
    to the permanent generation (``gc.freeze``) and later passes walk only
    what came after. ``on_unmount`` undoes it (``gc.unfreeze``), so an app's
    objects can be collected once it is gone (tests run many apps in a process).
    """
    gc.collect()
    gc.freeze()


class FleetChanged(Message):
    """The engine committed something: refresh from the store (coalesced)."""

    def can_replace(self, message: Message) -> bool:
        """A newer change makes a queued older one redundant."""
        return isinstance(message, FleetChanged)


class FleetApp(FleetViews):
    """fleettui's terminal control room."""

    CSS_PATH = styles_dir() / "fleettui.tcss"
    TITLE = "fleettui"
    COMMANDS = {BuiltIns, DeviceCommands}  # noqa: RUF012 (Textual's convention)
    BINDINGS = [  # noqa: RUF012 (Textual's class-level convention)
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("slash", "filter", "Filter", id="app.filter"),
        Binding("p", "toggle_problems", "Problems only", id="app.problems"),
        Binding("a", "alerts", "Alerts", id="app.alerts"),
        Binding("t", "toggle_table", "Table", id="app.table"),
        Binding("m", "toggle_map", "Map", id="app.map"),
        Binding("l", "log_scope", "Log: only the selected device or site", show=False,
                id="app.log_scope"),
        Binding("L", "log_kinds", "Log: which kinds (all, status, commands, syncs)",
                show=False, id="app.log_kinds"),
        Binding("e", "log_unfold", "Log: syncs one by one / folded", show=False,
                id="app.log_unfold"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="app.clear_filter"),
        Binding("question_mark,f1", "help", "Help", key_display="?", id="app.help"),
    ]

    def __init__(
        self,
        store: Store | None = None,
        engine: Engine | None = None,
        *,
        config: Config | None = None,
        db_path: StoreTarget | None = None,
        refresh_s: float = 1.0,
        banner: str = "",
        embed: bool = True,
        short_banner: str = "",
        clock: Callable[[], datetime] | None = None,
        http: tuple[str, int] | None = None,
        osc_notify: str | None = None,
        min_refresh_gap_s: float = 0.2,
        stop_signals: StopSignals | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        """Either give a ``store`` (and optionally an ``engine`` to own), or a
        ``config`` and ``db_path``: the store is opened on mount, with an engine
        embedded if ``embed`` (else the app is a viewer of another poller's store),
        or a ``runtime`` that already holds the poller lock (``run_tui``'s): its
        store, engine and API are started on mount and stopped on unmount.

        ``http`` (host, port) serves the HTTP API from the app's event loop;
        ``osc_notify`` ("777" or "9") also sends alert notifications to the
        terminal as OSC escape sequences (they travel over SSH).
        ``short_banner`` replaces ``banner`` when the header line is narrow (80 columns).
        ``min_refresh_gap_s``: the least time between two refreshes from the store.
        ``stop_signals``: SIGHUP/SIGTERM noted before the app's loop took them over
        (``run_tui`` notes them from before the poller lock is taken)."""
        super().__init__()
        self._clock = clock
        if runtime is None:
            if store is None and (config is None or db_path is None):
                raise ValueError("FleetApp needs a store, or a config and a database path")
            runtime = Runtime(config, db_path, store=store, engine=engine, embed=embed)
        #: start-up and shutdown of the store, the engine and the API (fleettui.runtime)
        self.runtime = runtime
        if runtime.config is not None and runtime.config.tui.keys:
            self.set_keymap(dict(runtime.config.tui.keys))  # [tui.keys]: checked by keys.py
        self.store_: Store | None = runtime.store
        self.engine: Engine | None = runtime.engine
        self.config = runtime.config
        self.db_path = runtime.db_path
        self.refresh_s = refresh_s
        self.banner = banner
        self.short_banner = short_banner
        self.site_list: list[Site] = []
        self.open_alerts: list[Alert] = []
        self.dead_webhooks = 0
        #: push devices that dialed in unknown, waiting to be approved onto a site
        self.pending_push: list[PendingDevice] = []
        self.min_refresh_gap_s = min_refresh_gap_s
        self._refresh_scheduled = False
        self._last_refresh_end = 0.0
        self._tailing = False
        self._viewer_sinks: list[RateLimitedSink] | None = None
        self.rows: dict[str, DeviceRow] = {}
        self.arranged: list[SiteRow] = []
        self.filter_text = ""
        self.problems_only = False
        self.selected: tuple[str, str] | None = None
        #: until the operator presses a key or clicks, the cursor rests on the worst
        #: problem (the device put there last, or None): the panel is never empty while
        #: something is wrong
        self._auto_selected: str | None = None
        self._auto_select = True
        #: until the opening view is chosen: the map if nothing is wrong once every
        #: status is known (or OPENING_WAIT_S went by), else the tree on the worst problem
        self._opening = True
        self._opened_at = time.monotonic()
        self.last_event_id = 0
        self.my_requests: set[int] = set()
        self._refresh_lock = asyncio.Lock()
        self._dirty = False
        self.http = http
        self.api_address = ""
        self.osc = (OscSink(self.write_terminal, osc_notify, tmux=bool(os.environ.get("TMUX")))
                    if osc_notify else None)
        self.hung_up = False
        self.stop_signals = stop_signals
        #: set once the app is stopping (a hang-up, SIGTERM): start-up goes no further
        self._stopping = asyncio.Event()
        self._header = Text()
        self._totals: Totals | None = None
        #: what the event log shows (``eventlog.py``), and what draws it
        self.event_log = EventLog()
        self._log_painter = LogPainter(self.event_log, LOG_SHOWN)

    # --- layout ---------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Header line, filter, tree | panel and event log, footer."""
        yield Static("fleettui · starting…", id="totals")
        yield Input(placeholder="filter: name, serial or site (Enter keeps, Esc clears)",
                    id="filter")
        with Horizontal(id="main"):
            yield SiteTree(id="tree")
            with Vertical(id="right"):
                yield FleetMap(id="map")
                yield FleetMapStatus(id="map-status")
                yield FleetTable(id="table")
                yield DevicePanel(id="panel")
                # min_width: lines wrap at the log's width (RichLog's default is 78 columns,
                # which cut a long id off at 80 columns)
                yield RichLog(id="events", wrap=True, markup=False, min_width=20)
        yield Footer()

    @property
    def api(self) -> web.AppRunner | None:
        """The HTTP API's runner while the app serves it."""
        return self.runtime.api

    @property
    def store(self) -> Store:
        """The store this app views."""
        if self.store_ is None:
            raise RuntimeError("the store is not open yet")
        return self.store_

    def now(self) -> datetime:
        """Current time in UTC (the engine's clock when there is one)."""
        if self._clock is not None:
            return self._clock()
        return self.engine.clock() if self.engine is not None else utc_now()

    # --- lifecycle ------------------------------------------------------

    async def on_mount(self) -> None:
        """Open the store, start the embedded engine, load the fleet, refresh periodically."""
        self.query_one("#filter", Input).display = False
        for hidden in ("#table", "#map", "#map-status"):
            self.query_one(hidden).display = False
        self.query_one("#events", RichLog).border_title = "Events"
        self.query_one("#panel", DevicePanel).border_title = "Device"
        self.query_one("#table", FleetTable).border_title = "Fleet"
        self.query_one("#map", FleetMap).border_title = "Fleet map"
        if not self.is_headless:
            self._take_stop_signals()
        self.store_ = await self.runtime.open()
        if self._stopping.is_set():
            return
        self.engine = await self.runtime.start_engine(alert_sinks=self._alert_sinks,
                                                      listeners=[self._on_engine_event])
        await self._serve_push()
        if self.http is not None and not self._stopping.is_set():
            await self._serve_api(*self.http)
        if self._stopping.is_set():
            return
        if not self.is_headless and terminal_alive(getattr(self._driver, "fileno", 0)):
            self.set_interval(1.0, self._watch_terminal)
        self.site_list = [printable_fields(s) for s in await self.store.sites()]
        freeze_startup_objects()
        await self.refresh_data()
        try:
            self._focus_view()
        except NoMatches:
            if self.is_running:
                raise
            return  # closed while it was still starting (widgets gone): nothing to focus
        self.set_interval(self.refresh_s, self._tick)
        if self.engine is None and self.store.shared:
            # a viewer of a database pollers share (often on other boxes): woken by NOTIFY
            _w: Worker[None] = self.run_worker(partial(self._while_open, self._hear_events),
                                               group="events")

    async def _hear_events(self) -> None:
        """A viewer's refresh as soon as another process commits an event (LISTEN/NOTIFY
        wakes it), on top of the steady refresh: an outage shows at once, not at the next
        tick."""
        while True:
            try:
                heard = await self.store.wait_for_events(self.last_event_id, 30.0)
            except Exception:  # the database away: the steady refresh says so; try later
                log.warning("cannot wait for events", exc_info=True)
                await asyncio.sleep(5.0)
                continue
            if heard:
                self.request_refresh()
                await asyncio.sleep(self.min_refresh_gap_s)  # refreshes are throttled anyway

    async def on_unmount(self) -> None:
        """Stop the API and the embedded engine (its in-flight work finishes), close the store
        (the runtime's ``stop``; the poller lock is the caller's to release)."""
        if self.engine is not None and self._on_engine_event in self.engine.listeners:
            self.engine.listeners.remove(self._on_engine_event)
        await self.runtime.stop()
        if self.runtime.store is None:
            self.store_ = None
        gc.unfreeze()
        if not self.is_headless:
            self._give_back_stop_signals()

    def _alert_sinks(self) -> list[Sink]:
        """Where an embedded engine's alert notifications go: the log, toasts, the desktop
        and, if asked for, the terminal (OSC)."""
        sinks: list[Sink] = [log_sink, self.toast_alert, DesktopSink()]
        if self.osc is not None:
            sinks.append(self.osc)
        return sinks

    def _take_stop_signals(self) -> None:
        """Handle SIGHUP and SIGTERM in the app's loop, first thing on mount (and one noted
        while starting): a drop or `kill` while the store opens or the engine starts exits
        cleanly too, not by the signal's default (instant death: no graceful engine stop)."""
        loop = asyncio.get_running_loop()
        handlers = {signal.SIGHUP: self.hangup, signal.SIGTERM: self.terminated}
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, handlers[sig])
        noted = self.stop_signals.received if self.stop_signals is not None else None
        if noted is not None:
            handlers[signal.Signals(noted)]()

    def _give_back_stop_signals(self) -> None:
        """The loop is done with the signals (kept until the engine stopped: a second
        hang-up during its stop is common, the shell passes its own on)."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        if self.stop_signals is not None:
            self.stop_signals.take_back()

    async def _serve_push(self) -> None:
        """Serve the push listener when the config enables it; a bind failure is a toast."""
        try:
            address = await self.runtime.serve_push()
        except PushUnavailable as e:
            log.error("%s", e)
            self.notify(str(e), title="push listener", severity="error", timeout=20)
            return
        if address is not None:
            self.banner = f"{self.banner}   push {address}/iclock".strip()
            log.info("push listener on %s/iclock/", address)

    async def _serve_api(self, host: str, port: int) -> None:
        """Serve the HTTP API from this loop (the runtime's); a bind failure is a toast and
        a log line."""
        try:
            self.api_address = await self.runtime.serve_api(host, port)
        except ApiUnavailable as e:
            log.error("%s", e)
            self.notify(str(e), title="HTTP API", severity="error", timeout=20)
            return
        bound = self.api_address.rsplit(":", 1)[1]
        self.banner = f"{self.banner}   API {self.api_address}/v1".strip()
        self.short_banner = f"{self.short_banner}  API :{bound}".strip()
        log.info("HTTP API on %s/v1 (bearer API keys: fleettui api-key)", self.api_address)

    def get_driver_class(self) -> type[Driver]:
        """Textual's driver, or on Linux/macOS one that survives a hung-up terminal."""
        cls = super().get_driver_class()
        if sys.platform != "win32":
            from textual.drivers.linux_driver import LinuxDriver

            from fleettui.tui.terminal import TerminalDriver

            if cls is LinuxDriver:
                return TerminalDriver
        return cls

    def write_terminal(self, sequence: str) -> None:
        """Write a raw escape sequence to the terminal, between Textual's own writes."""
        if self._driver is not None and not self.hung_up:
            self._driver.write(sequence)

    def hangup(self) -> None:
        """The terminal went away (SSH dropped): stop drawing and exit cleanly."""
        if self.hung_up:
            return
        self.hung_up = True
        log.warning("terminal hung up: stopping (the engine finishes its current work)")
        self._stopping.set()
        if self._driver is not None:
            self._driver.hung_up = True  # type: ignore[attr-defined]
        detach_standard_streams()
        self.exit()

    def terminated(self) -> None:
        """SIGTERM: exit as on `q` (the engine finishes its current work, the lock is freed)."""
        if self._stopping.is_set():
            return
        log.warning("SIGTERM: stopping (the engine finishes its current work)")
        self._stopping.set()
        self.exit()

    def on_terminal_gone(self, _message: TerminalGone) -> None:
        """The driver saw the terminal fail under it."""
        self.hangup()

    def _watch_terminal(self) -> None:
        # no SIGHUP but the terminal is gone (stdin at end-of-file, a closed pty): Textual
        # would spin on the end-of-file for ever
        driver = self._driver
        if driver is not None and not self.hung_up and not terminal_alive(
                getattr(driver, "fileno", 0)):
            self.hangup()

    def _on_engine_event(self, event: Event) -> None:
        self.post_message(FleetChanged())

    def toast_alert(self, n: Notification) -> None:
        """Alert notifications as toasts (the engine rate-limits them per sink)."""
        loud = n.change in ("opened", "escalated", "reminder")
        self.notify(printable(n.text), title="alert", severity="warning" if loud else "information",
                    timeout=8)

    def on_fleet_changed(self, _message: FleetChanged) -> None:
        """Refresh after an engine event (throttled: see ``request_refresh``)."""
        self.request_refresh()

    def _tick(self) -> None:
        self.request_refresh()

    def request_refresh(self) -> None:
        """Schedule one refresh from the store, no sooner than ``min_refresh_gap_s`` after
        the previous one ended.

        A burst of 500 status changes is 500 engine events: refreshing for each,
        back to back, kept the event loop (shared with the engine) painting and
        starved the engine's own writes (bench/tui.py: 15.5 s for the burst to
        reach the screen, against 0.6 s throttled). Requests while one is
        scheduled fold into it.

        (A gap of twice the last refresh's duration was tried at 2,000 devices:
        a refresh's duration includes its wait behind the engine's writes, so
        after a burst the gap grew to seconds and the last change reached the
        screen 2.2 s late, p99 8.3 s, against 0.3 s with the fixed gap.)
        """
        if self._refresh_scheduled:
            return
        self._refresh_scheduled = True
        wait = self._last_refresh_end + self.min_refresh_gap_s - time.monotonic()
        if wait > 0:
            self.set_timer(wait, self._start_refresh)
        else:
            self.call_later(self._start_refresh)

    def _start_refresh(self) -> None:
        self._refresh_scheduled = False
        # a function, not a coroutine: a worker cancelled before it starts (the app
        # exiting during a burst) then leaves no coroutine never awaited
        # (the annotation gives mypy the worker's result type, which it cannot infer from a
        # function that returns a coroutine; likewise below)
        _w: Worker[None] = self.run_worker(partial(self._while_open, self._refresh_and_note),
                                           group="refresh")

    async def _refresh_and_note(self) -> None:
        try:
            await self.refresh_data()
        finally:
            self._last_refresh_end = time.monotonic()

    def refresh_panel_soon(self) -> None:
        """Redraw the panel in a worker, cancelling one still drawing an older selection.

        The worker gets a function, not a coroutine: a worker cancelled before it
        starts (keys pressed fast) then leaves no coroutine never awaited."""

        async def draw() -> None:
            # a cursor held on ↓ moves every few ms: draw where it rests, not every
            # device it passes (each drawing is several store reads that would queue
            # ahead of the engine's writes on the one database connection)
            await asyncio.sleep(PANEL_SETTLE_S)
            await self._while_open(self.refresh_panel)

        _w: Worker[None] = self.run_worker(draw, group="panel", exclusive=True)

    async def _while_open(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run a screen update; if the app closes under it (widgets gone), just stop."""
        try:
            await work()
        except NoMatches:
            if self.is_running:
                raise

    # --- reading the store ----------------------------------------------

    async def refresh_data(self) -> None:
        """Read devices, flapping and new events from the store and update the screen.

        One refresh at a time; a request during one runs once more after it.
        """
        if self._refresh_lock.locked():
            self._dirty = True
            return
        async with self._refresh_lock:
            while True:
                self._dirty = False
                if self.store_ is not None:
                    self.dead_webhooks = await self.store.webhook_dead_count()
                    self.pending_push = [printable_fields(p) for p in
                                         await self.store.pending_push_devices()]
                await self._refresh_once()
                self.open_alerts = [printable_fields(a) for a in await self.store.alerts()]
                if not self._dirty:
                    break

    async def _flapping(self) -> dict[str, tuple[bool, float]]:
        if self.engine is not None:
            return {d: self.engine.alerts.flapping(d) for d in self.rows}
        return {d: (s.flapping, s.percent) for d, s in (await self.store.flap_states()).items()}

    async def _refresh_once(self) -> None:
        if self.store_ is None:
            return
        # what API clients and devices wrote (names, reasons) is drawn with its terminal
        # controls made visible
        devices = [printable_fields(d) for d in await self.store.devices()]
        known = {s.id for s in self.site_list}
        if any(d.site_id not in known for d in devices):
            # a device registered at run time on a site created since (HTTP API)
            self.site_list = [printable_fields(s) for s in await self.store.sites()]
        self.rows = {d.id: DeviceRow(d) for d in devices}
        for device_id, (flapping, pct) in (await self._flapping()).items():
            if device_id in self.rows:
                self.rows[device_id].flapping, self.rows[device_id].flap_pct = flapping, pct
        config = self.config or (self.engine.config if self.engine is not None else None)
        limits = Limits.of(config.problems if config is not None else None)
        now = self.now()
        for row in self.rows.values():
            row.issues = issues_of(row.device, row.flapping, limits, now)
            row.notes = tuple(mark_text(m, row.device, now) for m in row.marks)
        if self.view == "table" and time.monotonic() - self._today_at >= TODAY_EVERY_S:
            await self._count_today()
        if self._widgets_gone():
            return
        self._apply()
        await self._tail_events()
        await self.refresh_panel()

    def _widgets_gone(self) -> bool:
        """Whether the screen's widgets are gone (a refresh outlived the app's shutdown)."""
        try:
            return not self.query("#panel")  # the default screen, under any modal
        except (ScreenStackError, IndexError):
            return True

    def _apply(self) -> None:
        """Re-arrange the cached rows (filter, problems first) onto the tree and header."""
        rows = list(self.rows.values())
        keep = None
        if self.problems_only and self.selected is not None and self.selected[0] == "device":
            # a selected problem that recovers stays on screen (the operator is watching it)
            ident = self.selected[1]
            if any(r.id == ident for site in self.arranged for r in site.devices):
                keep = ident
        sites, shown = self.site_list, rows
        if self.pending_push:  # waiting for approval: a problem, on a "site" of their own
            sites = [*sites, PENDING_SITE]
            shown = rows + [self._pending_row(p) for p in self.pending_push]
        self.arranged = arrange(sites, shown, text=self.filter_text,
                                problems_only=self.problems_only, keep=keep)
        tree = self.query_one("#tree", SiteTree)
        if self.view == "tree":  # a hidden tree of 2,000 nodes is not kept up (set_view)
            tree.show(self.arranged)
        if self._auto_select:
            problems = [r for site in self.arranged for r in site.devices if r.problem]
            first = min(problems, key=lambda r: r.severity).id if problems else None
            if first is not None and first != self._auto_selected:
                self._auto_selected = first
                if self.view == "map":
                    self.query_one("#map", FleetMap).select(first)
                else:
                    tree.focus_on(("device", first))
            if first is not None:
                self._opening = False  # the tree, on the worst problem
            elif self._opening and rows and self._statuses_known(rows):
                self._opening = False
                self.set_view("map")  # nothing wrong: the whole fleet at a glance
        self._totals = totals(self.site_list, rows)
        self._draw_header()
        self.show_view()

    def _statuses_known(self, rows: list[DeviceRow]) -> bool:
        """Whether the opening view can be chosen: every device checked once, or waited
        long enough (a device that never answers stays unknown)."""
        return (all(r.device.status is not DeviceStatus.UNKNOWN for r in rows)
                or time.monotonic() - self._opened_at >= OPENING_WAIT_S)

    def _pending_row(self, p: PendingDevice) -> DeviceRow:
        """A push device waiting for approval, as a line of the tree and the table."""
        return DeviceRow(pending_state(p), issues=(Issue.PENDING,), notes=("pending approval",))

    def _draw_header(self) -> None:
        """The header line (``header.py``), redrawn only when it changed."""
        if self._totals is None:
            return
        facts = HeaderFacts(self._mode_label(), self.filter_text, self.problems_only,
                            self.dead_webhooks, len(self.pending_push), len(self.marked),
                            self.banner, self.short_banner)
        header = fit_header(self._totals, facts, max(1, self.size.width - 2))  # its padding
        if header != self._header:
            # one line of fixed size: no layout pass for it
            self._header = header
            self.query_one("#totals", Static).update(header, layout=False)

    def _mode_label(self) -> str:
        """``[poller]``, ``[viewer]``, or, sharing a database with other pollers, how many of
        its sites this one polls: ``[poller 12/40 sites]``."""
        if self.engine is None:
            return "[viewer]"
        share = self.engine.share
        if share.everything:
            return "[poller]"
        return f"[poller {len(share.held_sites())}/{len(self.site_list)} sites]"

    def on_resize(self) -> None:
        """Redraw the header for the new width."""
        self._draw_header()

    async def _tail_events(self) -> None:
        first = not self._tailing
        if first:
            # opening on a long-lived database: show the last screenfuls, not all history
            self._tailing = True
            self.last_event_id = max(self.last_event_id,
                                     await self.store.last_event_id() - LOG_LINES)
        added = False
        while True:
            events = [printable_fields(e)
                      for e in await self.store.events_after(self.last_event_id, limit=500)]
            self.event_log.add(events, self._site_of)
            added = added or bool(events)
            for e in events:
                self._command_toast(e)
                if e.kind == EventKind.SITE_CREATED and not first:
                    self.request_sites()
                if not first:  # alerts of the past are in the log, not worth a toast now
                    self._viewer_alert(e)
            if events:
                self.last_event_id = events[-1].id
            if len(events) < 500:
                break
        if added or first:
            self.draw_log()

    def _site_of(self, device_id: str) -> str | None:
        row = self.rows.get(device_id)
        return row.device.site_id if row is not None else None

    def draw_log(self, *, again: bool = False) -> None:
        """Draw the event log from its model: the newest lines, in time order, folded and
        filtered as the operator chose (``log_view.py``; ``again``: a filter changed)."""
        self._log_painter.draw(self.query_one("#events", RichLog), again=again)

    def action_log_scope(self) -> None:
        """Show in the log only the selected device's or site's lines (or all again)."""
        self.event_log.scope = None if self.event_log.scope is not None else self.selected
        self.draw_log(again=True)

    def action_log_kinds(self) -> None:
        """Cycle the log's lines: all, status and alerts, commands, syncs and punches."""
        self.event_log.kinds = self.event_log.kinds.next()
        self.draw_log(again=True)

    def action_log_unfold(self) -> None:
        """Show routine syncs and punches one by one, or folded per minute and site."""
        self.event_log.unfolded = not self.event_log.unfolded
        self.draw_log(again=True)

    def request_sites(self) -> None:
        """Re-read the sites, then refresh (one was created over the HTTP API)."""

        async def reread() -> None:
            self.site_list = [printable_fields(s) for s in await self.store.sites()]
            self.request_refresh()

        _w: Worker[None] = self.run_worker(reread, group="sites")

    def _viewer_alert(self, e: Event) -> None:
        """A viewer hears of alerts from the store's events (the owning poller's engine
        raised them), through the same sinks as an embedded engine, rate-limited alike."""
        if self.engine is not None or not e.data.get("notified"):
            return
        change = ALERT_CHANGES.get(e.kind)
        if change is None:
            return
        if self._viewer_sinks is None:
            settings = self.config.alerts if self.config is not None else AlertSettings()
            sinks: list[Sink] = [self.toast_alert, DesktopSink()]
            if self.osc is not None:
                sinks.append(self.osc)
            self._viewer_sinks = [
                RateLimitedSink(s, settings.sink_max, timedelta(seconds=settings.sink_window_s))
                for s in sinks
            ]
        for sink in self._viewer_sinks:
            sink(Notification(change, None, e.message, e.at))

    def _command_toast(self, e: Event) -> None:
        """A toast when a command this app queued ends (done, failed or expired)."""
        if e.kind not in FINAL_COMMAND_EVENTS or e.data.get("request_id") not in self.my_requests:
            return
        ok = e.kind == EventKind.COMMAND_DONE
        self.notify(e.message, title="command", severity="information" if ok else "error",
                    timeout=6 if ok else 12)

    #: reads the panels' numbers from the store (made on first use, kept with its caches)
    _panel_reader: PanelReader | None = None

    def _panels(self) -> PanelReader:
        """The panel reader over the current store."""
        if self._panel_reader is None or self._panel_reader.store is not self.store:
            self._panel_reader = PanelReader(self.store)
        return self._panel_reader

    async def refresh_panel(self) -> None:
        """Redraw the panel for the selection (a device's detail, or a site's summary)."""
        if self._widgets_gone():
            return
        panel = self.query_one("#panel", DevicePanel)
        if not panel.display:
            return  # the table or the map: drawn when the tree comes back (set_view)
        if self.selected is None or self.store_ is None:
            panel.show(None)
            return
        kind, ident = self.selected
        now = self.now()
        slots = heartbeat_slots(panel.picture_width())
        if kind == "site":
            site = next((s for s in self.site_list if s.id == ident), None)
            if site is None:
                panel.show(None)
                return
            rows = [r for r in self.rows.values() if r.device.site_id == ident]
            site_detail = await self._panels().site(
                site, rows, now, slots=slots, schedules=self._schedules_text(ident))
            if self.selected == ("site", ident):
                panel.show_site(site_detail)
            return
        device = printable_fields(await self.store.device(ident))
        if device is None:
            panel.show(None, self._pending_hint(ident))
            return
        detail = await self._panels().device(
            device, next((s for s in self.site_list if s.id == device.site_id), None),
            self.rows.get(ident), now, slots=slots,
            sync=self.engine.sync_progress(ident) if self.engine is not None else None,
            viewer=self.engine is None,
        )
        if self.selected == ("device", ident):
            panel.show(detail)

    def _pending_hint(self, serial: str) -> str:
        """What the panel says of a push device waiting for approval (else "")."""
        p = next((p for p in self.pending_push if p.serial == serial), None)
        if p is None:
            return ""
        return (f"{p.serial}: a push device that dialed in unknown from {p.address or '?'} "
                f"({p.requests} calls since {p.first_seen:%Y-%m-%d %H:%M} UTC).\n\n"
                "Put it on a site from the palette: Ctrl+P, then "
                f"\"Approve push device {p.serial} onto …\". Its buffered records follow.")

    # --- interaction ----------------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        """Every key and click passes here first: the first one ends the cursor's resting
        on the worst problem (the operator is at the controls)."""
        if isinstance(event, events.Key | events.MouseDown):
            self._auto_select = False
        await super().on_event(event)

    @on(Tree.NodeHighlighted, "#tree")
    def _highlighted(self, _event: Tree.NodeHighlighted[object]) -> None:
        if self._widgets_gone():
            return  # a cursor move queued (the resting cursor's) outlived the screen
        self.selected = self.query_one("#tree", SiteTree).selected_id
        self.refresh_panel_soon()
        if self.event_log.scope is not None and self.selected != self.event_log.scope:
            self.event_log.scope = self.selected  # the log follows the selection
            self.draw_log(again=True)

    def _focus_view(self) -> None:
        """Focus what the view is about: the tree, the table or the map."""
        self.query_one({"table": "#table", "map": "#map"}.get(self.view, "#tree")).focus()

    def action_filter(self) -> None:
        """Show the filter input and focus it."""
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        """Clear and hide the filter."""
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.filter_text = ""
        self._apply()
        self._focus_view()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._apply()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.query_one("#filter", Input).display = False
        self._focus_view()

    def action_help(self) -> None:
        """Open the help screen: every key and every palette action, one line each."""
        from textual.app import App as TextualApp

        from fleettui.tui.help import HelpScreen, binding_rows
        from fleettui.tui.palette import palette_actions

        if isinstance(self.screen, HelpScreen):
            return
        keymap = dict(self.config.tui.keys) if self.config is not None else {}
        keys = binding_rows(self.BINDINGS, keymap)
        keys += [("Ctrl+P", "command palette: act on devices, sites and alerts", ""),
                 ("Tab, Shift+Tab", "focus the panel (then ↑ ↓ PgUp PgDn scroll it), back "
                                    "to the tree", "")]
        keys += [row for row in binding_rows(TextualApp.BINDINGS) if row[0] == "Ctrl+Q"]
        tree = [("↑ ↓", "move through the sites and devices", ""),
                *binding_rows(SiteTree.BINDINGS, keymap),
                ("Enter", "open or fold a site", "")]
        table = binding_rows(FleetTable.BINDINGS, keymap)
        fleet_map = binding_rows(FleetMap.BINDINGS, keymap)
        self.push_screen(HelpScreen([("Keys", keys), ("In the site tree", tree),
                                     ("In the fleet table (t)", table),
                                     ("On the fleet map (m)", fleet_map)], palette_actions()))

    def action_toggle_problems(self) -> None:
        """Show only the problems (offline, in error, flapping, a clock off, a buffer nearly
        full, not synced: ``problems.py``), or everything again."""
        self.problems_only = not self.problems_only
        self.arranged = []  # a fresh view: nothing is kept from the last one
        self._apply()

    def action_alerts(self) -> None:
        """Open the alerts view (``alerts_view.py``): the open alerts, to go to, acknowledge
        or silence, and those resolved in the last 24 h (once: not over itself)."""
        from fleettui.tui.alerts_view import AlertsView

        if self.store_ is not None and not isinstance(self.screen, AlertsView):
            self.push_screen(AlertsView(self))

    def jump(self, target: tuple[str, str]) -> None:
        """Move the tree's cursor to a device or site, clearing filters that hide it."""
        tree = self.query_one("#tree", SiteTree)
        self._opening = self._auto_select = False  # the operator chose where to look
        if self.view == "map" or (self.view == "table" and target[0] == "site"):
            self.set_view("tree")  # the panel shows it (the table has no line for a site)
        table = self.query_one("#table", FleetTable)
        shown = table.select(target[1]) if self.view == "table" else tree.focus_on(target)
        if not shown:
            self.filter_text = ""
            self.problems_only = False
            box = self.query_one("#filter", Input)
            box.value = ""
            box.display = False
            self._apply()
            tree.focus_on(target)
            table.select(target[1])
        self.selected = target
        (table if self.view == "table" else tree).focus()

    def _schedules_text(self, site_id: str) -> str:
        """The site's scheduled commands and their next run, in the site's time."""
        config = self.config or (self.engine.config if self.engine is not None else None)
        if config is None:
            return ""
        from fleettui.engine.schedules import next_runs

        lines = []
        members = {d.id for d in config.devices_at(site_id)}
        for sc in config.schedules:
            if not sc.enabled or (sc.target != site_id and sc.target not in members):
                continue
            runs = next_runs(config, sc, self.now(), 1)
            when = runs[0].strftime("%a %d %b %H:%M") if runs else "never"
            lines.append(f"  {sc.name}: {sc.command} → {sc.target} · next {when}")
        return "\n\nSchedules\n" + "\n".join(lines) if lines else ""
