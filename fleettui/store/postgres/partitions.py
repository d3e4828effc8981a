"""The punches table's monthly partitions: made before a month's first punch is written.

A partition is a table of its own (``punches_y2026m03``) for the punches
whose device-local time falls in that month. Months from 2000 to the month
after next get one; a punch outside them (a device clock set to 1999 or
2099) goes to the default partition ``punches_other``, so a broken clock
can never make thousands of tables. Partitions are made in a transaction of
their own under an advisory lock (DDL on the parent must not wait inside a
punch transaction, and two pollers must not race to make the same month).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime

import asyncpg

log = logging.getLogger(__name__)

#: the advisory lock under which partitions are made (fleettui's own key)
PARTITION_LOCK = 0x666C_7475_0003
#: the first month that gets a partition of its own
FIRST_MONTH = date(2000, 1, 1)


def month_of(local: datetime) -> date:
    """The first day of the month of a device-local time."""
    return date(local.year, local.month, 1)


def next_month(month: date) -> date:
    """The first day of the month after ``month``."""
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def partition_name(month: date) -> str:
    """The table that holds one month's punches."""
    return f"punches_y{month.year:04d}m{month.month:02d}"


def wanted(months: Iterable[date], today: date | None = None) -> list[date]:
    """The months, of those given, that get a partition of their own (the rest: the
    default partition), in order."""
    today = today or datetime.now(UTC).date()
    last = next_month(next_month(date(today.year, today.month, 1)))
    return sorted({m for m in months if FIRST_MONTH <= m < last})


class Partitions:
    """The months known to have a partition, and the making of those that do not yet."""

    def __init__(self) -> None:
        self._known: set[date] = set()

    async def ensure(self, pool: asyncpg.Pool, locals_: Iterable[datetime]) -> None:
        """Make the partitions the punches of these local times need (once each per
        process: a month found or made is remembered)."""
        missing = [m for m in wanted({month_of(t) for t in locals_}) if m not in self._known]
        if not missing:
            return
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
            rows = await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'punches'::regclass")
            present = {r["relname"] for r in rows}
            for month in missing:
                name = partition_name(month)
                if name in present:
                    continue
                try:
                    async with conn.transaction():  # a savepoint: one refusal spoils nothing
                        await conn.execute(
                            f"CREATE TABLE {name} PARTITION OF punches"
                            f" FOR VALUES FROM ('{month.isoformat()}')"
                            f" TO ('{next_month(month).isoformat()}')")
                except asyncpg.PostgresError as e:
                    # the default partition already holds punches of that month (written
                    # when it was too far ahead): they stay there, and so do the next ones
                    log.warning("punches of %s stay in punches_other: %s", month, e)
        self._known.update(missing)
