"""Start-up and shutdown of a poller over one database, for every front end.

``fleettui run --headless`` and the control room (embedding the poller, or a
viewer of another one's store) start and stop the same way, here:

1. take the database's poller lock (``claim``; the control room becomes a
   viewer instead when another process owns it, ``claim_or_view``);
2. open the store (``open``);
3. start the engine (``start_engine``; a viewer runs none), and the push
   listener when ``[push] enabled`` (``serve_push``: devices that dial in);
4. optionally serve the HTTP API from the same event loop (``serve_api``);

and stop in the reverse order (``stop``): the API, the push listener, then the engine (its
in-flight checks and syncs finish their writes), then the store; the lock
last (``release``), however the process ends. The caller takes the stop
signals before ``claim``, so a stop while starting is clean too.

A composition root, like headless mode: it may import the engine, the store
and the server; the views ask it for them, and nothing below imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from fleettui.config import Config
from fleettui.domain import Event
from fleettui.engine.alerts import Sink
from fleettui.engine.engine import Engine
from fleettui.store import Store, open_store
from fleettui.store.lock import PollerRunning, poller_lock
from fleettui.store.where import StoreTarget

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)


class ApiUnavailable(Exception):
    """The HTTP API could not be served on the address asked for (taken, or not ours)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot serve the HTTP API on {host}:{port}: {reason}")
        self.host = host
        self.port = port
        self.reason = reason


class PushUnavailable(ApiUnavailable):
    """The push listener could not be served on its address (taken, or not ours)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(host, port, reason)
        self.args = (f"cannot serve the push listener on {host}:{port}: {reason}",)

    def __str__(self) -> str:
        return str(self.args[0])


class Runtime:
    """One process's hold on a database: lock, store, engine and API, started and stopped
    in order.

    Give ``config`` and ``db_path`` to open the store here (and close it on
    ``stop``), or an open ``store`` to use (the caller closes it), optionally
    with an ``engine`` to start and stop. ``embed`` says whether an engine is
    built from ``config`` when none is given (False: a viewer).
    """

    def __init__(
        self,
        config: Config | None,
        db_path: StoreTarget | None,
        *,
        lock_mode: str = "headless poller",
        store: Store | None = None,
        engine: Engine | None = None,
        embed: bool = True,
    ) -> None:
        if store is None and (config is None or db_path is None):
            raise ValueError("a runtime needs a store, or a config and a database path")
        self.config = config
        self.db_path = db_path
        self.store: Store | None = store
        self.owns_store = store is None
        self.engine: Engine | None = engine
        self.embed = embed
        #: the HTTP API's runner while it is served
        self.api: web.AppRunner | None = None
        #: the push listener's runner while it is served, and its address
        self.push: web.AppRunner | None = None
        self.push_address: str | None = None
        self._lock = poller_lock(db_path, mode=lock_mode) if db_path is not None else None
        self._mode = lock_mode
        self._stopped = False

    # --- start-up, in order -------------------------------------------------

    def claim(self) -> Runtime:
        """Take the database's poller lock; raises PollerRunning naming the owner."""
        assert self._lock is not None, "no database to lock"
        self._lock.acquire()
        return self

    def claim_or_view(self) -> bool:
        """Take the lock if nobody owns the database (True: this process polls it), else
        become a viewer of the owner's store (False: no engine is started)."""
        try:
            self.claim()
        except PollerRunning:
            self.embed = False
        return self.embed

    async def open(self) -> Store:
        """The store: opened (and migrated) unless one was given."""
        if self.store is None:
            assert self.db_path is not None
            self.store = await open_store(self.db_path)
        return self.store

    async def start_engine(
        self,
        *,
        alert_sinks: Callable[[], list[Sink]] | None = None,
        listeners: Iterable[Callable[[Event], None]] = (),
    ) -> Engine | None:
        """Start polling: the given engine, or one built from the config (None: a viewer).

        ``listeners`` hear every event the engine commits; ``alert_sinks``
        makes the notification sinks of an engine built here (instead of the
        engine's default ones)."""
        store = await self.open()
        if self.engine is None and self.embed and self.config is not None:
            self.engine = Engine(self.config, store, mode=self._mode,
                                 alert_sinks=alert_sinks() if alert_sinks else None)
        if self.engine is not None:
            self.engine.listeners.extend(listeners)
            await self.engine.start()
        return self.engine

    async def serve_push(self) -> str | None:
        """Serve the push listener for the engine's push devices, when ``[push] enabled``
        (None: not enabled, or a viewer); its base address. PushUnavailable if it cannot."""
        engine = self.engine
        if engine is None or not engine.config.push.enabled:
            return None
        from fleettui.push import start_listener

        settings = engine.config.push
        try:
            self.push = await start_listener(engine.push, settings)
        except OSError as e:
            raise PushUnavailable(settings.host, settings.port, e.strerror or str(e)) from e
        bound = self.push.addresses[0][1] if self.push.addresses else settings.port
        shown = f"[{settings.host}]" if ":" in settings.host else settings.host
        self.push_address = f"http://{shown}:{bound}"
        return self.push_address

    async def serve_api(self, host: str, port: int) -> str:
        """Serve the HTTP API from this event loop; its base address (``http://host:port``,
        the port bound when 0 was asked). Raises ApiUnavailable when it cannot bind."""
        from fleettui.server import start_server

        store = await self.open()
        hook = self.engine.reconcile_soon if self.engine is not None else None
        allow = (self.config.security.allow_private_webhook_targets
                 if self.config is not None else False)
        try:
            self.api = await start_server(store, host, port, on_fleet_change=hook,
                                          allow_private_webhook_targets=allow)
        except OSError as e:
            raise ApiUnavailable(host, port, e.strerror or str(e)) from e
        bound = self.api.addresses[0][1] if self.api.addresses else port
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{bound}"

    # --- shutdown, in order ---------------------------------------------------

    async def stop(self) -> None:
        """Stop the API, then the engine (in-flight work finishes), then close the store
        if it was opened here. Safe to call at any stage of start-up, and again."""
        if self.api is not None:
            api, self.api = self.api, None
            await api.cleanup()
        if self.push is not None:
            push, self.push = self.push, None
            await push.cleanup()
        if self.engine is not None and not self._stopped:
            self._stopped = True
            await self.engine.stop()
        if self.owns_store and self.store is not None:
            store, self.store = self.store, None
            await store.close()

    def release(self) -> None:
        """Give the poller lock up (nothing if it was not taken)."""
        if self._lock is not None:
            self._lock.release()
