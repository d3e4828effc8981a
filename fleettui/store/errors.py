"""What the store refuses, in the fleet's terms: raised by every backend alike."""

from __future__ import annotations


class FleetConflict(ValueError):
    """A change to the fleet the store refuses, and why: nothing of it was written.

    ``status`` is what an HTTP answer would say (400 bad reference, 404 unknown
    device, 409 taken or owned by the config file); ``index`` is the device's
    place in a batch (None for a single device) and ``field`` the field at fault.
    """

    def __init__(self, status: int, field: str, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.status = status
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

