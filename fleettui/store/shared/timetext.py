"""The store's UTC time text: how a time is written where it is text (SQLite's columns,
every backend's webhook payloads), so that both backends write the same bytes."""

from __future__ import annotations

from datetime import UTC, datetime


def ts(dt: datetime) -> str:
    """An aware datetime as the store's UTC text (sorts as time)."""
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def from_ts(text: str | None) -> datetime | None:
    """The store's UTC text back to an aware datetime."""
    if not text:
        return None
    return datetime.fromisoformat(text)  # the trailing Z reads as UTC (Python 3.11+)


def local_text(dt: datetime) -> str:
    """A device's naive local time as the store's text (to the second)."""
    return dt.isoformat(timespec="seconds")
