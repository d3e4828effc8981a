"""The control room's three views of the fleet: the site tree (with the device panel),
the fleet table (``t``) and the fleet map (``m``), and moving between them with the
selection kept.

A base class of ``FleetApp`` (``app.py``), as ``actions.py`` is: the app arranges the
rows (filter, problems first) and draws the tree and the header; this part feeds
the table and the map from the same rows and follows their cursors.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual import on
from textual.widgets import RichLog

from fleettui.domain import Alert
from fleettui.tui.actions import FleetActions
from fleettui.tui.eventlog import EventLog
from fleettui.tui.fleet_map import FleetMap, FleetMapStatus
from fleettui.tui.fleet_table import FleetTable
from fleettui.tui.model import SiteRow
from fleettui.tui.panel import DevicePanel
from fleettui.tui.table_model import TableFacts
from fleettui.tui.tree import SiteTree


class FleetViews(FleetActions):
    """The tree, the table and the map (mixed into ``FleetApp``)."""

    #: what the screen shows: "tree" (and the panel), "table" or "map"
    view: str = "tree"
    #: until the opening view is chosen (``app.py``: the map if nothing is wrong)
    _opening: bool = True
    #: the view the map was opened from (``m`` goes back to it)
    _before_map: str = "tree"
    #: the sites and devices shown, as the app arranged them
    arranged: list[SiteRow]
    event_log: EventLog
    #: punches since local midnight per device, and when they were counted (monotonic):
    #: the table's "today" column
    _today: dict[str, int] | None = None
    _today_at: float = 0.0

    if TYPE_CHECKING:  # the app's own
        def draw_log(self, *, again: bool = False) -> None: ...

        def _draw_header(self) -> None: ...

    def action_toggle_table(self) -> None:
        """Show the fleet table instead of the tree and panel, or the tree again (the
        selection and the filter stay)."""
        self.set_view("tree" if self.view == "table" else "table")

    def action_toggle_map(self) -> None:
        """Show the fleet map (every device one cell), or the view before it again."""
        self.set_view(self._before_map if self.view == "map" else "map")

    def set_view(self, view: str) -> None:
        """Show the tree (with the device panel and the log), the table (with the log) or
        the map, the selection kept."""
        self._opening = False  # a view chosen: the opening one is no longer to choose
        if view == "map" and self.view != "map":
            self._before_map = self.view
        leaving_map = self.view == "map" and view != "map"
        self.view = view
        table = self.query_one("#table", FleetTable)
        tree = self.query_one("#tree", SiteTree)
        fleet_map = self.query_one("#map", FleetMap)
        table.display = view == "table"
        tree.display = self.query_one("#panel", DevicePanel).display = view == "tree"
        fleet_map.display = self.query_one("#map-status").display = view == "map"
        self.query_one("#events").display = view != "map"
        if leaving_map:
            self.call_after_refresh(self._log_anew)
        device = self.selected[1] if self.selected is not None and \
            self.selected[0] == "device" else None
        if view == "table":
            self._show_table()
            if device is not None:
                table.select(device)
            table.focus()
            if self._today is None:
                self.request_refresh()  # counts today's punches for the new column
        elif view == "map":
            self._show_map()
            if device is not None:
                fleet_map.select(device)
            fleet_map.focus()
        else:
            tree.show(self.arranged)
            tree.focus_on(self.selected)
            tree.focus()
            self.refresh_panel_soon()

    def _log_anew(self) -> None:
        """The log back from under the map: lines written while it was hidden were laid
        out at no width, so it is drawn anew, at its end (its newest lines)."""
        self.draw_log(again=True)
        self.query_one("#events", RichLog).scroll_end(animate=False, immediate=True)

    def show_view(self) -> None:
        """Bring the table or the map up to date with the arranged rows (the tree is the
        app's own)."""
        if self.view == "table":
            self._show_table()
        elif self.view == "map":
            self._show_map()

    def _show_map(self) -> None:
        fleet_map = self.query_one("#map", FleetMap)
        fleet_map.show(self.arranged)
        self.query_one("#map-status", FleetMapStatus).show(fleet_map.selected_row,
                                                           fleet_map.selected_site)

    @on(FleetMap.Moved)
    def _map_moved(self, event: FleetMap.Moved) -> None:
        self.selected = ("device", event.device_id)
        fleet_map = self.query_one("#map", FleetMap)
        self.query_one("#map-status", FleetMapStatus).show(fleet_map.selected_row,
                                                           fleet_map.selected_site)

    @on(FleetMap.Opened)
    def _map_opened(self, event: FleetMap.Opened) -> None:
        self.selected = ("device", event.device_id)
        self.set_view("tree")

    def _show_table(self) -> None:
        """The shown devices (filter and "problems only" applied) into the table."""
        rows = [r for site in self.arranged for r in site.devices]
        self.query_one("#table", FleetTable).show(rows, self._table_facts())

    def _table_facts(self) -> TableFacts:
        """Site names, punches today and each device's worst open alert (its own, else its
        site's)."""
        rank = {"critical": 0, "warning": 1}
        alerts: dict[str, Alert] = {}
        site_alerts: dict[str, Alert] = {}
        for a in sorted(self.open_alerts, key=lambda a: rank.get(a.severity, 2), reverse=True):
            (alerts if a.target_kind == "device" else site_alerts)[a.target] = a
        for r in self.rows.values():
            site_alert = site_alerts.get(r.device.site_id)
            if r.id not in alerts and site_alert is not None:
                alerts[r.id] = site_alert
        return TableFacts(self.now(), {s.id: s.name for s in self.site_list}, self._today,
                          alerts)

    async def _count_today(self) -> None:
        """Count each device's punches since its site's local midnight: one count per
        distinct local day (sites in one zone share it)."""
        from zoneinfo import ZoneInfo

        from fleettui.tui.charts import local_day

        now = self.now()
        zones: dict[str, list[str]] = {}
        for site in self.site_list:
            zones.setdefault(site.timezone, []).append(site.id)
        counts: dict[str, int] = {}
        for zone, site_ids in zones.items():
            try:
                _day, start, end = local_day(now, ZoneInfo(zone))
            except (ValueError, KeyError):  # a zone unknown here: its sites count UTC days
                _day, start, end = local_day(now, ZoneInfo("UTC"))
            found = await self.store.punches_per_device(start, end)
            members = set(site_ids)
            counts.update({d: n for d, n in found.items()
                           if (row := self.rows.get(d)) is not None
                           and row.device.site_id in members})
        self._today, self._today_at = counts, time.monotonic()

    @on(FleetTable.Moved)
    def _table_moved(self, event: FleetTable.Moved) -> None:
        self.selected = ("device", event.device_id)
        if self.event_log.scope is not None and self.selected != self.event_log.scope:
            self.event_log.scope = self.selected
            self.draw_log(again=True)

    @on(FleetTable.Opened)
    def _table_opened(self, event: FleetTable.Opened) -> None:
        self.selected = ("device", event.device_id)
        self.set_view("tree")

    @on(FleetTable.MarksChanged)
    def _marks_changed(self, _event: FleetTable.MarksChanged) -> None:
        self._draw_header()

    @property
    def marked(self) -> set[str]:
        """The devices marked in the table for a bulk action."""
        return self.query_one("#table", FleetTable).marked

    def unmark(self) -> None:
        """Clear the table's marks."""
        self.marked.clear()
        self.query_one("#table", FleetTable).refresh()
        self._draw_header()

