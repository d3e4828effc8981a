"""Push devices (ADMS / iclock): their contacts, upload stamps, command lines, and the
serials that called without being known.

Several push listeners may hear one device (it calls whichever server its
address reaches), so the writes that decide on what they read do it in the
statement: a line is answered, sent or expired by an ``UPDATE`` whose
``WHERE`` names the states it may leave (a result posted twice, or to two
servers at once, is taken once), and batches touch their rows in key order
(two listeners writing the same devices' contacts wait for each other rather
than deadlock).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from fleettui.domain import PendingDevice, PushContact, PushLine, PushStamps, PushUser
from fleettui.store.postgres.connection import Db, PostgresConnection
from fleettui.store.shared.push_limits import clip_pending, clip_stamp
from fleettui.store.shared.push_sql import STRANDED as _STRANDED

_LINE_COLUMNS = "id, command_id, device_id, text, state, return_code, result, sent_at"


class PushQueries(PostgresConnection):
    """What the push gateway keeps in the store between a device's calls."""

    async def record_push_contacts(self, contacts: Sequence[PushContact]) -> None:
        """Many devices' latest calls in one transaction (see
        ``Store.record_push_contacts``), in device order."""
        if not contacts:
            return
        rows = [(c.at, c.address, c.push_version, c.firmware, c.users, c.records,
                 c.records_cap, clip_stamp(c.attlog_stamp), clip_stamp(c.operlog_stamp),
                 c.device_id) for c in sorted(contacts, key=lambda c: c.device_id)]

        async def write(db: Db) -> None:
            await db.executemany(
                "UPDATE devices SET last_seen = GREATEST(last_seen, $1), push_address = $2,"
                " push_version = CASE WHEN $3 = '' THEN push_version ELSE $3 END,"
                " firmware = COALESCE($4, firmware), users = COALESCE($5, users),"
                " records = COALESCE($6, records), records_cap = COALESCE($7, records_cap),"
                " push_attlog_stamp = COALESCE($8, push_attlog_stamp),"
                " push_operlog_stamp = COALESCE($9, push_operlog_stamp)"
                " WHERE id = $10", rows)
        await self._transaction(write)

    async def push_stamps(self, device_id: str) -> PushStamps:
        """See ``Store.push_stamps``."""
        row = await self._fetchrow("SELECT push_attlog_stamp, push_operlog_stamp FROM devices"
                                   " WHERE id = $1", device_id)
        return PushStamps(str(row[0]), str(row[1])) if row else PushStamps("0", "0")

    async def devices_with_queued_commands(self) -> set[str]:
        """See ``Store.devices_with_queued_commands`` (the partial index of queued
        commands answers it)."""
        rows = await self._fetch("SELECT DISTINCT device_id FROM commands"
                                 " WHERE state = 'queued'")
        return {r[0] for r in rows}

    # users the device holds

    async def push_users(self, device_id: str) -> list[PushUser]:
        """See ``Store.push_users``: in pin order."""
        rows = await self._fetch("SELECT pin, name, privilege, card FROM push_users"
                                 " WHERE device_id = $1 ORDER BY pin", device_id)
        return [PushUser(r[0], r[1], r[2], r[3]) for r in rows]

    async def record_push_users(self, device_id: str, users: Sequence[PushUser],
                                removed: Sequence[str] = ()) -> None:
        """See ``Store.record_push_users``; written in pin order (two listeners
        writing one device's users wait for each other rather than deadlock)."""
        rows = [(device_id, u.pin, u.name, u.privilege, u.card)
                for u in sorted(users, key=lambda u: u.pin)]

        async def write(db: Db) -> None:
            if rows:
                await db.executemany(
                    "INSERT INTO push_users (device_id, pin, name, privilege, card)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id, pin) DO UPDATE SET"
                    " name = excluded.name, privilege = excluded.privilege,"
                    " card = excluded.card", rows)
            if removed:
                await db.execute("DELETE FROM push_users WHERE device_id = $1"
                                 " AND pin = ANY($2::text[])", device_id, list(removed))
        await self._transaction(write)

    # the lines that carry commands

    async def add_push_lines(self, command_id: int, device_id: str, texts: Sequence[str],
                             plan: dict[str, Any]) -> list[PushLine]:
        """The lines that carry a command to a push device, queued in order, and what the
        command reports once they are answered (see ``Store.add_push_lines``)."""
        async def write(db: Db) -> list[asyncpg.Record]:
            return await _add_lines(db, command_id, device_id, texts, plan)
        return [_line(r) for r in await self._transaction(write)]

    async def start_push_command(self, command_id: int, device_id: str, texts: Sequence[str],
                                 plan: dict[str, Any], now: datetime) -> list[PushLine] | None:
        """See ``Store.start_push_command``: the row lock of the ``UPDATE`` lets one caller
        through; the other finds the command no longer queued."""
        async def write(db: Db) -> list[asyncpg.Record] | None:
            done = await db.execute(
                "UPDATE commands SET state = 'sent', attempts = attempts + 1, updated_at = $2"
                " WHERE id = $1 AND state = 'queued'", command_id, now)
            if done != "UPDATE 1":
                return None
            return await _add_lines(db, command_id, device_id, texts, plan)
        rows = await self._transaction(write)
        return None if rows is None else [_line(r) for r in rows]

    async def stranded_push_commands(self, answered_before: datetime) -> dict[int, str]:
        """See ``Store.stranded_push_commands``."""
        rows = await self._fetch(_STRANDED, answered_before)
        return {r[0]: r[1] for r in rows}

    async def push_plan(self, command_id: int) -> dict[str, Any]:
        """See ``Store.push_plan``."""
        plan: dict[str, Any] | None = await self._fetchval(
            "SELECT push_plan FROM commands WHERE id = $1", command_id)
        return plan or {}

    async def push_lines(self, device_id: str, *, state: str) -> list[PushLine]:
        """See ``Store.push_lines``."""
        rows = await self._fetch(f"SELECT {_LINE_COLUMNS} FROM push_lines"
                                 " WHERE device_id = $1 AND state = $2 ORDER BY id",
                                 device_id, state)
        return [_line(r) for r in rows]

    async def push_lines_of(self, command_id: int) -> list[PushLine]:
        """See ``Store.push_lines_of``."""
        rows = await self._fetch(f"SELECT {_LINE_COLUMNS} FROM push_lines"
                                 " WHERE command_id = $1 ORDER BY id", command_id)
        return [_line(r) for r in rows]

    async def mark_push_lines_sent(self, line_ids: Sequence[int], now: datetime) -> list[int]:
        """Lines handed to the device in a getrequest answer: those still queued, whose
        ids are returned (two listeners answering one device at once hand each line to
        one of them)."""
        async def write(db: Db) -> list[int]:
            rows = await db.fetch(
                "UPDATE push_lines SET state = 'sent', sent_at = $1"
                " WHERE id = ANY($2::bigint[]) AND state = 'queued' RETURNING id",
                now, list(line_ids))
            return sorted(r[0] for r in rows)
        if not line_ids:
            return []
        return await self._transaction(write)

    async def push_last_seen(self) -> dict[str, datetime]:
        """See ``Store.push_last_seen``."""
        rows = await self._fetch("SELECT id, last_seen FROM devices WHERE transport = 'push'"
                                 " AND last_seen IS NOT NULL")
        return {r[0]: r[1] for r in rows}

    async def answer_push_line(self, device_id: str, line_id: int, code: int,
                               result: dict[str, str], now: datetime) -> PushLine | None:
        """A device's result for one of its lines; None when the id is not one of this
        device's lines awaiting a result. The ``UPDATE`` takes the result only from a
        line still awaiting one: the same result posted twice at once is taken once."""
        async def write(db: Db) -> asyncpg.Record | None:
            return await db.fetchrow(
                "UPDATE push_lines SET state = $1, return_code = $2, result = $3,"
                " answered_at = $4 WHERE id = $5 AND device_id = $6"
                f" AND state IN ('sent', 'queued') RETURNING {_LINE_COLUMNS}",
                "done" if code == 0 else "failed", code, result, now, line_id, device_id)
        row = await self._transaction(write)
        return _line(row) if row is not None else None

    async def expire_push_lines(self, sent_before: datetime, now: datetime) -> dict[int, str]:
        """Lines sent before ``sent_before`` and never answered: failed ("not answered");
        returns the commands they belong to, with their devices (a line answered
        meanwhile keeps its answer)."""
        async def write(db: Db) -> list[asyncpg.Record]:
            return await db.fetch(
                "UPDATE push_lines SET state = 'failed', answered_at = $2"
                " WHERE state = 'sent' AND sent_at < $1 RETURNING id, command_id, device_id",
                sent_before, now)
        rows = sorted(await self._transaction(write), key=lambda r: int(r["id"]))
        return {r["command_id"]: r["device_id"] for r in rows}

    async def drop_push_lines(self, command_id: int) -> int:
        """Lines of a command that ended without them (expired, failed): never sent now."""
        async def write(db: Db) -> int:
            return len(await db.fetch(
                "UPDATE push_lines SET state = 'failed' WHERE command_id = $1"
                " AND state IN ('queued', 'sent') RETURNING id", command_id))
        return await self._transaction(write)

    # serials not known yet

    async def note_pending_push(self, serial: str, address: str, firmware: str,
                                push_version: str, now: datetime) -> None:
        """See ``Store.note_pending_push``: one row per serial, whoever hears it."""
        firmware, push_version = clip_pending(firmware, push_version)

        async def write(db: Db) -> None:
            await db.execute(
                "INSERT INTO push_pending AS p (serial, address, firmware, push_version,"
                " first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $5)"
                " ON CONFLICT (serial) DO UPDATE SET address = excluded.address,"
                " firmware = CASE WHEN excluded.firmware = '' THEN p.firmware"
                " ELSE excluded.firmware END,"
                " push_version = CASE WHEN excluded.push_version = '' THEN p.push_version"
                " ELSE excluded.push_version END,"
                " last_seen = excluded.last_seen, requests = p.requests + 1",
                serial, address, firmware, push_version, now)
        await self._transaction(write)

    async def pending_push_devices(self) -> list[PendingDevice]:
        """See ``Store.pending_push_devices``."""
        rows = await self._fetch("SELECT serial, address, firmware, push_version,"
                                 " first_seen, last_seen, requests FROM push_pending"
                                 " ORDER BY last_seen DESC, serial")
        return [PendingDevice(r["serial"], r["address"], r["firmware"], r["push_version"],
                              r["first_seen"], r["last_seen"], r["requests"]) for r in rows]

    async def forget_pending_push(self, serial: str) -> bool:
        """See ``Store.forget_pending_push`` (of two processes forgetting one serial at
        once, one is told True)."""
        async def write(db: Db) -> bool:
            return await db.fetchval("DELETE FROM push_pending WHERE serial = $1"
                                     " RETURNING serial", serial) is not None
        return await self._transaction(write)


async def _add_lines(db: Db, command_id: int, device_id: str, texts: Sequence[str],
                     plan: dict[str, Any]) -> list[asyncpg.Record]:
    """Queue a command's lines and what it reports (inside the caller's transaction)."""
    await db.execute("UPDATE commands SET push_plan = $1 WHERE id = $2", plan, command_id)
    await db.execute(
        "INSERT INTO push_lines (command_id, device_id, text)"
        " SELECT $1::bigint, $2::text, t FROM unnest($3::text[]) WITH ORDINALITY"
        " AS u(t, n) ORDER BY n", command_id, device_id, list(texts))
    return await db.fetch(f"SELECT {_LINE_COLUMNS} FROM push_lines"
                          " WHERE command_id = $1 ORDER BY id", command_id)


def _line(r: asyncpg.Record) -> PushLine:
    """A push_lines row (``_LINE_COLUMNS``) as a PushLine."""
    return PushLine(r["id"], r["command_id"], r["device_id"], r["text"], r["state"],
                    r["return_code"], r["result"], r["sent_at"])
