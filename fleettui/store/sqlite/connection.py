"""The SQLite store's connections: opened, migrated, one writer and one reader.

Durability: WAL mode with ``synchronous=NORMAL``. An application crash
(kill -9) loses nothing that was committed. A power cut may roll back the
last transactions written before it; nothing is lost for good because
fleettui never clears a device's records, so the next sync reads them again
and the unique key keeps them from being stored twice.

The store's UTC time text (``ts``/``from_ts``) is ``fleettui.store.shared.timetext``'s,
imported here for the query modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

import aiosqlite

from fleettui.store.schema import MIGRATIONS
from fleettui.store.shared.timetext import from_ts, local_text, ts

# aiosqlite logs every statement with its parameters at DEBUG, and parameters can be
# secrets (a webhook endpoint's secret): its log never goes below INFO
logging.getLogger("aiosqlite").setLevel(logging.INFO)

T = TypeVar("T")

__all__ = ["SqliteConnection", "fetch", "from_ts", "local_text", "select", "ts"]


async def connect(path: Path) -> aiosqlite.Connection:
    """A read connection in autocommit, rows by name."""
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = aiosqlite.Row
    try:
        await db.execute("PRAGMA busy_timeout=10000")
    except BaseException:
        await db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection) -> None:
    """Run the migrations not run yet, all in one transaction.

    The version is read inside the write transaction, so two processes
    opening a new database at once (a poller creating it, ``fleettui
    status`` reading it) never run a migration twice.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("PRAGMA user_version").fetchone()
        version = int(row[0]) if row else 0
        for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in sql.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _set_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL; SQLite answers "locked" at once, busy_timeout or not, while another
    connection switches the same new file, so retry for a while."""
    for attempt in range(200):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 199:
                raise
            time.sleep(0.05)


def _open_writer(path: Path) -> sqlite3.Connection:
    """The write connection, opened in the writer's thread: WAL, foreign keys, migrated."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=10000")
        _set_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        _migrate(db)
    except BaseException:
        db.close()
        raise
    return db


class _Job(Generic[T]):
    """One write transaction queued for the writer's thread, and the future its caller
    awaits."""

    __slots__ = ("abandoned", "done", "fn")

    def __init__(self, fn: Callable[[sqlite3.Connection], T], done: asyncio.Future[T]) -> None:
        self.fn = fn
        self.done = done
        #: set by the waiting coroutine when it is cancelled (see ``given_up``)
        self.abandoned = False

    def given_up(self) -> bool:
        """Whether the caller no longer waits: read by the writer's thread.

        ``Task.cancel()`` cancels the future the task awaits at once, in the
        caller's own step, so a transaction cancelled and then let go on (the
        lock it waited on freed, say) is seen as given up before its COMMIT,
        not only once the cancelled task has had its next turn of the loop.
        """
        return self.abandoned or self.done.cancelled()


def _settle(done: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    """In the loop: hand a transaction's outcome to its caller, if it still waits."""
    if done.done():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)  # type: ignore[arg-type]  # T when there is no error


class Writer:
    """The one write connection, on a thread of its own; a transaction runs there whole.

    A write method hands ``transaction`` a plain function of a ``sqlite3``
    connection; the thread runs BEGIN IMMEDIATE, the function and COMMIT in
    one go (ROLLBACK if it raises), so a write costs one hop between the
    event loop and the thread however many statements it has, and nothing
    running in the loop can ever see, or wait on, a transaction half done.
    Transactions run one at a time, in the order they were asked for.

    Cancelling the coroutine that waits on a transaction abandons it: one not
    begun yet never runs, one in progress is rolled back instead of committed.
    (One cancelled while its COMMIT runs is committed: that race has no other
    way out.)
    """

    def __init__(self, db: sqlite3.Connection, thread: ThreadPoolExecutor) -> None:
        self._db = db
        self._thread = thread

    @classmethod
    async def open(cls, path: Path) -> Writer:
        """Open, set up and migrate the database's write connection."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleettui-store-writer")
        try:
            db = await asyncio.get_running_loop().run_in_executor(thread, _open_writer, path)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(db, thread)

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one write transaction on the writer's thread; its result."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        job = _Job(fn, done)
        self._thread.submit(self._run, job, loop)
        try:
            return await done
        except asyncio.CancelledError:
            job.abandoned = True
            raise

    def _run(self, job: _Job[T], loop: asyncio.AbstractEventLoop) -> None:
        """In the writer's thread: the job's transaction, its outcome sent to the loop."""
        try:
            result = self._commit(job)
        except BaseException as e:  # the caller's to see (or nobody's, if it gave up)
            outcome: tuple[T | None, BaseException | None] = (None, e)
        else:
            outcome = (result, None)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody left to tell
            loop.call_soon_threadsafe(_settle, job.done, *outcome)

    def _commit(self, job: _Job[T]) -> T:
        """The job's transaction, committed unless it failed or its caller gave up on it."""
        if job.given_up():
            raise _Abandoned
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            result = job.fn(db)
            if job.given_up():
                raise _Abandoned
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    async def close(self) -> None:
        """Close the connection once the transactions asked for before have run."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._db.close)
        self._thread.shutdown(wait=False)


class _Abandoned(Exception):
    """A transaction whose caller was cancelled: not committed (nobody sees this)."""


class SqliteConnection:
    """The SQLite database's two connections; every query mixin of SqliteStore builds on it.

    Two connections: every write transaction goes through the writer
    (``_transaction``), one at a time (SQLite has one writer), each run whole on
    the writer's thread; every read goes through the reader, which is
    query-only and in autocommit, so it sees what is committed and nothing
    else. With one shared connection a read made while another coroutine's
    transaction was open saw rows that were then rolled back (the control
    room's event tail took a rolled-back event's id and skipped the next real
    one, which got the same id).
    """

    def __init__(self, writer: Writer, reader: aiosqlite.Connection, path: Path) -> None:
        self._writer = writer
        #: the read connection (the name every read method uses)
        self._db = reader
        self.path = path
        #: told the device ids of each request queued through this object (see Store)
        self._queue_listeners: list[Callable[[Sequence[str]], None]] = []

    @classmethod
    async def open(cls, path: str | Path) -> Self:
        """Open (creating if needed, readable by its owner only) and migrate."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        writer = await Writer.open(path)
        try:
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
        """Close both connections (after the writes asked for before)."""
        await self._db.close()
        await self._writer.close()

    async def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` as one write transaction (see ``Writer``); what it writes is seen by
        reads once it commits, not before."""
        return await self._writer.transaction(fn)

    async def schema_version(self) -> int:
        """How many migrations have run."""
        row = await (await self._db.execute("PRAGMA user_version")).fetchone()
        return int(row[0]) if row else 0


async def fetch(db: aiosqlite.Connection, sql: str, args: Sequence[Any] = ()) -> list[Any]:
    """Every row a statement answers, on the reader."""
    return list(await db.execute_fetchall(sql, args))


def select(db: sqlite3.Connection, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
    """Every row a statement answers, inside a write transaction."""
    return db.execute(sql, args).fetchall()

