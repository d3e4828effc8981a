"""The event log as the control room shows it: in time order, routine syncs folded, filtered.

The store hands events over in commit order; what the operator reads is the
order things happened in, so entries are kept sorted by time. Syncs and live
punches, which a busy fleet makes several times a second, are folded into one
line per minute and site ("sync  37 punches from 9 devices") unless the
operator unfolds them; what is left stands out: outages, alerts, commands. A
filter keeps one kind of line, and one device's or site's. Pure logic: no
Textual, no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from rich.text import Text

from fleettui.domain import Event, EventKind

#: the entries kept (older ones are in the store, not on screen)
KEPT = 500
#: what the kind column looks like, per kind
KIND_STYLES: dict[EventKind, str] = {
    EventKind.DEVICE_OFFLINE: "bold red", EventKind.DEVICE_ERROR: "bold red",
    EventKind.DEVICE_ONLINE: "bold green", EventKind.SYNC: "dim cyan",
    EventKind.PUNCH: "dim cyan", EventKind.COMMAND_FAILED: "red",
    EventKind.COMMAND_EXPIRED: "red", EventKind.COMMAND_DONE: "green",
    EventKind.ALERT_OPENED: "bold red", EventKind.ALERT_ESCALATED: "bold red",
    EventKind.ALERT_REMINDER: "yellow", EventKind.ALERT_RESOLVED: "bold green",
    EventKind.ALERT_ACKNOWLEDGED: "yellow", EventKind.WEBHOOK_DEAD: "bold red",
}
#: lines whose message stands out too (the operator must not miss them)
LOUD = frozenset({EventKind.DEVICE_OFFLINE, EventKind.DEVICE_ERROR, EventKind.DEVICE_ONLINE,
                  EventKind.ALERT_OPENED, EventKind.ALERT_ESCALATED, EventKind.ALERT_RESOLVED,
                  EventKind.WEBHOOK_DEAD})
#: what is folded, unless unfolded
ROUTINE = frozenset({EventKind.SYNC, EventKind.PUNCH})
#: the kind column's width: the short names below fit it (a narrow log keeps its room for
#: the message)
KIND_WIDTH = 9
_SHORT = {EventKind.ALERT_OPENED: "alert", EventKind.DEVICE_OPERATION: "on device",
          EventKind.DEVICE_REGISTERED: "added", EventKind.DEVICE_REMOVED: "removed",
          EventKind.SCHEDULE_SKIPPED: "schedule", EventKind.SITE_CREATED: "new site",
          EventKind.WEBHOOK_DEAD: "webhook", EventKind.SILENCE_ADDED: "silenced"}


def short_kind(kind: EventKind) -> str:
    """A kind as the log's column says it: "offline", "done", "alert", "sync"."""
    short = _SHORT.get(kind)
    if short is not None:
        return short
    tail = kind.value.rsplit(".", 1)[-1]
    return tail[:KIND_WIDTH]


class Kinds(StrEnum):
    """Which lines the log shows (the kind filter, cycled by a key)."""

    ALL = "all"
    PROBLEMS = "status and alerts"
    COMMANDS = "commands"
    SYNCS = "syncs and punches"

    def keeps(self, kind: EventKind) -> bool:
        """Whether a line of this kind passes the filter."""
        if self is Kinds.ALL:
            return True
        if self is Kinds.PROBLEMS:
            return kind.value.startswith(("device.", "alert.", "silence.")) or \
                kind is EventKind.WEBHOOK_DEAD
        if self is Kinds.COMMANDS:
            return kind.value.startswith("command.") or kind is EventKind.SCHEDULE_SKIPPED
        return kind in ROUTINE

    def next(self) -> Kinds:
        """The filter after this one, round the cycle."""
        order = list(Kinds)
        return order[(order.index(self) + 1) % len(order)]


@dataclass(slots=True)
class Entry:
    """One line: an event, or the routine events of one minute at one site, folded."""

    at: datetime
    kind: EventKind
    message: str
    device_ids: frozenset[str] = frozenset()
    site_id: str | None = None
    #: a fold: how many events, punches and devices it stands for
    events: int = 1
    punches: int = 0
    devices: set[str] = field(default_factory=set)
    folded: bool = False
    #: the first event id in it (ties in time keep commit order)
    order: int = 0

    def sort_key(self) -> tuple[datetime, int]:
        """Time, then commit order."""
        return (self.at, self.order)

    def text(self) -> str:
        """The message (a fold's, rewritten as it grows)."""
        if not self.folded:
            return self.message
        devices = len(self.devices)
        what = (f"{self.punches} punch{'es' if self.punches != 1 else ''}"
                if self.punches else f"{self.events} event{'s' if self.events != 1 else ''}")
        return (f"{what} from {devices} device"
                f"{'s' if devices != 1 else ''}" + (f" at {self.site_id}" if self.site_id else ""))


@dataclass(slots=True)
class EventLog:
    """The entries shown, sorted by time, with the folding and the filters."""

    kept: int = KEPT
    #: routine syncs shown one by one (True) or folded per minute and site
    unfolded: bool = False
    kinds: Kinds = Kinds.ALL
    #: ("device", id) or ("site", id): only its lines; None: everything
    scope: tuple[str, str] | None = None
    _entries: list[Entry] = field(default_factory=list)
    _folds: dict[tuple[datetime, str | None, EventKind], Entry] = field(default_factory=dict)
    #: the routine events themselves (with their sites), for the unfolded view
    _raw: list[tuple[Event, str | None]] = field(default_factory=list)

    def add(self, events: Iterable[Event], site_of: Callable[[str], str | None]) -> None:
        """Take new events (in commit order); ``site_of`` names a device's site."""
        for e in events:
            site = e.site_id or (site_of(e.device_id) if e.device_id else None)
            if e.kind in ROUTINE:
                self._raw.append((e, site))
                if len(self._raw) > self.kept:
                    del self._raw[: len(self._raw) - self.kept]
                self._fold(e, site)
                continue
            self._insert(Entry(e.at, e.kind, e.message,
                               frozenset({e.device_id}) if e.device_id else frozenset(), site,
                               order=e.id))
        self._trim()

    def _fold(self, e: Event, site: str | None) -> None:
        minute = e.at.replace(second=0, microsecond=0)
        key = (minute, site, e.kind)
        fold = self._folds.get(key)
        new = int(e.data.get("new", 1 if e.kind is EventKind.PUNCH else 0) or 0)
        if fold is None:
            fold = Entry(minute, e.kind, "", frozenset(), site, events=0, folded=True,
                         order=e.id)
            self._folds[key] = fold
            self._insert(fold)
        fold.events += 1
        fold.punches += new
        if e.device_id:
            fold.devices.add(e.device_id)
            fold.device_ids = frozenset(fold.devices)

    def _insert(self, entry: Entry) -> None:
        bisect.insort_right(self._entries, entry, key=Entry.sort_key)

    def _trim(self) -> None:
        extra = len(self._entries) - self.kept
        if extra > 0:
            for gone in self._entries[:extra]:
                if gone.folded:
                    self._folds.pop((gone.at, gone.site_id, gone.kind), None)
            del self._entries[:extra]

    def entries(self) -> list[Entry]:
        """What is shown now, oldest first: folded or not, filtered."""
        if self.unfolded:
            singles = [Entry(e.at, e.kind, e.message,
                             frozenset({e.device_id}) if e.device_id else frozenset(),
                             site, order=e.id) for e, site in self._raw]
            shown = sorted([x for x in self._entries if not x.folded] + singles,
                           key=Entry.sort_key)[-self.kept:]
        else:
            shown = self._entries
        return [x for x in shown if self.kinds.keeps(x.kind) and self._in_scope(x)]

    def _in_scope(self, entry: Entry) -> bool:
        if self.scope is None:
            return True
        kind, ident = self.scope
        if kind == "device":
            return ident in entry.device_ids
        return entry.site_id == ident

    def lines(self, last: int | None = None) -> list[Text]:
        """The entries as lines (the ``last`` ones): time, kind, message (never cut: the
        log wraps them)."""
        shown = self.entries()
        out = []
        for entry in shown[-last:] if last else shown:
            line = Text(f"{entry.at:%H:%M:%S} ", style="dim")
            line.append(short_kind(entry.kind).ljust(KIND_WIDTH) + " ",
                        style=KIND_STYLES.get(entry.kind, "cyan"))
            line.append(entry.text(), style="bold" if entry.kind in LOUD else
                        ("dim" if entry.folded else ""))
            out.append(line)
        return out

    def title(self) -> str:
        """What the log's border says of its filters ("Events · site lyon · commands")."""
        parts = ["Events"]
        if self.scope is not None:
            parts.append(f"{self.scope[0]} {self.scope[1]}")
        if self.kinds is not Kinds.ALL:
            parts.append(self.kinds.value)
        parts.append("syncs one by one" if self.unfolded else "syncs folded")
        return " · ".join(parts)
