"""The control room's panel queries: aggregates cheap enough to run every second.

Punches are counted per minute where they are (over the ``punches_utc`` index of
each month's partition), never loaded; a site's status history is one range of
the ``status_history_device_at`` index per device. Each answer is one statement,
so it is one snapshot of what is committed.
"""

from __future__ import annotations

from datetime import datetime

from fleettui.domain import Command, CommandRequest, DeviceStatus, StatusChange
from fleettui.store.postgres.commands import (
    COMMAND_COLUMNS,
    REQUEST_COLUMNS,
    command_of_row,
    request_of_row,
)
from fleettui.store.postgres.connection import PostgresConnection
from fleettui.store.postgres.punches import punch_query
from fleettui.store.shared.health_rules import by_device

_SITE_HISTORY = (
    "SELECT h.id, h.device_id, h.status, h.reason, h.at FROM devices d"
    " CROSS JOIN LATERAL (SELECT id, device_id, status, reason, at FROM status_history"
    " WHERE device_id = d.id AND at < $1 ORDER BY at DESC, id DESC LIMIT 1) h"
    " WHERE d.site_id = $2 AND NOT d.removed"
    " UNION ALL"
    " SELECT h.id, h.device_id, h.status, h.reason, h.at FROM devices d"
    " JOIN status_history h ON h.device_id = d.id AND h.at >= $1"
    " WHERE d.site_id = $2 AND NOT d.removed"
    " ORDER BY 2, 5, 1"
)


class PanelQueries(PostgresConnection):
    """Read-only aggregates for the TUI's device and site panels."""

    async def punches_per_minute(
        self, start: datetime, end: datetime, *, device_id: str | None = None,
        site_id: str | None = None,
    ) -> dict[datetime, int]:
        """Punches with a UTC time in [start, end), counted per UTC minute (see
        ``Store.punches_per_minute``); the session's zone is UTC, so ``date_trunc``
        cuts UTC minutes."""
        sql, args = punch_query("date_trunc('minute', utc_time) AS minute, count(*) AS n",
                                since=start, until=end, site_id=site_id, device_id=device_id)
        rows = await self._fetch(sql + " GROUP BY minute", *args)
        return {r["minute"]: int(r["n"]) for r in rows}

    async def punches_per_device(self, start: datetime, end: datetime) -> dict[str, int]:
        """Punches with a UTC time in [start, end), counted per device (answered from the
        ``punches_utc`` index, which includes the device)."""
        sql, args = punch_query("device_id, count(*) AS n", since=start, until=end)
        rows = await self._fetch(sql + " GROUP BY device_id", *args)
        return {r["device_id"]: int(r["n"]) for r in rows}

    async def site_status_history(
        self, site_id: str, since: datetime
    ) -> dict[str, list[StatusChange]]:
        """Each device of a site's transitions since ``since``, with the one in force then
        (see ``Store.site_status_history``)."""
        rows = await self._fetch(_SITE_HISTORY, since, site_id)
        return by_device(StatusChange(r["device_id"], DeviceStatus(r["status"]), r["reason"],
                                      r["at"]) for r in rows)

    async def site_requests(self, site_id: str, limit: int = 3) -> list[CommandRequest]:
        """The newest requests aimed at a whole site, newest first, with their commands
        (two statements: requests, then all their commands)."""
        found = await self._fetch(
            f"SELECT {REQUEST_COLUMNS} FROM command_requests WHERE target_kind = 'site'"
            " AND target = $1 ORDER BY id DESC LIMIT $2", site_id, limit)
        if not found:
            return []
        commands = await self._fetch(
            f"SELECT {COMMAND_COLUMNS} FROM commands WHERE request_id = ANY($1::bigint[])"
            " ORDER BY id", [r["id"] for r in found])
        return [request_of_row(r, [c for c in commands if c["request_id"] == r["id"]])
                for r in found]

    async def site_commands_in_flight(self, site_id: str, limit: int = 50) -> list[Command]:
        """Commands queued for or running on a site's devices, oldest first."""
        rows = await self._fetch(
            f"SELECT {COMMAND_COLUMNS} FROM commands WHERE state IN ('queued', 'sent')"
            " AND device_id IN (SELECT id FROM devices WHERE site_id = $1) ORDER BY id"
            " LIMIT $2", site_id, limit)
        return [command_of_row(r) for r in rows]
