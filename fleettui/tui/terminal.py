"""Living with a terminal that can vanish: an SSH session that drops mid-run.

When the session drops, the kernel hangs up the terminal: the process gets
SIGHUP, reads from it return end-of-file, and writes fail with EIO. Textual's
own driver would then spin on the end-of-file, panic on a read error, or
block for ever once its writer thread died on EIO. Here the app instead
stops drawing, points the standard streams away from the dead terminal (fd 2
to the log file, so a late traceback is still seen), and exits through its
normal shutdown: the embedded engine stops gracefully and the poller lock is
released by the caller.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from types import FrameType
from typing import Any

from textual.message import Message

log = logging.getLogger("fleettui.tui")


class TerminalGone(Message):
    """The terminal hung up (SIGHUP, a read error, or it stopped being a terminal)."""


#: the signals that stop the control room gracefully: the terminal hung up, or `kill`
STOP_SIGNALS = (signal.SIGHUP, signal.SIGTERM)


class StopSignals:
    """SIGHUP and SIGTERM noted, not fatal, while the control room starts and stops.

    Their default action kills the process at once: a hang-up while the app
    was still starting (the lock taken, the store opening, the engine starting)
    or already stopping (the engine finishing its work) ended it with no
    graceful stop and exit code -1. From ``__enter__`` to ``__exit__`` a
    signal is only noted in ``received``; the app's loop takes the signals
    over when it mounts (and handles one noted before), and gives them back
    here when it unmounts (``take_back``).
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def _note(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum

    def before_start(self, what: str) -> None:
        """A signal came before the app started: say so; after a hang-up, let nothing more
        be written to the dead terminal."""
        assert self.received is not None
        log.warning("%s before %s started: stopping", signal.Signals(self.received).name, what)
        if self.received == signal.SIGHUP:
            detach_standard_streams()

    def take_back(self) -> None:
        """Note the signals again (the app's loop is done with them: it reset them to
        their default, fatal action)."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._note)


def terminal_alive(fd: int) -> bool:
    """Whether ``fd`` is still a working terminal (a hung-up one fails tcgetattr with EIO)."""
    import termios

    try:
        termios.tcgetattr(fd)
    except (termios.error, OSError, ValueError):
        return False
    return True


def detach_standard_streams() -> None:
    """Point fds 0 and 1 at /dev/null and fd 2 at the log file (or /dev/null).

    Anything still written afterwards (Textual's restore sequences, a final
    print, interpreter shutdown) goes nowhere instead of failing with EIO.
    """
    null = os.open(os.devnull, os.O_RDWR)
    err = null
    for handler in logging.getLogger().handlers:
        stream = getattr(handler, "stream", None)
        if isinstance(handler, logging.FileHandler) and stream is not None:
            with contextlib.suppress(OSError, ValueError):
                err = stream.fileno()
            break
    for fd, target in ((0, null), (1, null), (2, err)):
        with contextlib.suppress(OSError):
            os.dup2(target, fd)
    os.close(null)


if sys.platform != "win32":
    from textual.drivers.linux_driver import LinuxDriver

    class TerminalDriver(LinuxDriver):
        """Textual's Linux driver, made quiet and non-blocking once the terminal is gone."""

        hung_up = False

        def write(self, data: str) -> None:
            """Write, unless the terminal is gone (then drop: nobody can see it)."""
            writer = self._writer_thread
            if self.hung_up or (writer is not None and not writer.is_alive()):
                return
            super().write(data)

        def close(self) -> None:
            """Stop the writer thread, unless a write error already ended it."""
            writer = self._writer_thread
            if writer is not None and not writer.is_alive():
                return
            super().close()

        def _run_input_thread(self) -> None:
            try:
                self.run_input_thread()
            except OSError as e:
                # the terminal was hung up under us: not a crash, a goodbye
                log.info("terminal input failed (%s): treating as a hang-up", e.strerror or e)
                self.hung_up = True
                self._app.post_message(TerminalGone())
            except BaseException:
                import rich.traceback

                # a real bug: let Textual show it, as its own driver does
                self._app.call_later(self._app.panic, rich.traceback.Traceback())
