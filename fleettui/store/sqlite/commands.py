"""The command queue: requests (idempotent), their per-device commands, and results."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
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
    WebhookEvent,
)
from fleettui.store.errors import IdempotencyConflict
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, select, ts
from fleettui.store.sqlite.events import write_event

log = logging.getLogger(__name__)

COMMAND_COLUMNS = (
    "id, request_id, device_id, command, params, state, attempts, result, error, created_at,"
    " updated_at, expires_at"
)
#: how long an idempotency key guards against a repeated request
IDEMPOTENCY_WINDOW = timedelta(days=7)


class CommandQueries(SqliteConnection):
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
                    created = from_ts(old["created_at"])
                    if created is not None and now - created > IDEMPOTENCY_WINDOW:
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
            write_event(
                db, now, EventKind.COMMAND_QUEUED,
                f"{command} queued for {target_kind} {target} ({len(device_ids)} device(s))",
                site_id=target if target_kind == "site" else None,
                device_id=target if target_kind == "device" else None,
                data={"request_id": request_id, "command": command, "source": source},
            )
            request = read_request(db, request_id)
            assert request is not None
            return Submission(request, True)
        submission = await self._transaction(write)
        if submission.created:
            for listener in list(self._queue_listeners):
                try:
                    listener(device_ids)
                except Exception:
                    log.exception("command queue listener failed")
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
                    "UPDATE commands SET state = 'expired', updated_at = ?,"
                    " error = 'time to live ran out before the device could take it'"
                    " WHERE id = ?",
                    (ts(now), row["id"]),
                )
                write_event(
                    db, now, EventKind.COMMAND_EXPIRED, f"{device_id}: {row['command']} expired",
                    device_id=device_id, data={"command_id": row["id"]},
                )
            return select(
                db,
                f"SELECT {COMMAND_COLUMNS} FROM commands WHERE device_id = ? AND state = 'queued'"
                " ORDER BY id",
                (device_id,),
            )
        return [command_of_row(r) for r in await self._transaction(write)]

    def add_queue_listener(self, listener: Callable[[Sequence[str]], None]) -> None:
        """Call ``listener`` with the device ids of each request queued here, once committed."""
        self._queue_listeners.append(listener)

    def remove_queue_listener(self, listener: Callable[[Sequence[str]], None]) -> None:
        """Stop calling a listener added by ``add_queue_listener``."""
        if listener in self._queue_listeners:
            self._queue_listeners.remove(listener)

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
            message = f"{command.device_id}: {command.command} {state.value}"
            if error:
                message += f": {error}"
            if state in (CommandState.DONE, CommandState.FAILED):
                kind = (WebhookEvent.COMMAND_COMPLETED if state is CommandState.DONE
                        else WebhookEvent.COMMAND_FAILED)
                payload = {
                    "event": kind,
                    "command": {"id": command.id, "request_id": command.request_id,
                                "device_id": command.device_id, "command": command.command,
                                "status": state.value, "result": result, "error": error or None},
                    "timestamp": ts(now),
                }
                db.execute(
                    "INSERT INTO webhook_outbox (event_type, device_id, payload, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (kind, command.device_id, json.dumps(payload), ts(now)),
                )
            return write_event(
                db, now, EventKind.for_command(state), message, device_id=command.device_id,
                data={"command_id": command.id, "request_id": command.request_id,
                "command": command.command, "result": result, "error": error},
            )
        return await self._transaction(write)

    async def interrupt_sent_commands(self, now: datetime) -> int:
        """Commands left 'sent' by a poller that died: failed, never run a second time.

        Not those of push devices: their lines are with the device, whose results
        reach whichever poller listens next."""
        def write(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "UPDATE commands SET state = 'failed', updated_at = ?, error = 'interrupted:"
                " the poller stopped while it ran; it may or may not have taken effect'"
                " WHERE state = 'sent'"
                " AND device_id NOT IN (SELECT id FROM devices WHERE transport = 'push')",
                (ts(now),),
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
