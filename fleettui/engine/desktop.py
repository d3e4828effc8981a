"""Desktop notifications for alerts, where there is a desktop; silence where there is not.

plyer picks a backend (D-Bus, notify-send...) and, on a server or in an SSH
session, either raises (no backend, no bus) or fails silently (notify-send
without a bus exits 1 and plyer ignores it). So: only try when a session bus
is advertised, run the call off the event loop, and on the first failure
log one line and stop trying (no traceback, no spam). The TUI's toasts carry
the alert either way.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from fleettui.engine.alerts import Notification

log = logging.getLogger(__name__)


def _plyer_notify(title: str, message: str) -> None:
    from plyer import notification

    notification.notify(title=title, message=message, app_name="fleettui", timeout=10)


class DesktopSink:
    """An alert sink that shows desktop notifications, degrading quietly when it cannot."""

    def __init__(
        self,
        notify: Callable[[str, str], None] = _plyer_notify,
        environ: dict[str, str] | None = None,
        spawn: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._notify = notify
        self._spawn = spawn or _in_thread
        self.available = bool(env.get("DBUS_SESSION_BUS_ADDRESS"))
        self.sent = 0
        if not self.available:
            log.info("no desktop session bus: alerts show as toasts only")

    def __call__(self, n: Notification) -> None:
        """Show one notification (in a thread: backends may block)."""
        if not self.available:
            return
        self._spawn(lambda: self._show(n))

    def _show(self, n: Notification) -> None:
        try:
            self._notify(f"fleettui · {n.change}", n.text)
            self.sent += 1
        except Exception as e:  # any backend failure: say it once, then stop trying
            if self.available:
                self.available = False
                log.warning("desktop notifications unavailable (%s): toasts only",
                            type(e).__name__)


def _in_thread(fn: Callable[[], None]) -> None:
    threading.Thread(target=fn, daemon=True, name="desktop-notify").start()
