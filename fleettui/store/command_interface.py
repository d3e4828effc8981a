"""What the store answers about remote commands: requests, their per-device commands,
and the signal that a device has work.

Part of the ``Store`` interface (``interface.py``), apart because it is the
command queue's own contract: the poller, the push gateway and the enqueue
path are its only callers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from fleettui.domain import Command, CommandRequest, CommandState, Event, Submission


class CommandStore(Protocol):
    """The command questions of the store: queue, run, finish, list."""

    async def submit_command(
        self,
        *,
        target: str,
        target_kind: str,
        device_ids: Sequence[str],
        command: str,
        params: dict[str, Any],
        fingerprint: str,
        source: str,
        now: datetime,
        idempotency_key: str | None = None,
        ttl: timedelta | None = None,
    ) -> Submission:
        """Queue one command per device as one request.

        With an idempotency key already used for the same request, nothing is
        queued and the existing request comes back (created False); used for a
        different request, IdempotencyConflict. Keys older than
        IDEMPOTENCY_WINDOW are forgotten, so the key can be used again.
        """
        ...

    async def command_request(self, request_id: int) -> CommandRequest | None:
        """A request with its commands."""
        ...

    async def due_commands(self, device_id: str, now: datetime) -> list[Command]:
        """A device's queued commands in order, after expiring those past their time to live."""
        ...

    def add_queue_listener(self, listener: Callable[[Sequence[str]], None]) -> None:
        """Call ``listener`` with the device ids of each request queued through this store
        object, after it commits (the engine's signal that a device has work; commands
        queued by another process are found by ``devices_with_queued_commands``)."""
        ...

    def remove_queue_listener(self, listener: Callable[[Sequence[str]], None]) -> None:
        """Stop calling a listener added by ``add_queue_listener``."""
        ...

    async def start_command(self, command_id: int, now: datetime) -> None:
        """The poller is about to run a command on its device."""
        ...

    async def finish_command(
        self,
        command: Command,
        state: CommandState,
        now: datetime,
        *,
        result: dict[str, Any] | None = None,
        error: str = "",
    ) -> Event:
        """A command ended (done or failed): state, result and an event, in one transaction."""
        ...

    async def interrupt_sent_commands(self, now: datetime,
                                      site_ids: Sequence[str] | None = None) -> int:
        """Commands left 'sent' by a poller that died: failed, never run a second time (only
        those of the devices of ``site_ids``, if given: the sites a poller just took over)."""
        ...

    async def command(self, command_id: int) -> Command | None:
        """One command, or None."""
        ...

    async def commands(
        self, *, device_id: str | None = None, limit: int = 100
    ) -> list[Command]:
        """The newest commands (of one device, if given), newest first."""
        ...
