"""``fleettui status`` and ``fleettui export punches``: the store read for scripts and cron.

Both only read the store, so they work while a headless poller runs.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from fleettui.domain import (
    FLEET_LEASE,
    Alert,
    Command,
    CommandRequest,
    DeviceState,
    FlapState,
    PollerInfo,
    Punch,
    Silence,
)
from fleettui.store import Store
from fleettui.store.lock import poller_lock
from fleettui.store.where import StoreTarget

#: clock drift above which a corrected UTC time is worth giving (django-fpa's warning level)
DRIFT_WARN_S = 120.0


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if dt else None


def _ago(dt: datetime | None, now: datetime) -> str:
    if dt is None:
        return "never"
    s = int((now - dt).total_seconds())
    if s < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return f"{s}s ago"


async def status_rows(store: Store, now: datetime) -> list[dict[str, Any]]:
    """One row per device, as ``fleettui status --json`` prints it."""
    rows = []
    flaps = await store.flap_states()
    holders = site_holders(await store.pollers(), now)
    for d in await store.devices():
        fill = d.buffer_fill
        flap = flaps.get(d.id) or FlapState(d.id, "", False, 0.0)
        rows.append(
            {
                "id": d.id,
                "serial": d.serial,
                "site": d.site_id,
                "model": d.model,
                "transport": d.transport,
                "status": d.status.value,
                "reason": d.status_reason,
                "since": _iso(d.status_since),
                "last_seen": _iso(d.last_seen),
                "last_punch": _iso(d.last_punch_at),
                "records": d.records,
                "records_capacity": d.records_cap,
                "buffer_fill": round(fill, 4) if fill is not None else None,
                "clock_drift_s": round(d.clock_drift_s, 1) if d.clock_drift_s is not None else None,
                "flapping": flap.flapping,
                "flap_percent": round(flap.percent, 1),
                "uptime_24h": _pct(await store.uptime(d.id, timedelta(hours=24), now)),
                "uptime_30d": _pct(await store.uptime(d.id, timedelta(days=30), now)),
                "enabled": d.enabled,
                "poller": holders.get(d.site_id),
            }
        )
    return rows


def poller_label(p: PollerInfo) -> str:
    """How a poller is named to a person: its pid and host."""
    return f"pid {p.pid} on {p.host}"


def poller_rows(pollers: list[PollerInfo], now: datetime) -> list[dict[str, Any]]:
    """One row per poller sharing the database, as ``fleettui pollers --json`` prints it."""
    return [{"id": p.id, "pid": p.pid, "host": p.host, "mode": p.mode,
             "started_at": _iso(p.started_at), "seen_at": _iso(p.seen_at),
             "expires_at": _iso(p.expires_at), "live": p.live(now),
             "sites": [s for s in p.sites if s != FLEET_LEASE],
             "fleet_work": FLEET_LEASE in p.sites} for p in pollers]


def pollers_table(pollers: list[PollerInfo], now: datetime) -> str:
    """The human table of ``fleettui pollers``: live ones, then those whose time ran out."""
    if not pollers:
        return "no poller shares this database (a SQLite file has one poller, by its lock)"
    lines = [("POLLER", "MODE", "SINCE", "LEASE", "SITES")]
    for p in sorted(pollers, key=lambda p: (not p.live(now), p.started_at)):
        sites = [s for s in p.sites if s != FLEET_LEASE]
        lease = (f"until {_iso(p.expires_at)}" if p.live(now)
                 else f"expired {_ago(p.expires_at, now)}")
        held = f"{len(sites)}: {', '.join(sites)}" if sites else "0"
        lines.append((poller_label(p), p.mode, _ago(p.started_at, now), lease,
                      held + (" (+ fleet work)" if FLEET_LEASE in p.sites else "")))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def site_holders(pollers: list[PollerInfo], now: datetime) -> dict[str, str]:
    """Which live poller holds each site, by site id (a site missing: nobody now)."""
    return {site: poller_label(p) for p in pollers if p.live(now) for site in p.sites
            if site != FLEET_LEASE}


def poller_state(db: StoreTarget) -> dict[str, Any]:
    """Whether a poller owns this database now, and who (pid, host, since)."""
    lock = poller_lock(db)
    running = lock.held_elsewhere()
    return {"running": running, "owner": lock.owner() if running else None}


def _pct(value: float | None) -> float | None:
    return round(value * 100, 2) if value is not None else None


def status_table(devices: list[dict[str, Any]], states: list[DeviceState], now: datetime) -> str:
    """The human table of ``fleettui status``."""
    by_id = {s.id: s for s in states}
    header = ("DEVICE", "SITE", "STATUS", "SINCE", "LAST SEEN", "LAST PUNCH", "BUFFER", "DRIFT",
              "VIA")
    lines: list[tuple[str, ...]] = [header]
    for row in devices:
        s = by_id[row["id"]]
        status = row["status"] + (f" ({row['reason']})" if row["reason"] else "")
        if row["flapping"]:
            status += f" · flapping {row['flap_percent']:.0f}%"
        buffer = f"{row['buffer_fill']:.0%}" if row["buffer_fill"] is not None else "-"
        drift = f"{row['clock_drift_s']:+.0f}s" if row["clock_drift_s"] is not None else "-"
        lines.append((row["id"], row["site"], status, _ago(s.status_since, now),
                      _ago(s.last_seen, now), _ago(s.last_punch_at, now), buffer, drift,
                      row["transport"]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(col.ljust(w) for col, w in zip(line, widths, strict=True)).rstrip()
           for line in lines]
    counts: dict[str, int] = {}
    for row in devices:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = " · ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    noun = "device" if len(devices) == 1 else "devices"
    out.append(f"\n{len(devices)} {noun} · {summary}" if devices else "no devices")
    return "\n".join(out)


EXPORT_FIELDS = (
    "id", "device_id", "user_id", "local_time", "timezone", "utc_time", "utc_time_corrected",
    "tz_flag", "state", "verify", "clock_drift_s", "source", "received_at",
)


def punch_record(p: Punch) -> dict[str, Any]:
    """A punch as exported. ``utc_time_corrected`` removes a clock drift over 2 minutes."""
    corrected = p.utc_time
    if p.clock_drift_s is not None and abs(p.clock_drift_s) > DRIFT_WARN_S:
        corrected = p.utc_time - timedelta(seconds=p.clock_drift_s)
    return {
        "id": p.id,
        "device_id": p.device_id,
        "user_id": p.user_id,
        "local_time": p.local_time.isoformat(),
        "timezone": p.timezone,
        "utc_time": _iso(p.utc_time),
        "utc_time_corrected": _iso(corrected),
        "tz_flag": p.tz_flag.value,
        "state": p.state,
        "verify": p.verify,
        "clock_drift_s": p.clock_drift_s,
        "source": p.source,
        "received_at": _iso(p.received_at),
    }


def write_punches(punches: Iterable[Punch], out: TextIO, fmt: str) -> int:
    """Write punches as CSV (with a header) or JSON lines; returns how many."""
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
        writer.writeheader()
        for p in punches:
            writer.writerow(punch_record(p))
            n += 1
    else:
        for p in punches:
            out.write(json.dumps(punch_record(p)) + "\n")
            n += 1
    return n


def command_record(c: Command) -> dict[str, Any]:
    """A command as JSON shows it."""
    params = dict(c.params)
    if "employees" in params:  # a list of people is too long (and holds passwords)
        params["employees"] = f"{len(params['employees'])} employee(s)"
    return {
        "id": c.id,
        "request_id": c.request_id,
        "device_id": c.device_id,
        "command": c.command,
        "params": params,
        "state": c.state.value,
        "attempts": c.attempts,
        "result": c.result,
        "error": c.error,
        "created_at": _iso(c.created_at),
        "updated_at": _iso(c.updated_at),
        "expires_at": _iso(c.expires_at),
    }


def request_record(r: CommandRequest) -> dict[str, Any]:
    """A command request, its summary and its commands, as JSON shows them."""
    return {
        "id": r.id,
        "target": r.target,
        "target_kind": r.target_kind,
        "command": r.command,
        "idempotency_key": r.idempotency_key,
        "created_at": _iso(r.created_at),
        "summary": r.summary(),
        "commands": [command_record(c) for c in r.commands],
    }


def request_text(r: CommandRequest) -> str:
    """A request for people: one line per device, then the summary."""
    lines = [f"request {r.id}: {r.command} → {r.target_kind} {r.target}"]
    for c in r.commands:
        detail = c.error or (json.dumps(c.result) if c.result else "")
        lines.append(f"  {c.device_id:<24} {c.state.value:<8} {detail}".rstrip())
    s = r.summary()
    lines.append(f"{s['total']} command(s): {s['done']} done, {s['failed']} failed, "
                 f"{s['queued'] + s['sent']} pending, {s['expired']} expired")
    return "\n".join(lines)


def commands_table(rows: list[Command]) -> str:
    """Recent commands for people."""
    if not rows:
        return "no commands"
    lines = [f"{'ID':>5}  {'DEVICE':<24} {'COMMAND':<16} {'STATE':<8} {'WHEN':<20} DETAIL"]
    for c in rows:
        detail = c.error or (json.dumps(c.result) if c.result else "")
        when = _iso(c.updated_at) or ""
        lines.append(f"{c.id:>5}  {c.device_id:<24} {c.command:<16} {c.state.value:<8} "
                     f"{when:<20} {detail}".rstrip())
    return "\n".join(lines)


def _silenced_until(alert: Alert, silences: list[Silence]) -> datetime | None:
    targets = {alert.target, alert.site_id}
    ends = [s.until for s in silences if s.target in targets]
    return max(ends) if ends else None


def alert_record(a: Alert, silences: list[Silence]) -> dict[str, Any]:
    """An alert as ``fleettui alerts --json`` prints it."""
    return {
        "id": a.id,
        "target_kind": a.target_kind,
        "target": a.target,
        "site": a.site_id,
        "kind": a.kind.value,
        "severity": a.severity,
        "state": a.state,
        "reason": a.reason,
        "since": _iso(a.since),
        "opened_at": _iso(a.opened_at),
        "resolved_at": _iso(a.resolved_at),
        "acknowledged": a.acknowledged_at is not None,
        "acknowledged_by": a.acknowledged_by or None,
        "silenced_until": _iso(_silenced_until(a, silences)),
        "notifications": a.notifications,
    }


def alerts_table(alerts: list[Alert], silences: list[Silence], now: datetime) -> str:
    """Alerts for people."""
    if not alerts:
        return "no open alerts"
    lines = [f"{'ID':>4}  {'SEVERITY':<8}  {'KIND':<9}  {'TARGET':<24}  {'SINCE':<10}  NOTE"]
    for a in alerts:
        notes = []
        if a.state != "open":
            notes.append("resolved")
        if a.acknowledged_at:
            notes.append("acknowledged" + (f" by {a.acknowledged_by}" if a.acknowledged_by else ""))
        until = _silenced_until(a, silences)
        if until:
            notes.append(f"silenced until {_iso(until)}")
        if a.reason:
            notes.append(a.reason)
        lines.append(f"{a.id:>4}  {a.severity:<8}  {a.kind.value:<9}  "
                     f"{a.target_kind[0]}:{a.target:<22}  {_ago(a.since, now):<10}  "
                     + "; ".join(notes))
    return "\n".join(lines)
