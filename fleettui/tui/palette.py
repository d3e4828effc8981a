"""Command palette provider: jump to a device or site, run its commands, and the rest.

The device and site commands offered, and their lines on the help screen, come from
the command table (``fleettui/commands.py``): a new command is one entry there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from fleettui.commands import COMMANDS

#: (text shown, callback, help)
PaletteItem = tuple[str, Callable[[], object], str]


class PaletteSource(Protocol):
    """The app, as the palette sees it: something that lists the candidates."""

    def palette_items(self) -> list[PaletteItem]:
        """Every candidate, problems first."""
        ...


def palette_actions() -> list[tuple[str, str]]:
    """Every kind of palette item, as the help screen lists it: (pattern, what it does)."""
    device = [(e.help_pattern(), e.help) for e in
              (spec.device_palette for spec in COMMANDS.values()) if e is not None]
    site = [(e.help_pattern(), e.help) for e in
            (spec.site_palette for spec in COMMANDS.values()) if e is not None]
    return [
        ("Jump to <device>", "select a device in the tree (clears a filter that hides it)"),
        *device,
        ("Silence <device> for 2h", "no alert notifications for this device for 2 hours"),
        ("Jump to site <site>", "select a site: its devices, health and schedules"),
        *site,
        ("Silence site <site> for 2h", "maintenance: no notifications for the site"),
        ("Acknowledge alert <id>", "stop an open alert's reminders"),
        ("Approve push device <serial> onto <site>",
         "a device that dialed in unknown: put it on a site (its records follow)"),
        ("Dead webhook deliveries", "events a receiver never took, after every retry; "
         "r replays"),
        ("Replay N dead webhook deliveries", "queue every dead delivery again"),
    ]


class DeviceCommands(Provider):
    """Every device and site: jump to it, or run one of its commands; alerts, webhooks."""

    async def startup(self) -> None:
        """Build the candidates once per opening of the palette."""
        source = cast(PaletteSource, self.app)
        self._items: list[PaletteItem] = source.palette_items()

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
