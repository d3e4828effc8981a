"""The PostgreSQL store's connections: a pool, opened and migrated; transactions and reads.

asyncpg's pool: every write method runs one transaction on a connection of
the pool (``_transaction``); every read runs on any connection, outside a
transaction, so it sees what is committed and nothing else (READ COMMITTED).
Cancelling the coroutine that waits on a transaction rolls it back, as the
SQLite writer does with a transaction not yet committed. The lease keeper's
writes run on a connection of their own (``_lease_transaction``), so a burst
of punches or deliveries holding the whole pool never delays a renewal.

Several processes write one database at once (pollers, API servers, push
listeners), so ids are not handed out in commit order by themselves: a
sequence value taken by a transaction that commits later would be skipped
by a view tailing ``events_after(last_id)`` or a webhook cursor. Every
transaction that writes punches or appends to the event log or the webhook
outbox takes ``append_lock`` as its first statement, which makes commit
order and id order the same for those tables. First, so that no two such
transactions can each hold a row the other waits for: they run one after the
other, and a transaction that appends nothing never waits on the lock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Self, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from fleettui.store.postgres.partitions import Partitions
from fleettui.store.postgres.schema import MIGRATIONS
from fleettui.store.where import display_url

T = TypeVar("T")

#: a connection of the pool, as a transaction function is handed it
if TYPE_CHECKING:
    Db: TypeAlias = PoolConnectionProxy[asyncpg.Record]
else:
    Db = PoolConnectionProxy

#: advisory lock keys (pg_advisory_xact_lock takes a bigint): arbitrary, fleettui's own
MIGRATE_LOCK = 0x666C_7475_0001
APPEND_LOCK = 0x666C_7475_0002

#: connections a store object keeps open at most (a poller's writes are few and short)
POOL_SIZE = 8


def _jsonb_out(value: Any) -> bytes:
    """A Python value as jsonb's binary format (version 1)."""
    return b"\x01" + json.dumps(value).encode()


def _jsonb_in(data: bytes) -> Any:
    """jsonb's binary format (version 1) as a Python value."""
    return json.loads(data[1:])


async def _setup(conn: asyncpg.Connection) -> None:
    """Each pooled connection: jsonb in and out as Python values, UTC for every time."""
    # binary (a version byte, then the JSON text): COPY, which migrate-store uses, speaks
    # only the binary format
    await conn.set_type_codec("jsonb", encoder=_jsonb_out, decoder=_jsonb_in,
                              schema="pg_catalog", format="binary")
    await conn.execute("SET TIME ZONE 'UTC'")


async def _migrate(conn: Db) -> None:
    """Run the migrations not run yet, in one transaction under the migration lock (two
    processes opening a new database at once never run one twice)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATE_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        for number, sql in enumerate(MIGRATIONS[done:], start=done + 1):
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", number)


async def append_lock(conn: Db) -> None:
    """Take the append lock for the rest of this transaction: the first statement of every
    transaction that writes ``punches``, ``events`` or ``webhook_outbox`` (see the
    module's docstring)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)


class PostgresConnection:
    """The database's pool; every query mixin of PostgresStore builds on it."""

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self._pool = pool
        #: the address to connect to (with its password, if any: never shown)
        self._url = url
        #: where the store is, fit to print (never a password)
        self.url = display_url(url)
        #: told the device ids of each request queued through this object (see Store)
        self._queue_listeners: list[Callable[[Sequence[str]], None]] = []
        #: the months of punches known to have their partition
        self._partitions = Partitions()
        #: a connection of its own for the lease keeper (opened on its first round): a
        #: burst of writes holding the pool must not make a poller miss its renewals
        self._lease_pool: asyncpg.Pool | None = None
        self._lease_pool_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str) -> Self:
        """Connect to the database at ``url`` and migrate it; the database must exist.

        Errors name the database without its password."""
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE,
                                             init=_setup)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise StoreUnreachable(display_url(url), e) from None
        try:
            async with pool.acquire() as conn:
                await _migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, url)

    async def close(self) -> None:
        """Close the pools once the transactions in progress have ended."""
        if self._lease_pool is not None:
            await self._lease_pool.close()
        await self._pool.close()

    async def _lease_transaction(self, fn: Callable[[Db], Awaitable[T]]) -> T:
        """Run ``fn`` in one transaction on the lease keeper's own connection."""
        if self._lease_pool is None:
            async with self._lease_pool_lock:
                if self._lease_pool is None:
                    try:
                        self._lease_pool = await asyncpg.create_pool(
                            self._url, min_size=1, max_size=1, init=_setup)
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                        raise StoreUnreachable(self.url, e) from None
        async with self._lease_pool.acquire() as conn, conn.transaction():
            return await fn(conn)

    async def _transaction(self, fn: Callable[[Db], Awaitable[T]]) -> T:
        """Run ``fn`` in one transaction on a connection of the pool; what it writes is seen
        by reads once it commits, not before."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await fn(conn)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Every row a statement answers, outside any transaction (committed data only)."""
        return await self._pool.fetch(sql, *args)

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """The first row a statement answers, or None."""
        return await self._pool.fetchrow(sql, *args)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        """The first column of the first row a statement answers (None if no row)."""
        return await self._pool.fetchval(sql, *args)

    async def schema_version(self) -> int:
        """How many migrations have run."""
        return int(await self._fetchval(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))


class StoreUnreachable(ConnectionError):
    """The PostgreSQL server cannot be reached or refused us (the URL shown without its
    password)."""

    def __init__(self, url: str, error: BaseException) -> None:
        reason = str(error) or type(error).__name__
        super().__init__(f"cannot open the database at {url}: {reason}")
        self.url = url
