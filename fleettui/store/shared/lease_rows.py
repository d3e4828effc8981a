"""Pollers and leases read back alike on both backends, and the rule of which dead pollers
are forgotten."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from fleettui.domain import PollerInfo, SiteLease
from fleettui.store.shared.row_times import TimeOf, required_time

#: a poller whose time ran out this long ago, holding nothing, is no longer listed
FORGET_AFTER = timedelta(minutes=10)

POLLER_COLUMNS = "id, pid, host, mode, started_at, seen_at, expires_at"
LEASE_COLUMNS = "site_id, poller_id, since, expires_at"


def lease_of_row(r: Any, when: TimeOf) -> SiteLease:
    """A site_leases row as a SiteLease."""
    return SiteLease(r["site_id"], r["poller_id"], required_time(when, r["since"]),
                     required_time(when, r["expires_at"]))


def pollers_of_rows(rows: Iterable[Any], leases: Iterable[SiteLease],
                    when: TimeOf) -> list[PollerInfo]:
    """The pollers rows (oldest first) with the sites each holds."""
    held: dict[str, list[str]] = {}
    for lease in leases:
        held.setdefault(lease.poller_id, []).append(lease.site_id)
    return [PollerInfo(r["id"], r["pid"], r["host"], r["mode"],
                       required_time(when, r["started_at"]), required_time(when, r["seen_at"]),
                       required_time(when, r["expires_at"]),
                       tuple(sorted(held.get(r["id"], ())))) for r in rows]
