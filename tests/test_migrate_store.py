"""``fleettui migrate-store``: a SQLite store copied into a new PostgreSQL database reads
back the same through the store's interface, ids included, and a second copy is refused."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleettui.domain import AlertKind, DeviceState, DeviceStatus, Punch, Site, StatusChange, TzFlag
from fleettui.store import DatabaseUrl, Store, open_store
from fleettui.store.migrate import MigrationRefused, migrate_store

T0 = datetime(2026, 3, 28, 8, 0, tzinfo=UTC)


async def _a_lived_in_store(path: Path) -> None:
    """A SQLite store with a bit of everything: fleet, history, punches of two months,
    a command, an alert, a key, an endpoint with deliveries."""
    store = await open_store(path)
    try:
        await store.sync_fleet(
            [Site("wh-a", "Warehouse A", "Africa/Casablanca"), Site("of-b", "Office", "UTC")],
            [DeviceState("dev_a1", "SER1", "wh-a", "127.0.0.2", 4370, "tcp"),
             DeviceState("dev_b1", "SER2", "of-b", "127.0.0.3", 4370, "udp")])
        await store.record_status(StatusChange("dev_a1", DeviceStatus.ONLINE, "", T0))
        await store.record_status(StatusChange("dev_a1", DeviceStatus.OFFLINE, "timed out",
                                               T0 + timedelta(minutes=5), DeviceStatus.ONLINE))
        punches = [Punch("dev_a1", str(1000 + i), datetime(2026, 2 + i % 2, 10, 8, i),
                         "Africa/Casablanca", datetime(2026, 2 + i % 2, 10, 7, i, tzinfo=UTC),
                         TzFlag.OK, 0, 1, "sync", T0) for i in range(40)]
        await store.insert_punches("dev_a1", punches, cursor=(40, "tail"), synced_at=T0)
        await store.submit_command(target="dev_b1", target_kind="device", device_ids=["dev_b1"],
                                   command="restart", params={}, fingerprint="f", source="cli",
                                   now=T0, idempotency_key="once")
        await store.open_alert(target_kind="device", target="dev_a1", site_id="wh-a",
                               kind=AlertKind.OFFLINE, severity="warning", reason="timed out",
                               since=T0, now=T0, notify=True)
        await store.create_api_key("admin", "ops", T0)
        await store.create_webhook_endpoint("erp", url="https://erp.example/hook",
                                            events=["*"], secret="whsec_x", enabled=True,
                                            hex_signature_header=None, timeout_s=5.0, now=T0)
        await store.webhook_enqueue("https://erp.example/hook", ["*"], T0)
    finally:
        await store.close()


async def _picture(store: Store) -> dict[str, object]:
    """What the views read of a store, for comparing two."""
    return {
        "devices": await store.devices(),
        "history": await store.status_history("dev_a1"),
        "punches": await store.punches(),
        "cursor": await store.sync_cursor("dev_a1"),
        "events": await store.events_after(0),
        "commands": await store.commands(),
        "alerts": await store.alerts(open_only=False),
        "keys": await store.api_keys(),
        "endpoints": await store.webhook_endpoints(),
        "outbox": await store.outbox_count(),
    }


async def test_a_copied_store_reads_back_the_same_and_goes_on_from_its_ids(
    tmp_path: Path, pg_url: str,
) -> None:
    source = tmp_path / "fleet.db"
    await _a_lived_in_store(source)
    copies = await migrate_store(source, DatabaseUrl(pg_url))
    by_table = {c.table: c for c in copies}
    assert by_table["punches"].copied == 40 and by_table["events"].copied > 0
    assert all(c.source == c.copied for c in copies)

    old, new = await open_store(source), await open_store(pg_url)
    try:
        assert await _picture(new) == await _picture(old)
        last = await old.last_event_id()
        event = await new.add_event("sync", "after the move", at=T0)
        assert event.id == last + 1  # ids go on where the copy left off
        assert await new.api_key_role("not-a-key", T0) is None
    finally:
        await old.close()
        await new.close()

    with pytest.raises(MigrationRefused, match="is not empty"):
        await migrate_store(source, DatabaseUrl(pg_url))


def test_the_command_copies_and_refuses_what_it_cannot_do(tmp_path: Path, pg_url: str) -> None:
    import asyncio

    source = tmp_path / "fleet.db"
    asyncio.run(_a_lived_in_store(source))
    fleettui = [sys.executable, "-m", "fleettui"]
    done = subprocess.run([*fleettui, "migrate-store", "--from", str(source), "--to", pg_url],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "punches" in done.stdout and "every table's count checked" in done.stdout
    again = subprocess.run([*fleettui, "migrate-store", "--from", str(source), "--to", pg_url],
                           capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 1 and "is not empty" in again.stderr
    wrong = subprocess.run([*fleettui, "migrate-store", "--from", pg_url, "--to", pg_url],
                           capture_output=True, text=True, timeout=120, check=False)
    assert wrong.returncode == 2 and "--from takes a SQLite file" in wrong.stderr
