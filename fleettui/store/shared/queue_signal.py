"""The signal that a device has work: listeners told the device ids of each command
request queued through a store object, once it is committed (every backend alike)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

#: what a queue listener is: told the device ids of a request just queued
QueueListener = Callable[[Sequence[str]], None]


class QueueSignal:
    """The listeners half of a store's command queue (a mixin of each backend's command
    queries; the backend's connection holds the list ``_queue_listeners``)."""

    _queue_listeners: list[QueueListener]

    def add_queue_listener(self, listener: QueueListener) -> None:
        """Call ``listener`` with the device ids of each request queued here, once committed."""
        self._queue_listeners.append(listener)

    def remove_queue_listener(self, listener: QueueListener) -> None:
        """Stop calling a listener added by ``add_queue_listener``."""
        if listener in self._queue_listeners:
            self._queue_listeners.remove(listener)

    def _tell_queued(self, device_ids: Sequence[str]) -> None:
        """Tell every listener of a request just committed; one that fails is logged and
        the others are still told."""
        for listener in list(self._queue_listeners):
            try:
                listener(device_ids)
            except Exception:
                log.exception("command queue listener failed")
