"""The SQLite store's connections: opened, migrated, one writer and one reader.

Durability: WAL mode with ``synchronous=NORMAL``. An application crash
(kill -9) loses nothing that was committed. A power cut may roll back the
last transactions written before it; nothing is lost for good because
fleettui never clears a device's records, so the next sync reads them again
and the unique key keeps them from being stored twice.

Also here: the store's UTC time text (``ts``/``from_ts``), which never leaves
the SQLite package.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import aiosqlite

from fleettui.store.schema import MIGRATIONS

# aiosqlite logs every statement with its parameters at DEBUG, and parameters can be
# secrets (a webhook endpoint's secret): its log never goes below INFO
logging.getLogger("aiosqlite").setLevel(logging.INFO)


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


async def connect(path: Path) -> aiosqlite.Connection:
    """A connection in autocommit (transactions are begun explicitly), rows by name."""
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = aiosqlite.Row
    try:
        await db.execute("PRAGMA busy_timeout=10000")
    except BaseException:
        await db.close()
        raise
    return db


async def _migrate(db: aiosqlite.Connection) -> None:
    """Run the migrations not run yet, all in one transaction.

    The version is read inside the write transaction, so two processes
    opening a new database at once (a poller creating it, ``fleettui
    status`` reading it) never run a migration twice.
    """
    await db.execute("BEGIN IMMEDIATE")
    try:
        row = await (await db.execute("PRAGMA user_version")).fetchone()
        version = int(row[0]) if row else 0
        for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in sql.split(";"):
                if statement.strip():
                    await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {number}")
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise


class SqliteConnection:
    """The SQLite database's two connections; every query mixin of SqliteStore builds on it.

    Two connections: every write transaction goes through the writer, one at a
    time (SQLite has one writer); every read goes through the reader, which
    is query-only and in autocommit, so it sees what is committed and nothing
    else. With one shared connection a read made while another coroutine's
    transaction was open saw rows that were then rolled back (the control
    room's event tail took a rolled-back event's id and skipped the next real
    one, which got the same id).
    """

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 path: Path) -> None:
        self._writer = writer
        #: the read connection (the name every read method uses)
        self._db = reader
        self.path = path
        self._write = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Self:
        """Open (creating if needed, readable by its owner only) and migrate."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        writer = await connect(path)
        try:
            await _set_wal(writer)
            await writer.execute("PRAGMA synchronous=NORMAL")
            await writer.execute("PRAGMA foreign_keys=ON")
            await _migrate(writer)
            reader = await connect(path)
        except BaseException:
            await writer.close()
            raise
        try:
            await reader.execute("PRAGMA query_only=ON")  # a write sent here is a bug: refused
        except BaseException:
            await reader.close()
            await writer.close()
            raise
        return cls(writer, reader, path)

    async def close(self) -> None:
        """Close both connections (waits for the write in progress)."""
        async with self._write:
            await self._db.close()
            await self._writer.close()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time, on the writer; rolled back on any error. What
        it writes is seen by reads once it commits, not before."""
        async with self._write:
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
            except asyncio.CancelledError:
                # the BEGIN runs on in aiosqlite's thread all the same: undo it, or every
                # later write would fail ("cannot start a transaction within a transaction")
                await _rollback(self._writer)
                raise
            try:
                yield self._writer
            except BaseException:
                await _rollback(self._writer)
                raise
            await self._writer.execute("COMMIT")

    async def schema_version(self) -> int:
        """How many migrations have run."""
        row = await (await self._db.execute("PRAGMA user_version")).fetchone()
        return int(row[0]) if row else 0


async def _rollback(db: aiosqlite.Connection) -> None:
    """Undo the writer's open transaction, if there is one (queued after what it runs)."""
    try:
        await db.execute("ROLLBACK")
    except sqlite3.OperationalError as e:
        if "no transaction is active" not in str(e):
            raise


async def _set_wal(db: aiosqlite.Connection) -> None:
    """Switch to WAL; SQLite answers "locked" at once, busy_timeout or not, while another
    connection switches the same new file, so retry for a while."""
    for attempt in range(200):
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 199:
                raise
            await asyncio.sleep(0.05)


async def fetch(db: aiosqlite.Connection, sql: str, args: Sequence[Any] = ()) -> list[Any]:
    """Every row a statement answers, on ``db`` (the reader, or the writer inside ``_tx``)."""
    return list(await db.execute_fetchall(sql, args))

