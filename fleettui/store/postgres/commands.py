"""Remote commands: requests (idempotent), their per-device commands, the queue signal.

Several processes queue, start and finish commands on one database at once
(API servers, the CLI, pollers, push listeners), so every write that depends
on what it read decides in the statement that writes: an idempotency key is
claimed by ``INSERT ... ON CONFLICT DO NOTHING`` (the holder's row then read
``FOR UPDATE``), a command is expired, started or finished by an ``UPDATE``
whose ``WHERE`` names the states it may leave, so that none is expired twice
or brought back once another process has ended it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from fleettui.domain import Command, CommandRequest, CommandState, Event, EventKind, Submission
from fleettui.store.errors import IdempotencyConflict
from fleettui.store.postgres.connection import Db, PostgresConnection, append_lock
from fleettui.store.postgres.events import write_event
from fleettui.store.postgres.outbox import write_outbox
from fleettui.store.shared.command_facts import (
    EXPIRED_ERROR,
    INTERRUPTED_ERROR,
    expired_message,
    finished_data,
    finished_message,
    finished_webhook,
    key_forgotten,
    late_message,
    queued_fact,
)
from fleettui.store.shared.queue_signal import QueueSignal

COMMAND_COLUMNS = (
    "id, request_id, device_id, command, params, state, attempts, result, error, created_at,"
    " updated_at, expires_at"
)
REQUEST_COLUMNS = "id, idempotency_key, target, target_kind, command, params, source, created_at"
#: the states a command has ended in (a write never takes it out of one)
_FINAL = "('done', 'failed', 'expired')"
#: how many times a submission tries to claim a key another process keeps letting go
_CLAIM_TRIES = 3

_INSERT_REQUEST = (
    "INSERT INTO command_requests (idempotency_key, target, target_kind, command, params,"
    " fingerprint, source, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
)
#: one command per device, in the order given (ids follow it), in one statement
_INSERT_COMMANDS = (
    "INSERT INTO commands (request_id, device_id, command, params, created_at, updated_at,"
    " expires_at) SELECT $1::bigint, d, $3::text, $4::jsonb, $5::timestamptz, $5,"
    " $6::timestamptz"
    " FROM unnest($2::text[]) WITH ORDINALITY AS t(d, n) ORDER BY n"
)
_QUEUED = (f"SELECT {COMMAND_COLUMNS} FROM commands WHERE device_id = $1 AND state = 'queued'"
           " ORDER BY id")


class CommandQueries(QueueSignal, PostgresConnection):
    """Commands queued, taken by the poller, finished; requests read back."""

    async def submit_command(
        self,
        *,
        target: str,
        target_kind: str,
        device_ids: Sequence[str],
        command: str,
        params: dict[str, Any],
        fingerprint: str,
        source: str,
        now: datetime,
        idempotency_key: str | None = None,
        ttl: timedelta | None = None,
    ) -> Submission:
        """Queue one command per device as one request (see ``Store.submit_command``).

        Two processes submitting one key at once: the append lock (taken first,
        for the event) already runs them one after the other, and the claim
        does not lean on it: ``ON CONFLICT DO NOTHING`` makes the second
        ``INSERT`` wait for the first to commit and insert nothing; the second
        then reads the first's request and answers it (created False) or
        IdempotencyConflict, never a unique violation."""
        request_row = (target, target_kind, command, params, fingerprint, source, now)

        async def write(db: Db) -> Submission:
            await append_lock(db)
            for _ in range(_CLAIM_TRIES):
                request_id = await db.fetchval(_INSERT_REQUEST, idempotency_key, *request_row)
                if request_id is not None:
                    break
                assert idempotency_key is not None  # only a key conflicts
                held = await db.fetchrow(
                    "SELECT id, fingerprint, created_at FROM command_requests"
                    " WHERE idempotency_key = $1 FOR UPDATE", idempotency_key)
                if held is None:
                    continue  # let go meanwhile: claim it again
                if key_forgotten(held["created_at"], now):
                    await db.execute("UPDATE command_requests SET idempotency_key = NULL"
                                     " WHERE id = $1", held["id"])
                    continue
                if held["fingerprint"] != fingerprint:
                    raise IdempotencyConflict(idempotency_key)
                return Submission(await _must_load(db, held["id"]), False)
            else:
                raise RuntimeError(f"idempotency key {idempotency_key!r} could not be claimed")
            await db.execute(_INSERT_COMMANDS, request_id, list(device_ids), command, params,
                             now, now + ttl if ttl is not None else None)
            fact = queued_fact(request_id=request_id, target=target, target_kind=target_kind,
                               command=command, devices=len(device_ids), source=source)
            await write_event(db, now, EventKind.COMMAND_QUEUED, fact.message,
                              site_id=fact.site_id, device_id=fact.device_id, data=fact.data)
            return Submission(await _must_load(db, request_id), True)

        submission = await self._transaction(write)
        if submission.created:
            self._tell_queued(device_ids)
        return submission

    async def command_request(self, request_id: int) -> CommandRequest | None:
        """See ``Store.command_request``."""
        async with self._pool.acquire() as db:
            return await load_request(db, request_id)

    async def due_commands(self, device_id: str, now: datetime) -> list[Command]:
        """A device's queued commands in order, after expiring those past their time to live.

        Read first; only a queue holding an expired command takes a transaction (and the
        append lock, for the events). The ``UPDATE`` expires what is still queued, so
        two processes reading one queue at once expire each command once."""
        rows = await self._fetch(_QUEUED, device_id)
        if any(r["expires_at"] is not None and r["expires_at"] <= now for r in rows):
            async def write(db: Db) -> list[asyncpg.Record]:
                await append_lock(db)
                expired = await db.fetch(
                    "UPDATE commands SET state = 'expired', updated_at = $2, error = $3"
                    " WHERE device_id = $1 AND state = 'queued' AND expires_at <= $2"
                    " RETURNING id, command", device_id, now, EXPIRED_ERROR)
                for r in sorted(expired, key=lambda r: int(r["id"])):
                    await write_event(db, now, EventKind.COMMAND_EXPIRED,
                                      expired_message(device_id, r["command"]),
                                      device_id=device_id, data={"command_id": r["id"]})
                return await db.fetch(_QUEUED, device_id)
            rows = await self._transaction(write)
        return [command_of_row(r) for r in rows]

    async def start_command(self, command_id: int, now: datetime) -> None:
        """The poller is about to run a command on its device (one another process has
        ended stays ended)."""
        async def write(db: Db) -> None:
            await db.execute(
                "UPDATE commands SET state = 'sent', attempts = attempts + 1, updated_at = $2"
                f" WHERE id = $1 AND state NOT IN {_FINAL}", command_id, now)
        await self._transaction(write)

    async def finish_command(
        self,
        command: Command,
        state: CommandState,
        now: datetime,
        *,
        result: dict[str, Any] | None = None,
        error: str = "",
    ) -> Event:
        """A command ended (done or failed): state, result, its webhook fact and an event, in
        one transaction (see ``Store.finish_command``).

        A command another process ended first (a new poller failed it as interrupted,
        say) keeps what that one recorded and sends no second webhook fact; the event
        still tells this end, marked not recorded."""
        async def write(db: Db) -> Event:
            await append_lock(db)
            ended = await db.fetchval(
                "UPDATE commands SET state = $2, result = $3, error = $4, updated_at = $5"
                f" WHERE id = $1 AND state NOT IN {_FINAL} RETURNING id",
                command.id, state.value, result, error, now)
            data = finished_data(command, result, error)
            if ended is None:
                recorded = await db.fetchval("SELECT state FROM commands WHERE id = $1",
                                             command.id)
                return await write_event(
                    db, now, EventKind.for_command(state),
                    late_message(command, state, error, recorded), device_id=command.device_id,
                    data={**data, "recorded": recorded})
            fact = finished_webhook(command, state, now, result, error)
            if fact is not None:
                await write_outbox(db, fact[0], command.device_id, fact[1], now)
            return await write_event(db, now, EventKind.for_command(state),
                                     finished_message(command, state, error),
                                     device_id=command.device_id, data=data)
        return await self._transaction(write)

    async def interrupt_sent_commands(self, now: datetime,
                                      site_ids: Sequence[str] | None = None) -> int:
        """See ``Store.interrupt_sent_commands``: those of push devices stay sent (their
        lines are with the device, whose results reach whichever listener hears it)."""
        async def write(db: Db) -> int:
            return len(await db.fetch(
                "UPDATE commands SET state = 'failed', updated_at = $1, error = $2"
                " WHERE state = 'sent'"
                " AND device_id NOT IN (SELECT id FROM devices WHERE transport = 'push')"
                " AND ($3::text[] IS NULL OR device_id IN"
                "      (SELECT id FROM devices WHERE site_id = ANY($3::text[])))"
                " RETURNING id", now, INTERRUPTED_ERROR,
                None if site_ids is None else list(site_ids)))
        return await self._transaction(write)

    async def command(self, command_id: int) -> Command | None:
        """See ``Store.command``."""
        row = await self._fetchrow(f"SELECT {COMMAND_COLUMNS} FROM commands WHERE id = $1",
                                   command_id)
        return command_of_row(row) if row is not None else None

    async def commands(
        self, *, device_id: str | None = None, limit: int = 100
    ) -> list[Command]:
        """See ``Store.commands``."""
        if device_id is None:
            rows = await self._fetch(
                f"SELECT {COMMAND_COLUMNS} FROM commands ORDER BY id DESC LIMIT $1", limit)
        else:
            rows = await self._fetch(
                f"SELECT {COMMAND_COLUMNS} FROM commands WHERE device_id = $1"
                " ORDER BY id DESC LIMIT $2", device_id, limit)
        return [command_of_row(r) for r in rows]


_REQUEST = f"SELECT {REQUEST_COLUMNS} FROM command_requests WHERE id = $1"
_REQUEST_COMMANDS = f"SELECT {COMMAND_COLUMNS} FROM commands WHERE request_id = $1 ORDER BY id"


async def load_request(db: Db, request_id: int) -> CommandRequest | None:
    """A request with its commands, read on ``db`` (a pooled connection, in a transaction
    or not); None if there is none."""
    found = await db.fetchrow(_REQUEST, request_id)
    if found is None:
        return None
    return request_of_row(found, await db.fetch(_REQUEST_COMMANDS, request_id))


async def _must_load(db: Db, request_id: int) -> CommandRequest:
    """A request this transaction holds (just inserted, or locked)."""
    request = await load_request(db, request_id)
    assert request is not None
    return request


def request_of_row(r: asyncpg.Record, commands: Sequence[asyncpg.Record]) -> CommandRequest:
    """A command_requests row (``REQUEST_COLUMNS``) and its commands rows
    (``COMMAND_COLUMNS``, in order) as a CommandRequest."""
    return CommandRequest(
        id=r["id"], target=r["target"], target_kind=r["target_kind"], command=r["command"],
        params=r["params"], source=r["source"], created_at=r["created_at"],
        idempotency_key=r["idempotency_key"], commands=[command_of_row(c) for c in commands],
    )


def command_of_row(r: asyncpg.Record) -> Command:
    """A commands row (``COMMAND_COLUMNS``) as a Command."""
    return Command(
        id=r["id"], request_id=r["request_id"], device_id=r["device_id"], command=r["command"],
        params=r["params"], state=CommandState(r["state"]), attempts=r["attempts"],
        created_at=r["created_at"], updated_at=r["updated_at"], expires_at=r["expires_at"],
        result=r["result"], error=r["error"],
    )


__all__ = ["COMMAND_COLUMNS", "REQUEST_COLUMNS", "CommandQueries", "command_of_row",
           "load_request", "request_of_row"]
