"""Punch sync: from a device's attendance log to stored punches, exactly once, in order.

A device keeps naive local time. Each record is stored with that raw time,
its site's IANA zone, the UTC instant it maps to (with a flag for the hours
DST makes ambiguous or skips) and the device clock's measured drift, so a
later fix of a zone or a clock can recompute everything.

Zero loss: punches are inserted in batches, each batch one transaction with
its webhook outbox rows; the sync cursor (how many of the device's records
are stored, and a fingerprint of the last) only advances in the transaction
that stores the last batch. A crash anywhere means the next sync reads the
log again and the unique key drops what was already stored. fleettui never
clears a device's log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fleettui.devices.base import AttendanceDump
from fleettui.domain import Punch, RawPunch, SyncCursor, TzFlag
from fleettui.store import Store


def to_utc(local: datetime, zone: ZoneInfo) -> tuple[datetime, TzFlag]:
    """Map a naive local time in ``zone`` to UTC.

    Ambiguous times (the repeated hour when clocks go back) take the first
    occurrence; nonexistent ones (the skipped hour) take the offset in force
    before the change. Both are flagged.
    """
    off0 = zone.utcoffset(local)
    off1 = zone.utcoffset(local.replace(fold=1))
    assert off0 is not None and off1 is not None  # a ZoneInfo always has an offset
    first = (local - off0).replace(tzinfo=UTC)
    if off0 == off1:
        return first, TzFlag.OK
    if first.astimezone(zone).replace(tzinfo=None) != local:
        return first, TzFlag.NONEXISTENT
    return first, TzFlag.AMBIGUOUS


def drift_seconds(device_time: datetime, zone: ZoneInfo, now: datetime) -> float:
    """How far the device clock (naive local) is ahead of true local time, in seconds."""
    true_local = now.astimezone(zone).replace(tzinfo=None)
    return (device_time - true_local).total_seconds()


def make_punch(
    device_id: str,
    raw: RawPunch,
    zone: ZoneInfo,
    *,
    source: str,
    received_at: datetime,
    clock_drift_s: float | None,
) -> Punch:
    """A device's raw record as a punch to store."""
    utc, flag = to_utc(raw.local_time, zone)
    return Punch(
        device_id=device_id,
        user_id=raw.user_id,
        local_time=raw.local_time,
        timezone=zone.key,
        utc_time=utc,
        tz_flag=flag,
        state=raw.state,
        verify=raw.verify,
        source=source,
        received_at=received_at,
        clock_drift_s=clock_drift_s,
    )


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """How far a running sync has got: records stored of those to store (None: still reading)."""

    done: int
    total: int | None
    started_at: datetime


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one sync did."""

    read: int
    new: int
    skipped: int
    bad_records: int


async def store_dump(
    store: Store,
    device_id: str,
    zone: ZoneInfo,
    dump: AttendanceDump,
    *,
    now: datetime,
    clock_drift_s: float | None,
    batch: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> SyncResult:
    """Store every record of ``dump`` not stored yet, oldest first; advance the cursor.

    ``progress(stored, total)`` is called before the first batch and after each
    one (cheap: a view reads it, nothing is written for it).
    """
    stored, tail = await store.sync_cursor(device_id)
    start = 0
    if 0 < stored <= len(dump.records) and dump.fingerprints[stored - 1] == tail:
        start = stored  # the log still starts with what we stored: read on from there
    fresh: Sequence[RawPunch] = dump.records[start:]
    ordered = sorted(fresh, key=lambda r: r.local_time)  # stable: device order within a second
    punches = [
        make_punch(device_id, r, zone, source="sync", received_at=now,
                   clock_drift_s=clock_drift_s)
        for r in ordered
    ]
    end_cursor = SyncCursor(len(dump.records), dump.fingerprints[-1] if dump.fingerprints else "")
    new = 0
    if progress is not None:
        progress(0, len(punches))
    if not punches:
        await store.insert_punches(device_id, [], cursor=end_cursor, synced_at=now)
    for i in range(0, len(punches), batch):
        last = i + batch >= len(punches)
        new += await store.insert_punches(
            device_id,
            punches[i : i + batch],
            cursor=end_cursor if last else None,
            synced_at=now if last else None,
        )
        if progress is not None:
            progress(min(i + batch, len(punches)), len(punches))
    return SyncResult(read=len(dump.records), new=new, skipped=start,
                      bad_records=dump.bad_records)
