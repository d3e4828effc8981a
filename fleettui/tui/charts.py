"""The numbers behind the panels' pictures: no Textual, no I/O, time passed in.

Heartbeat slots (which status dominated each slot of the last 24 hours),
uptime over a window, a site's local day in UTC, punches per local hour,
sparkline and progress text. The app reads the store and hands the rows
here; the panels turn the results into coloured text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fleettui.commands import label as command_label
from fleettui.domain import Command, CommandRequest, CommandState, DeviceStatus, StatusChange

#: heartbeat cells, worst first: a tie between two statuses shows the worse one
_SEVERITY = (DeviceStatus.OFFLINE, DeviceStatus.ERROR, DeviceStatus.ONLINE, DeviceStatus.UNKNOWN)
SPARK = "▁▂▃▄▅▆▇█"


def _segments(
    history: Sequence[StatusChange], start: datetime, end: datetime
) -> list[tuple[DeviceStatus, datetime, datetime]]:
    """(status, begin, end) spans of ``history`` clipped to [start, end)."""
    out: list[tuple[DeviceStatus, datetime, datetime]] = []
    for i, change in enumerate(history):
        begin = max(change.at, start)
        stop = min(history[i + 1].at if i + 1 < len(history) else end, end)
        if stop > begin:
            out.append((change.status, begin, stop))
    return out


def heartbeat(
    history: Sequence[StatusChange], now: datetime, *, window: timedelta = timedelta(hours=24),
    slots: int = 48,
) -> list[DeviceStatus]:
    """The status that held longest in each of ``slots`` equal slots of ``window`` before now.

    ``history`` is a device's transitions, oldest first, including the one in
    force at the window's start (``Store.status_history(since=...)`` gives
    that). A slot counts only the time something was recorded (so the slot
    a device first came online in shows online); a slot with nothing recorded
    is unknown. A tie goes to the worse status.
    """
    start = now - window
    width = window / slots
    spans: list[dict[DeviceStatus, float]] = [{} for _ in range(slots)]
    for status, begin, stop in _segments(history, start, now):
        first = int((begin - start) / width)
        last = min(int((stop - start) / width), slots - 1)
        for i in range(max(first, 0), last + 1):
            lo = max(begin, start + i * width)
            hi = min(stop, start + (i + 1) * width)
            if hi > lo:
                spans[i][status] = spans[i].get(status, 0.0) + (hi - lo).total_seconds()
    out: list[DeviceStatus] = []
    for seen in spans:
        if not seen:
            out.append(DeviceStatus.UNKNOWN)
            continue
        best = max(seen.values())
        out.append(next(s for s in _SEVERITY if seen.get(s, -1.0) >= best - 1e-6))
    return out


def site_heartbeat(per_device: Iterable[Sequence[DeviceStatus]]) -> list[str]:
    """A site's slots from its devices' slots: "ok", "partial", "down" or "unknown".

    ok: every device whose status is known was online; down: none was;
    partial: some were.
    """
    columns = list(zip(*per_device, strict=True))
    out: list[str] = []
    for column in columns:
        known = [s for s in column if s is not DeviceStatus.UNKNOWN]
        up = sum(1 for s in known if s is DeviceStatus.ONLINE)
        out.append("unknown" if not known else "ok" if up == len(known)
                   else "down" if up == 0 else "partial")
    return out


def uptime(history: Sequence[StatusChange], start: datetime, now: datetime) -> float | None:
    """Share of [start, now) the device was online, 0..1, over the time its status was known."""
    online = known = 0.0
    for status, begin, stop in _segments(history, start, now):
        if status is DeviceStatus.UNKNOWN:
            continue
        span = (stop - begin).total_seconds()
        known += span
        if status is DeviceStatus.ONLINE:
            online += span
    return online / known if known else None


def seen(history: Sequence[StatusChange], start: datetime, now: datetime) -> float:
    """Seconds of [start, now) in which the device's status was known (checked at least
    once): less than the window for a device first seen within it."""
    return sum((stop - begin).total_seconds() for status, begin, stop in
               _segments(history, start, now) if status is not DeviceStatus.UNKNOWN)


def local_day(now: datetime, zone: ZoneInfo) -> tuple[date, datetime, datetime]:
    """The site's current local date and its [start, end) in UTC (23 or 25 h on DST days)."""
    today = now.astimezone(zone).date()
    start = datetime.combine(today, time(0), zone).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=1), time(0), zone).astimezone(UTC)
    return today, start, end


@dataclass(frozen=True, slots=True)
class HourBucket:
    """One hour of a site's local day (on a DST day the clock may show an hour twice)."""

    start: datetime  # UTC
    label: str  # local "HH" (e.g. "02" twice when clocks go back)
    count: int
    future: bool  # starts after now


def hourly(
    minute_counts: Mapping[datetime, int], zone: ZoneInfo, now: datetime
) -> list[HourBucket]:
    """Punches per hour of the site's local day, from counts per UTC minute.

    ``minute_counts`` maps an aware UTC minute to how many punches fell in it
    (the store groups them); minutes outside the local day are ignored. The
    buckets are the day's real hours, so a day when clocks go forward has 23
    and one when they go back 25.
    """
    _today, start, end = local_day(now, zone)
    hours = int((end - start) / timedelta(hours=1))
    counts = [0] * hours
    for minute, n in minute_counts.items():
        if start <= minute < end:
            counts[int((minute - start) / timedelta(hours=1))] += n
    out = []
    for i in range(hours):
        at = start + timedelta(hours=i)
        out.append(HourBucket(at, f"{at.astimezone(zone):%H}", counts[i], at > now))
    return out


def sparkline(values: Sequence[int]) -> str:
    """One character per value, scaled to the largest ("▁".."█"; a space for zero)."""
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    return "".join(" " if v <= 0 else SPARK[min(len(SPARK) - 1, (v * len(SPARK) - 1) // top)]
                   for v in values)


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a request to several devices has got."""

    total: int
    done: int
    failed: int
    queued: int
    sent: int

    @property
    def finished(self) -> bool:
        """Every command has ended (done, failed or expired)."""
        return self.done + self.failed == self.total

    @property
    def fraction(self) -> float:
        """Share of commands that ended, 0..1."""
        return (self.done + self.failed) / self.total if self.total else 1.0


def progress(commands: Sequence[Command]) -> Progress:
    """Counts of a request's commands by where they are."""
    states = [c.state for c in commands]
    return Progress(
        total=len(states),
        done=states.count(CommandState.DONE),
        failed=states.count(CommandState.FAILED) + states.count(CommandState.EXPIRED),
        queued=states.count(CommandState.QUEUED),
        sent=states.count(CommandState.SENT),
    )


def request_text(request: CommandRequest) -> str:
    """E.g. "Restart 3/4 done · 1 queued" or "Sync employees (120 people) 4/4 done"."""
    p = progress(request.commands)
    name = command_label(request.command)
    employees = request.params.get("employees")
    if isinstance(employees, list):
        name += f" ({len(employees):,} {'person' if len(employees) == 1 else 'people'})"
    parts = [f"{name} {p.done}/{p.total} done"]
    if p.failed:
        parts.append(f"{p.failed} failed")
    if p.sent:
        parts.append(f"{p.sent} running")
    if p.queued:
        parts.append(f"{p.queued} queued")
    return " · ".join(parts)


def sync_text(done: int, total: int | None, on_device: int | None = None) -> str:
    """E.g. "syncing 35,000/100,000 records", or "reading 100,000 records from the device…"
    while the log is still being downloaded (``on_device``: the device's record count)."""
    if total is None:
        if on_device:
            return f"reading {on_device:,} records from the device…"
        return "reading the attendance log…"
    return f"syncing {done:,}/{total:,} records"


#: syncs smaller than this finish within a refresh or two: not worth a row that flickers
SYNC_SHOWN_FROM = 1000


def sync_worth_showing(total: int | None, on_device: int | None, stored: int) -> bool:
    """Whether a running sync is long work: ``total`` records to store (None while the log
    is read), ``on_device`` records the device holds, ``stored`` of them already stored."""
    if total is None:
        return (on_device or 0) - stored >= SYNC_SHOWN_FROM
    return total >= SYNC_SHOWN_FROM


def recent(request: CommandRequest, now: datetime, keep: timedelta) -> bool:
    """Whether a request is still worth showing: unfinished, or finished within ``keep``."""
    if not progress(request.commands).finished:
        return True
    last = max((c.updated_at for c in request.commands), default=request.created_at)
    return now - last <= keep
