"""The control room's panel queries: aggregates cheap enough to run every second."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fleettui.domain import (
    Command,
    CommandRequest,
    DeviceStatus,
    StatusChange,
)
from fleettui.store.shared.health_rules import by_device
from fleettui.store.sqlite.commands import COMMAND_COLUMNS, command_of_row, load_request
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, ts


class PanelQueries(SqliteConnection):
    """Read-only aggregates for the TUI's device and site panels."""

    # --- panel queries (read-only: the TUI's device and site panels) ------
    #
    # Aggregates for the pictures, cheap enough to run every second for the
    # one selected device or site: punches are counted in SQL over the day's
    # range of the ``punches_utc`` index (never loaded into Python), status
    # history over its (device_id, at) index.

    async def punches_per_minute(
        self, start: datetime, end: datetime, *, device_id: str | None = None,
        site_id: str | None = None,
    ) -> dict[datetime, int]:
        """Punches with a UTC time in [start, end), counted per UTC minute.

        ``device_id`` / ``site_id`` narrow it; the unary ``+`` keeps SQLite on
        the time index (one day of the fleet's punches) instead of the unique
        key's device prefix (all of a device's history).
        """
        sql = ("SELECT substr(utc_time, 1, 16) AS minute, COUNT(*) AS n FROM punches"
               " WHERE utc_time >= ? AND utc_time < ?")
        args: list[Any] = [ts(start), ts(end)]
        if device_id is not None:
            sql += " AND +device_id = ?"
            args.append(device_id)
        if site_id is not None:
            sql += " AND +device_id IN (SELECT id FROM devices WHERE site_id = ?)"
            args.append(site_id)
        sql += " GROUP BY minute"
        rows = await fetch(self._db, sql, args)
        return {datetime.fromisoformat(r["minute"]).replace(tzinfo=UTC): int(r["n"])
                for r in rows}

    async def punches_per_device(self, start: datetime, end: datetime) -> dict[str, int]:
        """Punches with a UTC time in [start, end), counted per device (over the
        ``punches_utc`` range, as ``punches_per_minute``)."""
        rows = await fetch(self._db, "SELECT device_id, COUNT(*) AS n FROM punches"
                           " WHERE utc_time >= ? AND utc_time < ? GROUP BY device_id",
                           [ts(start), ts(end)])
        return {r["device_id"]: int(r["n"]) for r in rows}

    async def site_status_history(
        self, site_id: str, since: datetime
    ) -> dict[str, list[StatusChange]]:
        """Each device of a site's transitions since ``since``, with the one in force then.

        (CROSS JOIN keeps the site's few devices as the outer loop, so each
        device's history is a range of the (device_id, at) index.)
        """
        rows = await fetch(
            self._db,
            "SELECT h.id, h.device_id, h.status, h.reason, h.at FROM devices d"
            " JOIN status_history h ON h.id = (SELECT id FROM status_history"
            " WHERE device_id = d.id AND at < ? ORDER BY at DESC, id DESC LIMIT 1)"
            " WHERE d.site_id = ? AND d.removed = 0"
            " UNION ALL"
            " SELECT h.id, h.device_id, h.status, h.reason, h.at FROM devices d"
            " CROSS JOIN status_history h ON h.device_id = d.id AND h.at >= ?"
            " WHERE d.site_id = ? AND d.removed = 0"
            " ORDER BY 2, 5, 1",
            (ts(since), site_id, ts(since), site_id),
        )
        return by_device(StatusChange(r["device_id"], DeviceStatus(r["status"]), r["reason"],
                                      from_ts(r["at"]))  # type: ignore[arg-type]
                         for r in rows)

    async def site_requests(self, site_id: str, limit: int = 3) -> list[CommandRequest]:
        """The newest requests aimed at a whole site, newest first, with their commands."""
        rows = await fetch(
            self._db,
            "SELECT id FROM command_requests WHERE target_kind = 'site' AND target = ?"
            " ORDER BY id DESC LIMIT ?",
            (site_id, limit),
        )
        out = []
        for r in rows:
            request = await load_request(self._db, int(r["id"]))
            if request is not None:
                out.append(request)
        return out

    async def site_commands_in_flight(self, site_id: str, limit: int = 50) -> list[Command]:
        """Commands queued for or running on a site's devices, oldest first."""
        rows = await fetch(
            self._db,
            f"SELECT {COMMAND_COLUMNS} FROM commands WHERE state IN ('queued', 'sent')"
            " AND device_id IN (SELECT id FROM devices WHERE site_id = ?) ORDER BY id LIMIT ?",
            (site_id, limit),
        )
        return [command_of_row(r) for r in rows]

    # --- end of panel queries ---------------------------------------------
