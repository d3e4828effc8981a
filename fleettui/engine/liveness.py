"""The liveness batch: what successful checks learnt, written about once a second.

A check that answers changes only ``last_seen`` and the device's counters;
at 2,000 devices checked every 4 s that is 500 write transactions a second
for facts nobody needs to the millisecond. The poller notes them here and
the engine writes the latest of each device in one transaction per second
(``Store.record_seen_many``). A crash loses at most that second of
``last_seen``: punches and status changes never go through this buffer, they
are written before they are published.
"""

from __future__ import annotations

from fleettui.domain import Liveness


class LivenessBuffer:
    """The latest unwritten liveness fact of each device."""

    def __init__(self) -> None:
        self._pending: dict[str, Liveness] = {}

    def note(self, seen: Liveness) -> None:
        """Keep ``seen`` for the next write (replacing an older one of the same device)."""
        self._pending[seen.device_id] = seen

    def discard(self, device_id: str) -> None:
        """Forget the device's pending fact (it was just written directly)."""
        self._pending.pop(device_id, None)

    def take(self) -> list[Liveness]:
        """Every pending fact, emptying the buffer (the caller writes them)."""
        pending, self._pending = list(self._pending.values()), {}
        return pending

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._pending

    def __len__(self) -> int:
        return len(self._pending)
