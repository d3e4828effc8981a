"""The fleet's check timetable: when each device's next check is due.

One timer per device on the event loop's own heap of due times
(``loop.call_at``) rather than one APScheduler job per device: at 2,000
devices APScheduler's job store, its wake-ups and its executor cost more
than the checks' own bookkeeping. A device's checks come every
``interval_s`` plus a random 0 to ``jitter_s`` (so a fleet started at once
spreads out), counted from when the check was due, not from when it ended;
a check that is due while the last one still runs is still started (the
poller answers it with its stale-count watchdog). The blocking device I/O
itself is bounded by the engine's thread pool.

The timetable also counts how late checks start (``lag``): a check started
a whole interval after it was due is a skipped one (``skipped``).
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Entry:
    interval_s: float
    due: float
    handle: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class CheckStats:
    """How punctual the checks were since the timetable started."""

    started: int = 0
    #: checks started at least one whole interval after they were due
    skipped: int = 0
    #: how late each recent check started, in seconds (the last 10,000)
    lag_s: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


class CheckTimetable:
    """Calls ``run(device_id)`` whenever a device's check is due."""

    def __init__(self, run: Callable[[str], None], *, jitter_s: float,
                 rng: random.Random | None = None) -> None:
        self._run = run
        self._jitter_s = jitter_s
        self._rng = rng or random.Random()
        self._entries: dict[str, _Entry] = {}
        self._loop = asyncio.get_running_loop()
        self.stats = CheckStats()
        self._closed = False

    def add(self, device_id: str, interval_s: float, first_in_s: float) -> None:
        """Check the device every ``interval_s``, the first time in ``first_in_s``."""
        self.remove(device_id)
        entry = _Entry(interval_s, self._loop.time() + first_in_s)
        self._entries[device_id] = entry
        self._arm(device_id, entry)

    def remove(self, device_id: str) -> None:
        """No more checks of the device."""
        entry = self._entries.pop(device_id, None)
        if entry is not None and entry.handle is not None:
            entry.handle.cancel()

    def reschedule(self, device_id: str, interval_s: float) -> None:
        """A new interval (backoff, or back to normal), its next check one interval from now."""
        entry = self._entries.get(device_id)
        if entry is None:
            return
        entry.interval_s = interval_s
        self._move(device_id, entry, self._loop.time() + self._next_gap(entry))

    def soon(self, device_id: str, delay_s: float) -> None:
        """Bring the device's next check forward to ``delay_s`` from now (a retry after a
        failure, or work waiting); later than its next due time it changes nothing."""
        entry = self._entries.get(device_id)
        if entry is None:
            return
        due = self._loop.time() + delay_s
        if due < entry.due:
            self._move(device_id, entry, due)

    def close(self) -> None:
        """Cancel every timer (the engine stops)."""
        self._closed = True
        for entry in self._entries.values():
            if entry.handle is not None:
                entry.handle.cancel()
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    # --- inside -----------------------------------------------------------

    def _next_gap(self, entry: _Entry) -> float:
        return entry.interval_s + (self._rng.uniform(0, self._jitter_s) if self._jitter_s else 0)

    def _move(self, device_id: str, entry: _Entry, due: float) -> None:
        if entry.handle is not None:
            entry.handle.cancel()
        entry.due = due
        self._arm(device_id, entry)

    def _arm(self, device_id: str, entry: _Entry) -> None:
        entry.handle = self._loop.call_at(entry.due, self._fire, device_id, entry)

    def _fire(self, device_id: str, entry: _Entry) -> None:
        if self._closed or self._entries.get(device_id) is not entry:
            return
        now = self._loop.time()
        lag = max(0.0, now - entry.due)
        stats = self.stats
        stats.started += 1
        stats.lag_s.append(lag)
        if lag >= entry.interval_s:
            stats.skipped += 1
        # the next one counted from when this one was due (no drift), never in the past
        entry.due = max(entry.due + self._next_gap(entry), now)
        self._arm(device_id, entry)
        self._run(device_id)
