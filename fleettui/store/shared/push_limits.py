"""How much of what a push device says of itself the store keeps (every backend alike):
its upload stamps, and the firmware and protocol version of a serial held for approval."""

from __future__ import annotations

#: the longest upload stamp kept (a device's stamps are opaque, and short)
STAMP_CHARS = 32
#: the longest firmware and push version texts kept of a serial not known yet
FIRMWARE_CHARS = 60
PUSH_VERSION_CHARS = 20


def clip_stamp(stamp: str | None) -> str | None:
    """An upload stamp as stored (None: the device sent none since the last time)."""
    return stamp[:STAMP_CHARS] if stamp is not None else None


def clip_pending(firmware: str, push_version: str) -> tuple[str, str]:
    """The firmware and push version of an unknown serial, as stored."""
    return firmware[:FIRMWARE_CHARS], push_version[:PUSH_VERSION_CHARS]
