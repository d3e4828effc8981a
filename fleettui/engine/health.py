"""When is a device online, offline or in error: a small state machine per device.

Pure logic with the time passed in, so tests can live through hours of
failures in microseconds. A device becomes offline (or in error) only after
``offline_after`` consecutive failed checks, so one lost packet on a 3G link
is not an outage; one successful check brings it back online.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fleettui.domain import DeviceStatus, FailureKind, StatusChange


@dataclass(slots=True)
class Health:
    """One device's status, reason and consecutive failures."""

    device_id: str
    offline_after: int = 2
    status: DeviceStatus = DeviceStatus.UNKNOWN
    reason: str = ""
    since: datetime | None = None
    failures: int = 0
    #: a restart we asked for: failures until then are expected, not an outage
    rebooting_until: datetime | None = None

    def expect_reboot(self, until: datetime) -> None:
        """A restart was sent: do not call the device offline before ``until``."""
        self.rebooting_until = until
        self.failures = 0

    def success(self, now: datetime) -> StatusChange | None:
        """A check answered; returns the transition, if any."""
        self.failures = 0
        self.rebooting_until = None
        return self._move(DeviceStatus.ONLINE, "", now)

    def failure(self, kind: FailureKind, reason: str, now: datetime) -> StatusChange | None:
        """A check failed; returns the transition once failures reach the threshold.

        A device already offline or in error whose failure changes kind
        (timeouts, then refused) transitions again so the reason stays true.
        """
        self.failures += 1
        if self.rebooting_until is not None and now < self.rebooting_until:
            return None  # we restarted it: gone for its reboot window is expected
        if self.failures < self.offline_after:
            return None
        return self._move(kind.status, reason, now)

    def stalled(self, reason: str, now: datetime) -> StatusChange | None:
        """A device counted online has not been read for too long (see the poller's
        watchdog): it is in error with ``reason`` until a check answers again."""
        return self._move(DeviceStatus.ERROR, reason, now)

    def _move(self, status: DeviceStatus, reason: str, now: datetime) -> StatusChange | None:
        if status == self.status and reason == self.reason:
            return None
        previous = self.status
        self.status, self.reason, self.since = status, reason, now
        return StatusChange(self.device_id, status, reason, now, previous)
