"""Push devices (ADMS / iclock): their contacts, upload stamps, command lines, and the
serials that called without being known."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fleettui.domain import PendingDevice, PushContact, PushLine, PushStamps, PushUser
from fleettui.store.shared.push_limits import clip_pending, clip_stamp
from fleettui.store.shared.push_sql import STRANDED as _STRANDED
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, select, ts

_LINE_COLUMNS = "id, command_id, device_id, text, state, return_code, result, sent_at"


class PushQueries(SqliteConnection):
    """What the push gateway keeps in the store between a device's calls."""

    async def record_push_contacts(self, contacts: Sequence[PushContact]) -> None:
        """Many devices' latest calls in one transaction (heartbeats are written in batches:
        2,000 devices calling every 10 s would otherwise be 200 transactions a second)."""
        if not contacts:
            return
        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "UPDATE devices SET last_seen = MAX(?, COALESCE(last_seen, '')),"
                " push_address = ?,"
                " push_version = CASE WHEN ? = '' THEN push_version ELSE ? END,"
                " firmware = COALESCE(?, firmware), users = COALESCE(?, users),"
                " records = COALESCE(?, records), records_cap = COALESCE(?, records_cap),"
                " push_attlog_stamp = COALESCE(?, push_attlog_stamp),"
                " push_operlog_stamp = COALESCE(?, push_operlog_stamp)"
                " WHERE id = ?",
                [(ts(c.at), c.address, c.push_version, c.push_version, c.firmware, c.users,
                  c.records, c.records_cap, clip_stamp(c.attlog_stamp),
                  clip_stamp(c.operlog_stamp),
                  c.device_id) for c in contacts],
            )
        await self._transaction(write)

    async def push_stamps(self, device_id: str) -> PushStamps:
        """The stamps the device sent with its last uploads ("0" before any)."""
        rows = await fetch(self._db, "SELECT push_attlog_stamp, push_operlog_stamp FROM devices"
                           " WHERE id = ?", (device_id,))
        return PushStamps(str(rows[0][0]), str(rows[0][1])) if rows else PushStamps("0", "0")

    async def devices_with_queued_commands(self) -> set[str]:
        """Devices that have commands waiting to start (any transport)."""
        rows = await fetch(self._db, "SELECT DISTINCT device_id FROM commands"
                           " WHERE state = 'queued'")
        return {r[0] for r in rows}

    # --- users ------------------------------------------------------------------

    async def push_users(self, device_id: str) -> list[PushUser]:
        """The users the device holds, as far as its uploads and our syncs told."""
        rows = await fetch(self._db, "SELECT pin, name, privilege, card FROM push_users"
                           " WHERE device_id = ? ORDER BY pin", (device_id,))
        return [PushUser(r[0], r[1], r[2], r[3]) for r in rows]

    async def record_push_users(self, device_id: str, users: Sequence[PushUser],
                                removed: Sequence[str] = ()) -> None:
        """Users the device now holds (added or changed), and pins it no longer holds."""
        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO push_users (device_id, pin, name, privilege, card)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(device_id, pin) DO UPDATE SET"
                " name = excluded.name, privilege = excluded.privilege, card = excluded.card",
                [(device_id, u.pin, u.name, u.privilege, u.card) for u in users])
            db.executemany("DELETE FROM push_users WHERE device_id = ? AND pin = ?",
                           [(device_id, pin) for pin in removed])
        await self._transaction(write)

    # --- command lines ----------------------------------------------------------

    async def add_push_lines(self, command_id: int, device_id: str, texts: Sequence[str],
                             plan: dict[str, Any]) -> list[PushLine]:
        """The lines that carry a command to a push device, queued in order, and what the
        command reports once they are answered; the command is started (sent)."""
        def write(db: sqlite3.Connection) -> list[Any]:
            return _add_lines(db, command_id, device_id, texts, plan)
        return [_line(r) for r in await self._transaction(write)]

    async def start_push_command(self, command_id: int, device_id: str, texts: Sequence[str],
                                 plan: dict[str, Any], now: datetime) -> list[PushLine] | None:
        """See ``Store.start_push_command``."""
        def write(db: sqlite3.Connection) -> list[Any] | None:
            cur = db.execute(
                "UPDATE commands SET state = 'sent', attempts = attempts + 1, updated_at = ?"
                " WHERE id = ? AND state = 'queued'", (ts(now), command_id))
            if cur.rowcount != 1:
                return None
            return _add_lines(db, command_id, device_id, texts, plan)
        rows = await self._transaction(write)
        return None if rows is None else [_line(r) for r in rows]

    async def stranded_push_commands(self, answered_before: datetime) -> dict[int, str]:
        """See ``Store.stranded_push_commands``."""
        rows = await fetch(self._db, _STRANDED.replace("$1", "?"), (ts(answered_before),))
        return {r[0]: r[1] for r in rows}

    async def push_plan(self, command_id: int) -> dict[str, Any]:
        """What a push command reports once its lines are answered (empty if nothing)."""
        rows = await fetch(self._db, "SELECT push_plan FROM commands WHERE id = ?",
                           (command_id,))
        return json.loads(rows[0][0]) if rows and rows[0][0] else {}

    async def push_lines(self, device_id: str, *, state: str) -> list[PushLine]:
        """The device's lines in ``state`` ("queued": to send; "sent": awaiting results)."""
        rows = await fetch(self._db, f"SELECT {_LINE_COLUMNS} FROM push_lines"
                           " WHERE device_id = ? AND state = ? ORDER BY id", (device_id, state))
        return [_line(r) for r in rows]

    async def push_lines_of(self, command_id: int) -> list[PushLine]:
        """Every line of one command, in order."""
        rows = await fetch(self._db, f"SELECT {_LINE_COLUMNS} FROM push_lines"
                           " WHERE command_id = ? ORDER BY id", (command_id,))
        return [_line(r) for r in rows]

    async def mark_push_lines_sent(self, line_ids: Sequence[int], now: datetime) -> list[int]:
        """Lines handed to the device in a getrequest answer: those still queued, whose
        ids are returned (see ``Store.mark_push_lines_sent``)."""
        def write(db: sqlite3.Connection) -> list[int]:
            taken = []
            for i in line_ids:
                cur = db.execute("UPDATE push_lines SET state = 'sent', sent_at = ?"
                                 " WHERE id = ? AND state = 'queued'", (ts(now), i))
                if cur.rowcount:
                    taken.append(i)
            return taken
        if not line_ids:
            return []
        return await self._transaction(write)

    async def push_last_seen(self) -> dict[str, datetime]:
        """See ``Store.push_last_seen``."""
        rows = await fetch(self._db, "SELECT id, last_seen FROM devices"
                                     " WHERE transport = 'push' AND last_seen IS NOT NULL")
        return {r["id"]: seen for r in rows if (seen := from_ts(r["last_seen"])) is not None}

    async def answer_push_line(self, device_id: str, line_id: int, code: int,
                               result: dict[str, str], now: datetime) -> PushLine | None:
        """A device's result for one of its lines; None when the id is not one of this
        device's lines awaiting a result (a result posted twice is taken once)."""
        def write(db: sqlite3.Connection) -> PushLine | None:
            cur = db.execute(
                "UPDATE push_lines SET state = ?, return_code = ?, result = ?, answered_at = ?"
                " WHERE id = ? AND device_id = ? AND state IN ('sent', 'queued')",
                ("done" if code == 0 else "failed", code, json.dumps(result), ts(now),
                 line_id, device_id),
            )
            if not cur.rowcount:
                return None
            return _line(select(db, f"SELECT {_LINE_COLUMNS} FROM push_lines WHERE id = ?",
                                (line_id,))[0])
        return await self._transaction(write)

    async def expire_push_lines(self, sent_before: datetime, now: datetime) -> dict[int, str]:
        """Lines sent before ``sent_before`` and never answered: failed ("not answered");
        returns the commands they belong to, with their devices."""
        def write(db: sqlite3.Connection) -> list[Any]:
            rows = select(db, "SELECT id, command_id, device_id FROM push_lines"
                          " WHERE state = 'sent' AND sent_at < ?", (ts(sent_before),))
            db.executemany(
                "UPDATE push_lines SET state = 'failed', answered_at = ? WHERE id = ?",
                [(ts(now), r["id"]) for r in rows])
            return rows
        return {r["command_id"]: r["device_id"] for r in await self._transaction(write)}

    async def drop_push_lines(self, command_id: int) -> int:
        """Lines of a command that ended without them (expired, failed): never sent now."""
        def write(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "UPDATE push_lines SET state = 'failed' WHERE command_id = ?"
                " AND state IN ('queued', 'sent')", (command_id,))
            return cur.rowcount
        return await self._transaction(write)

    # --- devices not known yet ----------------------------------------------------

    async def note_pending_push(self, serial: str, address: str, firmware: str,
                                push_version: str, now: datetime) -> None:
        """An unknown serial called: held (with where and what it is) until approved."""
        firmware, push_version = clip_pending(firmware, push_version)

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO push_pending (serial, address, firmware, push_version,"
                " first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(serial) DO UPDATE SET address = excluded.address,"
                " firmware = CASE WHEN excluded.firmware = '' THEN firmware"
                " ELSE excluded.firmware END,"
                " push_version = CASE WHEN excluded.push_version = '' THEN push_version"
                " ELSE excluded.push_version END,"
                " last_seen = excluded.last_seen, requests = requests + 1",
                (serial, address, firmware, push_version, ts(now), ts(now)),
            )
        await self._transaction(write)

    async def pending_push_devices(self) -> list[PendingDevice]:
        """Serials waiting for approval, most recently heard first."""
        rows = await fetch(self._db, "SELECT serial, address, firmware, push_version,"
                           " first_seen, last_seen, requests FROM push_pending"
                           " ORDER BY last_seen DESC, serial")
        return [_pending(r) for r in rows]

    async def forget_pending_push(self, serial: str) -> bool:
        """Stop holding a serial (approved, or dismissed); False if it was not held."""
        def write(db: sqlite3.Connection) -> bool:
            cur = db.execute("DELETE FROM push_pending WHERE serial = ?", (serial,))
            return cur.rowcount > 0
        return await self._transaction(write)


def _add_lines(db: sqlite3.Connection, command_id: int, device_id: str, texts: Sequence[str],
               plan: dict[str, Any]) -> list[sqlite3.Row]:
    """Queue a command's lines and what it reports (inside the caller's transaction)."""
    db.execute("UPDATE commands SET push_plan = ? WHERE id = ?", (json.dumps(plan), command_id))
    db.executemany("INSERT INTO push_lines (command_id, device_id, text) VALUES (?, ?, ?)",
                   [(command_id, device_id, t) for t in texts])
    return select(db, f"SELECT {_LINE_COLUMNS} FROM push_lines"
                      " WHERE command_id = ? ORDER BY id", (command_id,))


def _line(r: Any) -> PushLine:
    return PushLine(r["id"], r["command_id"], r["device_id"], r["text"], r["state"],
                    r["return_code"], json.loads(r["result"]), from_ts(r["sent_at"]))


def _pending(r: Any) -> PendingDevice:
    first, last = from_ts(r["first_seen"]), from_ts(r["last_seen"])
    assert first is not None and last is not None
    return PendingDevice(r["serial"], r["address"], r["firmware"], r["push_version"],
                         first, last, r["requests"])
