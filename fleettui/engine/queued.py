"""Which devices have commands waiting: so a check reads the command queue only then.

Reading a device's queue (``Store.due_commands``) is a write transaction (it
expires commands past their time to live): at 2,000 devices, 500 of them a
second for queues that are nearly always empty. The engine keeps the set of
devices with queued commands instead. The store signals each request queued
through it (the control room's palette, the HTTP API and schedules in this
process), and the engine re-reads the whole set from the store every second
to catch what no signal tells (a command queued by another process).
"""

from __future__ import annotations

from collections.abc import Iterable

from fleettui.store import Store


class QueuedCommands:
    """Device ids with queued commands, as signalled or last read from the store."""

    def __init__(self) -> None:
        #: device id -> how many times it was marked (a token against lost marks)
        self._marks: dict[str, int] = {}
        self._refreshing: set[str] | None = None

    def mark(self, device_ids: Iterable[str]) -> None:
        """These devices have (new) commands queued."""
        for device_id in device_ids:
            self._marks[device_id] = self._marks.get(device_id, 0) + 1
            if self._refreshing is not None:
                self._refreshing.add(device_id)

    def token(self, device_id: str) -> int | None:
        """The device's mark count, or None when nothing is queued for it."""
        return self._marks.get(device_id)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._marks

    def drained(self, device_id: str, token: int | None) -> None:
        """The device's queue was read empty after ``token(device_id)`` gave ``token``: forget
        it, unless it was marked again meanwhile (that command may not have been read)."""
        if token is not None and self._marks.get(device_id) == token:
            del self._marks[device_id]

    async def refresh(self, store: Store) -> None:
        """Re-read the set from the store (marks made while the read runs are kept)."""
        self._refreshing = set()
        try:
            found = await store.devices_with_queued_commands()
            marked_meanwhile = self._refreshing
        finally:
            self._refreshing = None
        for device_id in list(self._marks):
            if device_id not in found and device_id not in marked_meanwhile:
                del self._marks[device_id]
        for device_id in found:
            self._marks.setdefault(device_id, 0)

    def __len__(self) -> int:
        return len(self._marks)
