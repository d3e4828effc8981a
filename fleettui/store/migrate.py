"""Moving an install from one box to several: a SQLite store copied into an empty
PostgreSQL one, whole, and checked.

Every table is copied with its ids (punch, event and outbox ids are what
webhook receivers and API clients hold: ``webhook-id``, ``after_id``), in one
PostgreSQL transaction: the copy is all there or not at all. Each SQLite
value becomes its PostgreSQL column's type (UTC time text → ``timestamptz``,
0/1 → ``boolean``, JSON text → ``jsonb``); the sequences are set past the
highest id copied; then every table's rows are counted on both sides. The
SQLite file is read only, and must not be polled meanwhile (the caller checks
its poller lock).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fleettui.store.postgres.connection import PostgresConnection
from fleettui.store.postgres.partitions import Partitions
from fleettui.store.shared.timetext import from_ts
from fleettui.store.sqlite.connection import SqliteConnection
from fleettui.store.where import DatabaseUrl

#: every table, parents before the tables that refer to them
TABLES = (
    "sites", "devices", "status_history", "punches", "events", "command_requests", "commands",
    "alerts", "silences", "flap_state", "webhook_outbox", "api_keys", "webhook_cursors",
    "webhook_deliveries", "webhook_endpoints", "device_sessions", "push_lines", "push_users",
    "push_pending",
)
#: rows copied per COPY (memory stays flat however big the store is)
BATCH = 10_000


class MigrationRefused(Exception):
    """The copy was not made (nothing was written): the reason says why."""


@dataclass(frozen=True)
class TableCopy:
    """One table's rows: in the SQLite store, and in PostgreSQL after the copy."""

    table: str
    source: int
    copied: int


def _converter(pg_type: str) -> Callable[[Any], Any]:
    """How a SQLite value becomes a value of a PostgreSQL column of ``pg_type``."""
    if pg_type == "timestamp with time zone":
        return lambda v: from_ts(v) if isinstance(v, str) else v
    if pg_type == "timestamp without time zone":
        return lambda v: datetime.fromisoformat(v) if isinstance(v, str) else v
    if pg_type == "boolean":
        return lambda v: None if v is None else bool(v)
    if pg_type == "jsonb":
        return lambda v: json.loads(v) if isinstance(v, str) else v
    return lambda v: v


def _rows(path: Path, table: str, columns: list[str]) -> Iterator[list[tuple[Any, ...]]]:
    """A table's rows, a batch at a time, from a read-only connection (each batch read in
    whichever worker thread asks: one at a time, never at once)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        cursor = db.execute(f"SELECT {', '.join(columns)} FROM {table}")
        while batch := cursor.fetchmany(BATCH):
            yield batch
    finally:
        db.close()


def _count(path: Path, table: str) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


async def migrate_store(
    source: Path, target: DatabaseUrl, *, progress: Callable[[str, int], None] | None = None,
) -> list[TableCopy]:
    """Copy the SQLite store at ``source`` into the empty PostgreSQL database ``target``
    (migrated first); each table's counts on both sides. MigrationRefused when the
    source is missing or the target already holds a fleet; nothing is written then."""
    if not source.is_file():
        raise MigrationRefused(f"no SQLite store at {source}")
    sqlite_store = await SqliteConnection.open(source)  # brings its schema up to date
    await sqlite_store.close()
    pg = await PostgresConnection.open(target.url)
    try:
        # partitions first, outside the copy's transaction (making one waits for every
        # transaction that has read the punches table); empty ones harm nothing
        await Partitions().ensure(pg._pool, await asyncio.to_thread(_punch_months, source))
        async with pg._pool.acquire() as conn, conn.transaction():
            for table in TABLES:
                if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                    raise MigrationRefused(
                        f"{target} is not empty ({table} has rows): migrate-store copies "
                        "into a new database only")
            copies = []
            for table in TABLES:
                copied = await _copy_table(conn, source, table, progress)
                copies.append(TableCopy(table, await asyncio.to_thread(_count, source, table),
                                        copied))
            await _advance_sequences(conn)
            wrong = [c for c in copies if c.source != c.copied]
            if wrong:
                raise MigrationRefused("counts differ after the copy (rolled back): " + ", ".join(
                    f"{c.table} {c.source} → {c.copied}" for c in wrong))
    finally:
        await pg.close()
    return copies


def _punch_months(path: Path) -> list[datetime]:
    """The first local time of each month that has punches (their partitions are made
    before the copy)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT DISTINCT substr(local_time, 1, 7) FROM punches").fetchall()
    finally:
        db.close()
    return [datetime.fromisoformat(f"{r[0]}-01") for r in rows if r[0]]


async def _copy_table(conn: Any, source: Path, table: str,
                      progress: Callable[[str, int], None] | None) -> int:
    """Copy one table's rows (ids included); how many PostgreSQL holds after."""
    types = {r["column_name"]: r["data_type"] for r in await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = $1", table)}
    sqlite_columns = await asyncio.to_thread(_columns, source, table)
    columns = [c for c in sqlite_columns if c in types]
    convert = [_converter(types[c]) for c in columns]
    batches = _rows(source, table, columns)
    done = 0
    while True:
        batch = await asyncio.to_thread(next, batches, None)
        if batch is None:
            break
        records = [tuple(f(v) for f, v in zip(convert, row, strict=True)) for row in batch]
        await conn.copy_records_to_table(table, records=records, columns=columns)
        done += len(records)
        if progress is not None:
            progress(table, done)
    return int(await conn.fetchval(f"SELECT COUNT(*) FROM {table}"))


def _columns(path: Path, table: str) -> list[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[1] for r in db.execute(f"PRAGMA table_info({table})").fetchall()]
    finally:
        db.close()


async def _advance_sequences(conn: Any) -> None:
    """Every id sequence past the highest id copied, so the next row gets a new id."""
    with_ids = {r[0] for r in await conn.fetch(
        "SELECT table_name FROM information_schema.columns WHERE column_name = 'id'"
        " AND table_schema = current_schema() AND table_name = ANY($1::text[])", list(TABLES))}
    for table in (t for t in TABLES if t in with_ids):
        sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
        if sequence is None:
            continue
        highest = await conn.fetchval(f"SELECT MAX(id) FROM {table}")
        if highest is not None:
            await conn.execute("SELECT setval($1, $2)", sequence, highest)


