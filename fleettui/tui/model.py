"""What the screen shows, computed from store rows: no Textual, no I/O.

The app reads devices from the store and turns them into rows: status
glyphs, per-site counts, problems first, the text filter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleettui.domain import DeviceState, DeviceStatus, Site

#: glyph and colour per status (16-colour names: works without true colour)
GLYPHS: dict[DeviceStatus, tuple[str, str]] = {
    DeviceStatus.ONLINE: ("●", "green"),
    DeviceStatus.OFFLINE: ("✖", "red"),
    DeviceStatus.ERROR: ("▲", "magenta"),
    DeviceStatus.UNKNOWN: ("○", "bright_black"),
}
FLAP_GLYPH = "↯"


@dataclass(slots=True)
class DeviceRow:
    """A device as the tree shows it."""

    device: DeviceState
    flapping: bool = False
    flap_pct: float = 0.0

    @property
    def id(self) -> str:
        """The device id."""
        return self.device.id

    @property
    def problem(self) -> bool:
        """Offline, in error or flapping: worth the operator's eye."""
        return self.flapping or self.device.status in (DeviceStatus.OFFLINE, DeviceStatus.ERROR)

    def key(self) -> tuple[object, ...]:
        """What the label depends on (a change means the node needs a repaint)."""
        d = self.device
        return (d.status, d.name, self.flapping, d.status_reason)


@dataclass(slots=True)
class SiteRow:
    """A site as the tree shows it, with its (filtered) devices."""

    site: Site
    devices: list[DeviceRow] = field(default_factory=list)
    online: int = 0
    total: int = 0

    @property
    def id(self) -> str:
        """The site id."""
        return self.site.id

    @property
    def problems(self) -> int:
        """How many of its devices are problems."""
        return sum(1 for r in self.devices if r.problem)

    def key(self) -> tuple[object, ...]:
        """What the label depends on."""
        return (self.site.name, self.online, self.total, self.problems)


@dataclass(frozen=True, slots=True)
class Totals:
    """Fleet-wide counts for the header."""

    devices: int
    sites: int
    online: int
    offline: int
    error: int
    unknown: int
    flapping: int

    def text(self, brevity: int = 0) -> str:
        """E.g. "62 devices across 14 sites · 59 online · 2 offline · 1 flapping"; shorter
        for a narrow screen: ``brevity`` 1 "62 devices · 14 sites · 59 online · …",
        2 "62 devices · 59 online · …" (the status counts keep their words)."""
        if brevity == 0:
            parts = [f"{self.devices} devices across {self.sites} sites"]
        elif brevity == 1:
            parts = [f"{self.devices} devices", f"{self.sites} sites"]
        else:
            parts = [f"{self.devices} devices"]
        parts += [f"{self.online} online", f"{self.offline} offline"]
        if self.error:
            parts.append(f"{self.error} in error" if brevity == 0 else f"{self.error} error")
        parts.append(f"{self.flapping} flapping")
        if self.unknown:
            parts.append(f"{self.unknown} not checked yet" if brevity == 0
                         else f"{self.unknown} unchecked")
        return " · ".join(parts)


def totals(sites: list[Site], rows: list[DeviceRow]) -> Totals:
    """Counts over every device (unfiltered)."""
    def count(status: DeviceStatus) -> int:
        return sum(1 for r in rows if r.device.status == status)

    return Totals(
        devices=len(rows), sites=len(sites), online=count(DeviceStatus.ONLINE),
        offline=count(DeviceStatus.OFFLINE), error=count(DeviceStatus.ERROR),
        unknown=count(DeviceStatus.UNKNOWN), flapping=sum(1 for r in rows if r.flapping),
    )


def matches(row: DeviceRow, site: Site, text: str) -> bool:
    """Whether a device matches the filter text (id, name, serial, site id or name)."""
    if not text:
        return True
    needle = text.casefold()
    d = row.device
    return any(needle in (h or "").casefold()
               for h in (d.id, d.name, d.serial, site.id, site.name))


def _device_order(row: DeviceRow) -> tuple[int, str]:
    return (0 if row.problem else 1, row.id)


def arrange(
    sites: list[Site], rows: list[DeviceRow], *, text: str = "", problems_only: bool = False,
    keep: str | None = None,
) -> list[SiteRow]:
    """Sites with their visible devices, problems first (sites and devices alike).

    ``keep`` (the selected device) stays in a "problems only" view after it
    recovers: the operator watching it come back keeps it under the cursor.
    """
    by_site: dict[str, list[DeviceRow]] = {s.id: [] for s in sites}
    for r in rows:
        by_site.setdefault(r.device.site_id, []).append(r)
    out: list[SiteRow] = []
    for site in sites:
        members = by_site.get(site.id, [])
        online = sum(1 for r in members if r.device.status == DeviceStatus.ONLINE)
        visible = [r for r in members
                   if matches(r, site, text)
                   and (r.problem or not problems_only or r.id == keep)]
        if not visible and (members or text or problems_only):
            continue  # filtered out (a site with no device yet shows when nothing filters)
        out.append(SiteRow(site, sorted(visible, key=_device_order), online, len(members)))
    out.sort(key=lambda s: (0 if s.problems else 1, s.site.name.casefold(), s.id))
    return out


def structure(arranged: list[SiteRow]) -> list[tuple[str, tuple[str, ...]]]:
    """The tree's shape (site ids, device ids, in order): a change means a rebuild."""
    return [(s.id, tuple(r.id for r in s.devices)) for s in arranged]


def gauge(fraction: float | None, width: int = 20) -> str:
    """A text bar like "█████░░░░░ 48%" (or "unknown")."""
    if fraction is None:
        return "unknown"
    fraction = max(0.0, min(1.0, fraction))
    full = round(fraction * width)
    return "█" * full + "░" * (width - full) + f" {fraction:.0%}"
