"""Which UDP sessions this poller holds on its devices: the store as the drivers' ledger.

A UDP session on a ZK terminal ends only with CMD_EXIT, and a terminal serves a
handful at once. A poller killed (kill -9, power cut) never says it, so its
sessions keep their slots until the terminal times them out (minutes), and two
such deaths in a row can lock the next poller out. The driver writes down each
session it opens, before using it, and crosses it off once said goodbye to; at
start the next poller says goodbye to what is still written down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, TypeVar

from fleettui.store import Store

T = TypeVar("T")

#: how long a driver thread waits for the store to write a session down
WRITE_TIMEOUT_S = 10.0


class StoreSessionLedger:
    """One device's UDP sessions in the store, for the driver's threads (blocking calls
    that run on the engine's event loop, which owns the store connection)."""

    def __init__(
        self,
        store: Store,
        device_id: str,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._device_id = device_id
        self._loop = loop
        self._clock = clock

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is self._loop or self._loop.is_closed():
            coro.close()  # the loop's own thread cannot wait for itself
            raise RuntimeError("the session ledger is called from driver threads only")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(WRITE_TIMEOUT_S)

    def opened(self, session_id: int) -> None:
        """A session was opened: written down before the driver uses it."""
        self._wait(self._store.remember_session(self._device_id, session_id, self._clock()))

    def closed(self, session_ids: Sequence[int]) -> None:
        """Sessions said goodbye to."""
        self._wait(self._store.forget_sessions(self._device_id, list(session_ids)))

    def leftover(self) -> list[int]:
        """Sessions an earlier run opened and never closed."""
        return self._wait(self._store.open_sessions(self._device_id))
