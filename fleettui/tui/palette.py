"""Command palette provider: jump to a device or site, restart, sync clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from fleettui.tui.app import FleetApp

#: (text shown, callback, help)
PaletteItem = tuple[str, Callable[[], object], str]


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
