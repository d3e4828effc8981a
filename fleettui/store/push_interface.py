"""What the store answers about push devices (ADMS / iclock: they dial in).

Part of the ``Store`` interface (``interface.py``), apart because only the
push gateway and the pending-approval views ask.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from fleettui.domain import PendingDevice, PushContact, PushLine, PushStamps, PushUser


class PushStore(Protocol):
    """The push questions of the store: contacts, stamps, command lines, pending serials."""

    async def record_push_contacts(self, contacts: Sequence[PushContact]) -> None:
        """Many devices' latest calls in one transaction (heartbeats come in batches)."""
        ...

    async def push_stamps(self, device_id: str) -> PushStamps:
        """The stamps the device sent with its last uploads ("0" before any)."""
        ...

    async def devices_with_queued_commands(self) -> set[str]:
        """Devices that have commands waiting to start (any transport)."""
        ...

    async def push_users(self, device_id: str) -> list[PushUser]:
        """The users the device holds, as far as its uploads and our syncs told."""
        ...

    async def record_push_users(self, device_id: str, users: Sequence[PushUser],
                                removed: Sequence[str] = ()) -> None:
        """Users the device now holds (added or changed), and pins it no longer holds."""
        ...

    async def add_push_lines(self, command_id: int, device_id: str, texts: Sequence[str],
                             plan: dict[str, Any]) -> list[PushLine]:
        """The lines that carry a command to a push device, queued in order, and what the
        command reports once they are answered."""
        ...

    async def start_push_command(self, command_id: int, device_id: str, texts: Sequence[str],
                                 plan: dict[str, Any], now: datetime) -> list[PushLine] | None:
        """Start a queued command and queue the lines that carry it, in one transaction;
        None (and nothing written) when it is no longer queued: another listener took it
        (two listeners answering one device at once must not both hand it the command),
        and a listener killed between the two steps cannot leave it started without
        lines."""
        ...

    async def stranded_push_commands(self, answered_before: datetime) -> dict[int, str]:
        """Push commands started, with no line left to send or to answer, whose last
        answer (or start) came before ``answered_before``: a listener stopped before it
        ended them (or queued their next lines). Returns them with their devices."""
        ...

    async def push_plan(self, command_id: int) -> dict[str, Any]:
        """What a push command reports once its lines are answered (empty if nothing)."""
        ...

    async def push_lines(self, device_id: str, *, state: str) -> list[PushLine]:
        """The device's lines in ``state`` ("queued": to send; "sent": awaiting results)."""
        ...

    async def push_lines_of(self, command_id: int) -> list[PushLine]:
        """Every line of one command, in order."""
        ...

    async def mark_push_lines_sent(self, line_ids: Sequence[int], now: datetime) -> list[int]:
        """Lines handed to the device in a getrequest answer; returns those that were
        still queued (only they may be sent: another listener may have sent the rest)."""
        ...

    async def push_last_seen(self) -> dict[str, datetime]:
        """When each push device was last heard, by any listener on the database (as
        their batches of contacts were written; devices never heard are left out)."""
        ...

    async def answer_push_line(self, device_id: str, line_id: int, code: int,
                               result: dict[str, str], now: datetime) -> PushLine | None:
        """A device's result for one of its lines; None when the id is not one of this
        device's lines awaiting a result (a result posted twice is taken once)."""
        ...

    async def expire_push_lines(self, sent_before: datetime, now: datetime) -> dict[int, str]:
        """Lines sent before ``sent_before`` and never answered: failed ("not answered");
        returns the commands they belong to, with their devices."""
        ...

    async def drop_push_lines(self, command_id: int) -> int:
        """Lines of a command that ended without them (expired, failed): never sent now."""
        ...

    async def note_pending_push(self, serial: str, address: str, firmware: str,
                                push_version: str, now: datetime) -> None:
        """An unknown serial called: held (with where and what it is) until approved."""
        ...

    async def pending_push_devices(self) -> list[PendingDevice]:
        """Serials waiting for approval, most recently heard first."""
        ...

    async def forget_pending_push(self, serial: str) -> bool:
        """Stop holding a serial (approved, or dismissed); False if it was not held."""
        ...
