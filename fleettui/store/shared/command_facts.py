"""What every backend writes about a command's life, apart from SQL: the idempotency
window, the event log's messages and data, the errors stored, and the webhook fact a
finished command sends (the same bytes from either backend)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from fleettui.domain import Command, CommandState, WebhookEvent
from fleettui.store.shared.timetext import ts

#: how long an idempotency key guards against a repeated request
IDEMPOTENCY_WINDOW = timedelta(days=7)

#: the error of a command whose time to live ran out in the queue
EXPIRED_ERROR = "time to live ran out before the device could take it"
#: the error of a command a dead poller left running
INTERRUPTED_ERROR = ("interrupted: the poller stopped while it ran;"
                     " it may or may not have taken effect")


def key_forgotten(created_at: datetime | None, now: datetime) -> bool:
    """Whether a request made at ``created_at`` no longer holds its idempotency key."""
    return created_at is not None and now - created_at > IDEMPOTENCY_WINDOW


class QueuedFact(NamedTuple):
    """The ``command.queued`` event of a request: its message, whom it is about, its data."""

    message: str
    site_id: str | None
    device_id: str | None
    data: dict[str, Any]


def queued_fact(*, request_id: int, target: str, target_kind: str, command: str,
                devices: int, source: str) -> QueuedFact:
    """The event that tells a request was queued for ``devices`` device(s)."""
    return QueuedFact(
        f"{command} queued for {target_kind} {target} ({devices} device(s))",
        target if target_kind == "site" else None,
        target if target_kind == "device" else None,
        {"request_id": request_id, "command": command, "source": source},
    )


def expired_message(device_id: str, command: str) -> str:
    """The event message of a command expired in the queue."""
    return f"{device_id}: {command} expired"


def finished_message(command: Command, state: CommandState, error: str) -> str:
    """The event message of a command that ended in ``state``."""
    message = f"{command.device_id}: {command.command} {state.value}"
    return f"{message}: {error}" if error else message


def late_message(command: Command, state: CommandState, error: str,
                 recorded: str | None) -> str:
    """The event message of a command's end heard after another process had ended it
    (``recorded``: the state stored, None when the command is gone): not recorded."""
    return (f"{finished_message(command, state, error)}"
            f" (not recorded: the command was already {recorded or 'gone'})")


def finished_data(command: Command, result: dict[str, Any] | None,
                  error: str) -> dict[str, Any]:
    """The event data of a command that ended."""
    return {"command_id": command.id, "request_id": command.request_id,
            "command": command.command, "result": result, "error": error}


def finished_webhook(
    command: Command, state: CommandState, now: datetime, result: dict[str, Any] | None,
    error: str,
) -> tuple[WebhookEvent, dict[str, Any]] | None:
    """The webhook fact of a command that ended done or failed (None for another state):
    its kind and payload."""
    if state not in (CommandState.DONE, CommandState.FAILED):
        return None
    kind = (WebhookEvent.COMMAND_COMPLETED if state is CommandState.DONE
            else WebhookEvent.COMMAND_FAILED)
    return kind, {
        "event": kind,
        "command": {"id": command.id, "request_id": command.request_id,
                    "device_id": command.device_id, "command": command.command,
                    "status": state.value, "result": result, "error": error or None},
        "timestamp": ts(now),
    }
