"""What the screen shows, computed from store rows: no Textual, no I/O.

The app reads devices from the store and turns them into rows: status
glyphs, per-site counts, problems first (``problems.py`` says what is one),
the text filter.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from fleettui.domain import DeviceState, DeviceStatus, Site
from fleettui.tui.problems import MARKS, Issue

#: glyph and colour per status (16-colour names: works without true colour)
GLYPHS: dict[DeviceStatus, tuple[str, str]] = {
    DeviceStatus.ONLINE: ("●", "green"),
    DeviceStatus.OFFLINE: ("✖", "red"),
    DeviceStatus.ERROR: ("▲", "magenta"),
    DeviceStatus.UNKNOWN: ("○", "bright_black"),
}
FLAP_GLYPH = "↯"
#: glyph and colour of each mark beside a device's status
MARK_GLYPHS: dict[Issue, tuple[str, str]] = {
    Issue.FLAPPING: (FLAP_GLYPH, "yellow"),
    Issue.DRIFT: ("◷", "yellow"),
    Issue.BUFFER: ("▮", "yellow"),
    Issue.UNSYNCED: ("⟳", "yellow"),
    Issue.PENDING: ("?", "yellow"),
}


@dataclass(slots=True)
class DeviceRow:
    """A device as the tree shows it."""

    device: DeviceState
    flapping: bool = False
    flap_pct: float = 0.0
    #: what is wrong with it (``problems.issues_of``), its status first
    issues: tuple[Issue, ...] = ()
    #: how each of its marks reads ("clock +7m", "buffer 96%"), in the marks' order
    notes: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """The device id."""
        return self.device.id

    @property
    def problem(self) -> bool:
        """Offline, in error, flapping, or any other issue: worth the operator's eye."""
        return bool(self.issues) or self.flapping or self.device.status in (
            DeviceStatus.OFFLINE, DeviceStatus.ERROR)

    def labelled_marks(self) -> list[tuple[Issue, str]]:
        """Its marks with how each reads (its note, or the mark's name)."""
        marks = self.marks
        notes = self.notes if len(self.notes) == len(marks) else tuple(m.value for m in marks)
        return list(zip(marks, notes, strict=True))

    @property
    def severity(self) -> int:
        """0 offline or in error, 1 flapping, 2 another mark, 3 fine: what comes first."""
        if self.device.status in (DeviceStatus.OFFLINE, DeviceStatus.ERROR):
            return 0
        if self.flapping:
            return 1
        return 2 if self.problem else 3

    @property
    def marks(self) -> tuple[Issue, ...]:
        """Its issues beside its status (flapping, clock, buffer, sync), in order."""
        marks = [i for i in self.issues if i in MARKS]
        if self.flapping and Issue.FLAPPING not in marks:
            marks.insert(0, Issue.FLAPPING)
        return tuple(marks)

    def key(self) -> tuple[object, ...]:
        """What the label depends on (a change means the node needs a repaint)."""
        d = self.device
        return (d.status, d.name, self.flapping, d.status_reason, self.issues, self.notes)


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


#: a mark's name in the header, by brevity (0: the widest screen)
_MARK_WORDS: dict[Issue, tuple[str, str]] = {
    Issue.FLAPPING: ("flapping", "flapping"),
    Issue.DRIFT: ("clock off", "clock"),
    Issue.BUFFER: ("buffer nearly full", "buffer"),
    Issue.UNSYNCED: ("not synced", "unsynced"),
    Issue.PENDING: ("pending approval", "pending"),
}


@dataclass(frozen=True, slots=True)
class Totals:
    """Fleet-wide counts for the header: the statuses add up to the devices; the marks
    (flapping, clock, buffer, sync) are counted within the status their devices have."""

    devices: int
    sites: int
    online: int
    offline: int
    error: int
    unknown: int
    flapping: int
    #: (status, mark) → how many devices of that status carry that mark
    marked: tuple[tuple[DeviceStatus, Issue, int], ...] = ()

    def text(self, brevity: int = 0) -> str:
        """E.g. "62 devices across 14 sites · 59 online (1 flapping, 1 clock off) ·
        2 offline · 1 not checked yet"; shorter for a narrow screen: ``brevity`` 1
        "62 devices · 14 sites · 59 online (1 flapping, 1 clock) · …", 2 without the
        sites (the status counts keep their words)."""
        if brevity == 0:
            parts = [f"{self.devices} devices across {self.sites} sites"]
        elif brevity == 1:
            parts = [f"{self.devices} devices", f"{self.sites} sites"]
        else:
            parts = [f"{self.devices} devices"]
        word = 0 if brevity == 0 else 1
        groups = [(DeviceStatus.ONLINE, self.online, "online", "online"),
                  (DeviceStatus.OFFLINE, self.offline, "offline", "offline"),
                  (DeviceStatus.ERROR, self.error, "in error", "error"),
                  (DeviceStatus.UNKNOWN, self.unknown, "not checked yet", "unchecked")]
        for status, count, long, short in groups:
            if not count and status not in (DeviceStatus.ONLINE, DeviceStatus.OFFLINE):
                continue
            text = f"{count} {long if brevity == 0 else short}"
            marks = [f"{n} {_MARK_WORDS[mark][word]}" for s, mark, n in self.marked
                     if s is status and n]
            if marks:
                text += f" ({', '.join(marks)})"
            parts.append(text)
        return " · ".join(parts)


def totals(sites: list[Site], rows: list[DeviceRow]) -> Totals:
    """Counts over every device (unfiltered)."""
    def count(status: DeviceStatus) -> int:
        return sum(1 for r in rows if r.device.status == status)

    marked: Counter[tuple[DeviceStatus, Issue]] = Counter(
        (r.device.status, mark) for r in rows for mark in r.marks)
    return Totals(
        devices=len(rows), sites=len(sites), online=count(DeviceStatus.ONLINE),
        offline=count(DeviceStatus.OFFLINE), error=count(DeviceStatus.ERROR),
        unknown=count(DeviceStatus.UNKNOWN), flapping=sum(1 for r in rows if r.flapping),
        marked=tuple((status, mark, marked[(status, mark)])
                     for status in DeviceStatus for mark in MARKS if marked[(status, mark)]),
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
    return (row.severity, row.id)


def arrange(
    sites: list[Site], rows: list[DeviceRow], *, text: str = "", problems_only: bool = False,
    keep: str | None = None,
) -> list[SiteRow]:
    """Sites with their visible devices, problems first (sites and devices alike, the
    worst first: down, then flapping, then the other marks).

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
    out.sort(key=lambda s: (min((r.severity for r in s.devices), default=3),
                            s.site.name.casefold(), s.id))
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
