"""How a backend's time columns read as datetimes, for the row readers both backends share.

SQLite keeps times as the store's UTC text (``timetext.from_ts`` reads it);
PostgreSQL's ``timestamptz`` columns come back as aware datetimes already.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

#: how a backend's time column reads as a datetime (None for NULL)
TimeOf = Callable[[Any], datetime | None]


def native_time(value: Any) -> datetime | None:
    """A time column that is a datetime already (PostgreSQL's timestamptz)."""
    return cast(datetime | None, value)


def required_time(when: TimeOf, value: Any) -> datetime:
    """A time column that is never NULL, read by ``when``."""
    at = when(value)
    assert at is not None, "a NOT NULL time column read as NULL"
    return at
