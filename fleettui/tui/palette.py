"""Command palette provider: jump to a device or site, run its commands, and the rest.

The device and site commands offered, and their lines on the help screen, come from
the command table (``fleettui/commands.py``): a new command is one entry there.

Ranking: a match of fleettui's own always comes above a match of Textual's
built-in commands (theme, screenshot, keys), and among ours those about the
selected device or site come first: scores stay between 0 and 1 (ours in the
upper half, the built-ins' in the lower).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.system_commands import SystemCommandsProvider

from fleettui.commands import COMMANDS

#: (text shown, callback, help)
PaletteItem = tuple[str, Callable[[], object], str]


class PaletteSource(Protocol):
    """The app, as the palette sees it: something that lists the candidates."""

    #: ("device", id) or ("site", id) under the cursor, or None
    selected: tuple[str, str] | None

    def palette_items(self) -> list[PaletteItem]:
        """Every candidate, problems first."""
        ...


def _about(text: str, selected: tuple[str, str] | None) -> bool:
    """Whether a candidate names the selected device or site."""
    if selected is None:
        return False
    ident = selected[1]
    return ident in text.split() or f"({ident})" in text


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
        *[(f"{spec.label}: the <n> marked device(s)",
           "one request for the devices marked in the table (Space, *), after a confirmation")
          for spec in COMMANDS.values()
          if spec.device_palette is not None and not spec.needs_employee_file],
        ("Unmark the <n> marked device(s)", "clear the table's marks"),
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
        """A few suggestions while the input is empty: the selection's, then problems."""
        selected = cast(PaletteSource, self.app).selected
        items = sorted(self._items, key=lambda item: not _about(item[0], selected))
        for text, callback, help_ in items[:6]:
            yield DiscoveryHit(text, callback, help=help_)

    async def search(self, query: str) -> Hits:
        """Fuzzy-match the query against every candidate (ranked as the module says)."""
        matcher = self.matcher(query)
        selected = cast(PaletteSource, self.app).selected
        for text, callback, help_ in self._items:
            score = matcher.match(text)
            if score > 0:
                ranked = 0.5 + 0.45 * score + (0.05 if _about(text, selected) else 0.0)
                yield Hit(ranked, matcher.highlight(text), callback, text=text, help=help_)


class BuiltIns(SystemCommandsProvider):
    """Textual's own commands (theme, keys, screenshot, quit), ranked below fleettui's."""

    async def search(self, query: str) -> Hits:
        """The built-ins' matches, their scores halved."""
        async for hit in super().search(query):
            if isinstance(hit, Hit):
                hit.score *= 0.5
            yield hit
