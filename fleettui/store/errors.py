"""What the store refuses, in the fleet's terms: raised by every backend alike."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleettui.store.where import StoreTarget


class ConflictKind(StrEnum):
    """Why the store refused a change to the fleet (each view says it its own way)."""

    #: the change names something that does not exist (a site, a device to move)
    BAD_REFERENCE = "bad_reference"
    #: the device the change is about is not in the fleet
    NOT_FOUND = "not_found"
    #: an id, serial or address is already another site's or device's
    TAKEN = "taken"
    #: the device is declared in the config file: it is changed there, not here
    CONFIG_OWNED = "config_owned"


class FleetConflict(ValueError):
    """A change to the fleet the store refuses, and why: nothing of it was written.

    ``kind`` says why; ``index`` is the device's place in a batch (None for a
    single device) and ``field`` the field at fault.
    """

    def __init__(self, kind: ConflictKind, field: str, message: str,
                 index: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field
        self.message = message
        self.index = index


class IdempotencyConflict(ValueError):
    """An idempotency key already names a different request."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for a different command or target"
        )
        self.key = key


class PollerRunning(RuntimeError):
    """Another poller owns this database."""

    def __init__(self, db: StoreTarget, owner: dict[str, Any]) -> None:
        who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
        since = owner.get("started_at")
        mode = owner.get("mode", "poller")
        text = f"{db} is already polled by a {mode} ({who}"
        text += f", since {since})" if since else ")"
        super().__init__(text)
        self.owner = owner
