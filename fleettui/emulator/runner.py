"""Run a fleet in a background thread, for blocking clients (pyzk) in the foreground.

Tests and benchmarks drive the emulator with pyzk, which blocks; the fleet
needs a running event loop. ``EmulatorThread`` gives the fleet its own loop in
a daemon thread and lets the caller run code on that loop safely.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

from fleettui.emulator.control import bound_port, start_control
from fleettui.emulator.fleet import Fleet

T = TypeVar("T")


class EmulatorThread:
    """A fleet served from its own event loop thread (a context manager)."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        control: tuple[str, int] | None = None,
        live_punches: bool = False,
    ) -> None:
        self.fleet = fleet
        self.control = control
        self.live_punches = live_punches
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="emulator", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self.control_port: int | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as e:  # reported to the starting thread
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._stop())
        # cancel what is still in flight (delayed replies, stalled connections)
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    async def _start(self) -> None:
        await self.fleet.start(live_punches=self.live_punches)
        if self.control is not None:
            self._runner = await start_control(self.fleet, *self.control)
            self.control_port = bound_port(self._runner)

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.fleet.stop()

    def start(self) -> EmulatorThread:
        """Start the loop and the fleet; raise what the fleet raised on start."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop the fleet and the loop."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the fleet's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call a plain function on the fleet's loop thread and wait for its result."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def _do() -> None:
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as e:
                fut.set_exception(e)

        self.loop.call_soon_threadsafe(_do)
        return fut.result()

    @property
    def control_url(self) -> str:
        """Base URL of the control API (when started with one)."""
        if self.control is None or self.control_port is None:
            raise RuntimeError("this emulator runs without a control API")
        return f"http://{self.control[0]}:{self.control_port}"
