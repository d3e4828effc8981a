"""What the control room counts as a problem, and how each is marked.

A device is a problem when it is offline, in error or flapping, when its
clock is off by more than a threshold, when its record buffer is nearly
full (it overwrites or stops taking punches when full), or when a device
that answers has not had its punches synced for too long; and a push device
that dialed in unknown waits for approval (``pending_rows``). The thresholds
come from the config's ``[problems]`` table. Pure functions: no Textual,
no I/O, the time passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from fleettui.config import ProblemSettings
from fleettui.domain import DeviceState, DeviceStatus, PendingDevice, Site


class Issue(StrEnum):
    """One reason a device needs the operator's eye."""

    OFFLINE = "offline"
    ERROR = "error"
    FLAPPING = "flapping"
    DRIFT = "drift"
    BUFFER = "buffer"
    UNSYNCED = "unsynced"
    #: a push device that dialed in unknown, waiting to be approved onto a site
    PENDING = "pending"


#: the issues a device's status itself is (the rest are marks beside its status)
STATUS_ISSUES = (Issue.OFFLINE, Issue.ERROR)
#: the marks, in the order they are drawn and counted
MARKS = (Issue.FLAPPING, Issue.DRIFT, Issue.BUFFER, Issue.UNSYNCED, Issue.PENDING)


@dataclass(frozen=True, slots=True)
class Limits:
    """The thresholds past which a clock, a buffer or a sync is a problem."""

    drift_s: float = 120.0
    buffer: float = 0.9
    unsynced_s: float = 3600.0

    @classmethod
    def of(cls, settings: ProblemSettings | None) -> Limits:
        """The limits a config sets (the defaults without one)."""
        if settings is None:
            return cls()
        return cls(settings.clock_drift_s, settings.buffer_full_pct / 100,
                   settings.unsynced_after_s)


def issues_of(device: DeviceState, flapping: bool, limits: Limits,
              now: datetime) -> tuple[Issue, ...]:
    """Everything wrong with a device now, its status first, then the marks in order."""
    found: list[Issue] = []
    if device.status is DeviceStatus.OFFLINE:
        found.append(Issue.OFFLINE)
    elif device.status is DeviceStatus.ERROR:
        found.append(Issue.ERROR)
    if flapping:
        found.append(Issue.FLAPPING)
    drift = device.clock_drift_s
    if drift is not None and abs(drift) >= limits.drift_s:
        found.append(Issue.DRIFT)
    fill = device.buffer_fill
    if fill is not None and fill >= limits.buffer:
        found.append(Issue.BUFFER)
    if _unsynced(device, limits, now):
        found.append(Issue.UNSYNCED)
    return tuple(found)


def _unsynced(device: DeviceState, limits: Limits, now: datetime) -> bool:
    """A polled device that answers, whose punches were last synced too long ago (a push
    device sends its own: it has no sync to fall behind)."""
    if device.push or device.status is not DeviceStatus.ONLINE:
        return False
    since = device.last_sync_at or device.status_since
    return since is not None and (now - since).total_seconds() > limits.unsynced_s


def duration(seconds: float) -> str:
    """A short duration: "45s", "7m", "3h", "2d"."""
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def mark_text(issue: Issue, device: DeviceState, now: datetime) -> str:
    """How a mark reads beside a device: "flapping", "clock +7m", "buffer 96%", "no sync 3h"."""
    if issue is Issue.DRIFT and device.clock_drift_s is not None:
        sign = "+" if device.clock_drift_s >= 0 else "-"
        return f"clock {sign}{duration(device.clock_drift_s)}"
    if issue is Issue.BUFFER and device.buffer_fill is not None:
        return f"buffer {device.buffer_fill:.0%}"
    if issue is Issue.PENDING:
        return "pending approval"
    if issue is Issue.UNSYNCED:
        since = device.last_sync_at or device.status_since
        return f"no sync {duration((now - since).total_seconds())}" if since else "no sync"
    return issue.value


#: the tree's and the table's place for push devices waiting for approval (not a site)
PENDING_SITE = Site("~pending", "Pending approval", "UTC")


def pending_state(p: PendingDevice) -> DeviceState:
    """A pending push device as a device line: its serial for its id, no site yet."""
    return DeviceState(p.serial, p.serial, PENDING_SITE.id, p.address, 0, "push",
                       firmware=p.firmware or None, status=DeviceStatus.UNKNOWN,
                       status_since=p.first_seen, last_seen=p.last_seen,
                       push_address=p.address)
