"""Device health: status transitions, their history, uptime, and flap state.

A transition writes the device row, its history, the event log and the webhook
fact in one transaction, the append lock first. The liveness batch locks its
device rows in id order before it changes them, as ``sync_fleet`` does, so two
processes writing overlapping rows wait on one another instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from fleettui.domain import DeviceStatus, Event, FlapState, Liveness, StatusChange
from fleettui.store.postgres.connection import Db, PostgresConnection, append_lock
from fleettui.store.postgres.events import write_event
from fleettui.store.postgres.outbox import write_device_fact
from fleettui.store.shared.health_rules import online_share, status_fact

_SEEN = (
    "UPDATE devices SET last_seen = $2, users = COALESCE($3, users),"
    " users_cap = COALESCE($4, users_cap), records = COALESCE($5, records),"
    " records_cap = COALESCE($6, records_cap) WHERE id = $1"
)
_SEEN_MANY = (
    "UPDATE devices d SET last_seen = v.at, users = COALESCE(v.users, d.users),"
    " users_cap = COALESCE(v.users_cap, d.users_cap),"
    " records = COALESCE(v.records, d.records),"
    " records_cap = COALESCE(v.records_cap, d.records_cap)"
    " FROM unnest($1::text[], $2::timestamptz[], $3::int[], $4::int[], $5::int[], $6::int[])"
    " AS v(id, at, users, users_cap, records, records_cap) WHERE d.id = v.id"
)
_HISTORY = "SELECT id, status, reason, at FROM status_history WHERE device_id = $1"


class HealthQueries(PostgresConnection):
    """What the poller learns of each device's health, and what it remembers of flapping."""

    async def record_status(self, change: StatusChange) -> Event:
        """A status transition: device row, history, event log and webhook fact, in one
        transaction (see ``Store.record_status``)."""
        fact = status_fact(change)

        async def write(db: Db) -> Event:
            await append_lock(db)
            await db.execute(
                "UPDATE devices SET status = $1, status_reason = $2, status_since = $3"
                " WHERE id = $4", change.status.value, change.reason, change.at,
                change.device_id)
            await db.execute(
                "INSERT INTO status_history (device_id, status, reason, at)"
                " VALUES ($1, $2, $3, $4)",
                change.device_id, change.status.value, change.reason, change.at)
            if fact.webhook is not None:
                await write_device_fact(db, change.device_id, fact.webhook, change.at,
                                        fact.extra)
            return await write_event(db, change.at, fact.kind, fact.message,
                                     device_id=change.device_id, data=fact.data)
        return await self._transaction(write)

    async def record_seen(
        self,
        device_id: str,
        at: datetime,
        *,
        users: int | None = None,
        users_cap: int | None = None,
        records: int | None = None,
        records_cap: int | None = None,
    ) -> None:
        """A successful check: last seen, and the device's counters."""
        async def write(db: Db) -> None:
            await db.execute(_SEEN, device_id, at, users, users_cap, records, records_cap)
        await self._transaction(write)

    async def record_seen_many(self, seen: Sequence[Liveness]) -> None:
        """Many successful checks in one transaction, one statement (see
        ``Store.record_seen_many``); checks of one device count in order, as one each."""
        if not seen:
            return
        rows = _fold(seen)
        columns = [[getattr(s, name) for s in rows] for name in
                   ("device_id", "at", "users", "users_cap", "records", "records_cap")]

        async def write(db: Db) -> None:
            await db.execute(
                "SELECT count(*) FROM (SELECT 1 FROM devices WHERE id = ANY($1::text[])"
                " ORDER BY id FOR UPDATE) locked", columns[0])
            await db.execute(_SEEN_MANY, *columns)
        await self._transaction(write)

    async def record_identity(
        self, device_id: str, *, model: str, firmware: str, platform: str, mac: str
    ) -> None:
        """What the device said it is, read on connect."""
        async def write(db: Db) -> None:
            await db.execute(
                "UPDATE devices SET model = $1, firmware = $2, platform = $3, mac = $4"
                " WHERE id = $5", model, firmware, platform, mac, device_id)
        await self._transaction(write)

    async def record_clock(self, device_id: str, drift_s: float, at: datetime) -> None:
        """The device clock's offset from true local time, measured at ``at``."""
        async def write(db: Db) -> None:
            await db.execute(
                "UPDATE devices SET clock_drift_s = $1, clock_checked_at = $2 WHERE id = $3",
                drift_s, at, device_id)
        await self._transaction(write)

    async def status_history(
        self, device_id: str, since: datetime | None = None
    ) -> list[StatusChange]:
        """Transitions of a device, oldest first; with ``since``, the one in force then too
        (one statement: both parts of one snapshot)."""
        if since is None:
            rows = await self._fetch(_HISTORY + " ORDER BY at, id", device_id)
        else:
            rows = await self._fetch(
                f"({_HISTORY} AND at < $2 ORDER BY at DESC, id DESC LIMIT 1)"
                f" UNION ALL ({_HISTORY} AND at >= $2) ORDER BY at, id",
                device_id, since)
        return [StatusChange(device_id, DeviceStatus(r["status"]), r["reason"], r["at"])
                for r in rows]

    async def uptime(self, device_id: str, window: timedelta, now: datetime) -> float | None:
        """Share of ``window`` before ``now`` the device was online (see ``Store.uptime``)."""
        start = now - window
        return online_share(await self.status_history(device_id, since=start), start, now)

    async def flap_states(self) -> dict[str, FlapState]:
        """Each device's remembered flap state, by device id."""
        rows = await self._fetch(
            "SELECT device_id, history, flapping, percent FROM flap_state")
        return {r["device_id"]: FlapState(r["device_id"], r["history"], r["flapping"],
                                          r["percent"]) for r in rows}

    async def save_flap_states(self, states: Sequence[FlapState], now: datetime) -> None:
        """Remember each device's flap state (changed at ``now``): the last given for a
        device counts; rows are written in device order (no deadlock with another
        process saving the same devices)."""
        last = sorted({s.device_id: s for s in states}.values(), key=lambda s: s.device_id)
        if not last:
            return
        columns = [[getattr(s, name) for s in last] for name in
                   ("device_id", "history", "flapping", "percent")]

        async def write(db: Db) -> None:
            await db.execute(
                "INSERT INTO flap_state (device_id, history, flapping, percent, changed_at)"
                " SELECT d, h, f, p, $5 FROM unnest($1::text[], $2::text[], $3::boolean[],"
                " $4::float8[]) AS v(d, h, f, p) ORDER BY d"
                " ON CONFLICT (device_id) DO UPDATE SET history = excluded.history,"
                " flapping = excluded.flapping, percent = excluded.percent,"
                " changed_at = excluded.changed_at", *columns, now)
        await self._transaction(write)


def _fold(seen: Sequence[Liveness]) -> list[Liveness]:
    """One check per device, in device id order, that says what the batch's checks of it
    say in turn: the last one's time, and each counter as last read."""
    out: dict[str, Liveness] = {}
    for s in seen:
        before = out.get(s.device_id)
        if before is not None:
            s = Liveness(
                s.device_id, s.at,
                s.users if s.users is not None else before.users,
                s.users_cap if s.users_cap is not None else before.users_cap,
                s.records if s.records is not None else before.records,
                s.records_cap if s.records_cap is not None else before.records_cap)
        out[s.device_id] = s
    return [out[k] for k in sorted(out)]
