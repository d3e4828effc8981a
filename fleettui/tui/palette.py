"""Command palette provider: jump to a device or site, restart, sync clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from fleettui.tui.app import FleetApp

#: (text shown, callback, help)
PaletteItem = tuple[str, Callable[[], object], str]

#: every kind of palette item, as the help screen lists it: (pattern, what it does)
PALETTE_ACTIONS: list[tuple[str, str]] = [
    ("Jump to <device>", "select a device in the tree (clears a filter that hides it)"),
    ("Restart <device>", "reboot the terminal (queued; the panel shows queued → done)"),
    ("Sync clock <device>", "set the device clock to its site's local time"),
    ("Refresh info <device>", "read the device's identity, firmware and counters again"),
    ("Sync employees to <device>", "push a CSV/JSON employee file, after a preview"),
    ("Silence <device> for 2h", "no alert notifications for this device for 2 hours"),
    ("Jump to site <site>", "select a site: its devices, health and schedules"),
    ("Restart all devices of <site>", "reboot every device of a site, after a confirmation"),
    ("Sync clocks of <site>", "set every device clock of a site"),
    ("Sync employees to all devices of <site>", "push an employee file to a whole site, "
     "after a preview"),
    ("Silence site <site> for 2h", "maintenance: no notifications for the site"),
    ("Acknowledge alert <id>", "stop an open alert's reminders"),
    ("Dead webhook deliveries", "events a receiver never took, after every retry; r replays"),
    ("Replay N dead webhook deliveries", "queue every dead delivery again"),
]


class DeviceCommands(Provider):
    """Every device and site: jump to it; restart or sync the clock of a device."""

    async def startup(self) -> None:
        """Build the candidates once per opening of the palette."""
        app = cast("FleetApp", self.app)
        self._items: list[PaletteItem] = app.palette_items()

    async def discover(self) -> Hits:
        """A few suggestions while the input is empty: problems first."""
        for text, callback, help_ in self._items[:6]:
            yield DiscoveryHit(text, callback, help=help_)

    async def search(self, query: str) -> Hits:
        """Fuzzy-match the query against every candidate."""
        matcher = self.matcher(query)
        for text, callback, help_ in self._items:
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, text=text, help=help_)
