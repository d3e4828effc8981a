"""The command queue: requests (idempotent), their per-device commands, and results."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from fleettui.domain import (
    Command,
    CommandRequest,
    CommandState,
    Event,
    EventKind,
    Submission,
)
from fleettui.store.errors import IdempotencyConflict
from fleettui.store.shared.command_facts import (
    EXPIRED_ERROR,
    INTERRUPTED_ERROR,
    expired_message,
    finished_data,
    finished_message,
    finished_webhook,
    key_forgotten,
    queued_fact,
)
from fleettui.store.shared.queue_signal import QueueSignal
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, select, ts
from fleettui.store.sqlite.events import write_event

COMMAND_COLUMNS = (
    "id, request_id, device_id, command, params, state, attempts, result, error, created_at,"
    " updated_at, expires_at"
)


class CommandQueries(QueueSignal, SqliteConnection):
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
        """Queue one command per device as one request.

        With an idempotency key already used for the same request, nothing is
        queued and the existing request comes back (created False); used for a
        different request, IdempotencyConflict. Keys older than
        IDEMPOTENCY_WINDOW are forgotten, so the key can be used again.
        """
        def write(db: sqlite3.Connection) -> Submission:
            if idempotency_key is not None:
                rows = select(
                    db,
                    "SELECT id, fingerprint, created_at FROM command_requests"
                    " WHERE idempotency_key = ?",
                    (idempotency_key,),
                )
                if rows:
                    old = rows[0]
                    if key_forgotten(from_ts(old["created_at"]), now):
                        db.execute(
                            "UPDATE command_requests SET idempotency_key = NULL WHERE id = ?",
                            (old["id"],),
                        )
                    elif old["fingerprint"] != fingerprint:
                        raise IdempotencyConflict(idempotency_key)
                    else:
                        request = read_request(db, int(old["id"]))
                        assert request is not None
                        return Submission(request, False)
            cur = db.execute(
                "INSERT INTO command_requests (idempotency_key, target, target_kind, command,"
                " params, fingerprint, source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (idempotency_key, target, target_kind, command, json.dumps(params),
                 fingerprint, source, ts(now)),
            )
            request_id = int(cur.lastrowid or 0)
            expires = ts(now + ttl) if ttl is not None else None
            db.executemany(
                "INSERT INTO commands (request_id, device_id, command, params, created_at,"
                " updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
              (request_id, d, command, json.dumps(params), ts(now), ts(now), expires)
              for d in device_ids
                ],
            )
            fact = queued_fact(request_id=request_id, target=target, target_kind=target_kind,
                               command=command, devices=len(device_ids), source=source)
            write_event(db, now, EventKind.COMMAND_QUEUED, fact.message, site_id=fact.site_id,
                        device_id=fact.device_id, data=fact.data)
            request = read_request(db, request_id)
            assert request is not None
            return Submission(request, True)
        submission = await self._transaction(write)
        if submission.created:
            self._tell_queued(device_ids)
        return submission

    async def command_request(self, request_id: int) -> CommandRequest | None:
        """A request with its commands."""
        return await load_request(self._db, request_id)

    async def due_commands(self, device_id: str, now: datetime) -> list[Command]:
        """A device's queued commands in order, after expiring those past their time to live."""
        def write(db: sqlite3.Connection) -> list[Any]:
            expired = select(
                db,
                "SELECT id, command FROM commands WHERE device_id = ? AND state = 'queued'"
                " AND expires_at IS NOT NULL AND expires_at <= ?",
                (device_id, ts(now)),
            )
            for row in expired:
                db.execute(
                    "UPDATE commands SET state = 'expired', updated_at = ?, error = ?"
                    " WHERE id = ?",
                    (ts(now), EXPIRED_ERROR, row["id"]),
                )
                write_event(
                    db, now, EventKind.COMMAND_EXPIRED, expired_message(device_id, row["command"]),
                    device_id=device_id, data={"command_id": row["id"]},
                )
            return select(
                db,
                f"SELECT {COMMAND_COLUMNS} FROM commands WHERE device_id = ? AND state = 'queued'"
                " ORDER BY id",
                (device_id,),
            )
        return [command_of_row(r) for r in await self._transaction(write)]

    async def start_command(self, command_id: int, now: datetime) -> None:
        """The poller is about to run a command on its device."""
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE commands SET state = 'sent', attempts = attempts + 1, updated_at = ?"
                " WHERE id = ?",
                (ts(now), command_id),
            )
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
        """A command ended (done or failed): state, result and an event, in one transaction."""
        def write(db: sqlite3.Connection) -> Event:
            db.execute(
                "UPDATE commands SET state = ?, result = ?, error = ?, updated_at = ? WHERE id = ?",
                (state.value, json.dumps(result) if result is not None else None, error,
                 ts(now), command.id),
            )
            fact = finished_webhook(command, state, now, result, error)
            if fact is not None:
                kind, payload = fact
                db.execute(
                    "INSERT INTO webhook_outbox (event_type, device_id, payload, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (kind, command.device_id, json.dumps(payload), ts(now)),
                )
            return write_event(
                db, now, EventKind.for_command(state), finished_message(command, state, error),
                device_id=command.device_id, data=finished_data(command, result, error),
            )
        return await self._transaction(write)

    async def interrupt_sent_commands(self, now: datetime,
                                      site_ids: Sequence[str] | None = None) -> int:
        """Commands left 'sent' by a poller that died: failed, never run a second time (of
        the devices of ``site_ids`` only, if given).

        Not those of push devices: their lines are with the device, whose results
        reach whichever poller listens next."""
        sites = None if site_ids is None else json.dumps(list(site_ids))
        def write(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "UPDATE commands SET state = 'failed', updated_at = ?, error = ?"
                " WHERE state = 'sent'"
                " AND device_id NOT IN (SELECT id FROM devices WHERE transport = 'push')"
                " AND (? IS NULL OR device_id IN (SELECT id FROM devices WHERE site_id IN"
                "      (SELECT value FROM json_each(?))))",
                (ts(now), INTERRUPTED_ERROR, sites, sites),
            )
            return cur.rowcount
        return await self._transaction(write)

    async def command(self, command_id: int) -> Command | None:
        """One command, or None."""
        rows = await fetch(self._db, f"SELECT {COMMAND_COLUMNS} FROM commands WHERE id = ?",
                           (command_id,))
        return command_of_row(rows[0]) if rows else None

    async def commands(
        self, *, device_id: str | None = None, limit: int = 100
    ) -> list[Command]:
        """The newest commands (of one device, if given), newest first."""
        sql = f"SELECT {COMMAND_COLUMNS} FROM commands"
        args: list[Any] = []
        if device_id is not None:
            sql += " WHERE device_id = ?"
            args.append(device_id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [command_of_row(r) for r in await fetch(self._db, sql, args)]


_REQUEST = ("SELECT id, idempotency_key, target, target_kind, command, params, source,"
            " created_at FROM command_requests WHERE id = ?")
_REQUEST_COMMANDS = f"SELECT {COMMAND_COLUMNS} FROM commands WHERE request_id = ? ORDER BY id"


async def load_request(db: aiosqlite.Connection, request_id: int) -> CommandRequest | None:
    """A request with its commands, read on the reader ``db``; None if there is none."""
    found = await fetch(db, _REQUEST, (request_id,))
    if not found:
        return None
    return _request(found[0], await fetch(db, _REQUEST_COMMANDS, (request_id,)))


def read_request(db: sqlite3.Connection, request_id: int) -> CommandRequest | None:
    """A request with its commands as they stand inside a write transaction, or None."""
    found = select(db, _REQUEST, (request_id,))
    if not found:
        return None
    return _request(found[0], select(db, _REQUEST_COMMANDS, (request_id,)))


def _request(r: Any, commands: Sequence[Any]) -> CommandRequest:
    """A command_requests row and its commands rows as a CommandRequest."""
    return CommandRequest(
        id=r["id"], target=r["target"], target_kind=r["target_kind"], command=r["command"],
        params=json.loads(r["params"]), source=r["source"],
        created_at=from_ts(r["created_at"]),  # type: ignore[arg-type]
        idempotency_key=r["idempotency_key"], commands=[command_of_row(c) for c in commands],
    )


def command_of_row(r: Any) -> Command:
    """A commands row as a Command."""
    return Command(
        id=r["id"], request_id=r["request_id"], device_id=r["device_id"], command=r["command"],
        params=json.loads(r["params"]), state=CommandState(r["state"]), attempts=r["attempts"],
        created_at=from_ts(r["created_at"]),  # type: ignore[arg-type]
        updated_at=from_ts(r["updated_at"]),  # type: ignore[arg-type]
        expires_at=from_ts(r["expires_at"]),
        result=json.loads(r["result"]) if r["result"] else None, error=r["error"],
    )
