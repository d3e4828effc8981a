"""The store's one typed interface: what every backend answers, in domain objects.

Callers (engine, views, CLI) hold a ``Store`` and open one with
``fleettui.store.open_store``; they never see rows, SQL or a backend's time
text. Every write is a transaction of its own: what it writes is committed
whole or not at all, and no read sees it before it commits. Times go in and
come out as aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from fleettui.domain import (
    Alert,
    AlertKind,
    ApiKey,
    Command,
    CommandRequest,
    DeviceChanges,
    DeviceSpec,
    DeviceState,
    Event,
    EventKind,
    FlapState,
    FleetChanges,
    KeyGrant,
    Liveness,
    NewApiKey,
    Punch,
    Silence,
    Site,
    StatusChange,
    SyncCursor,
)
from fleettui.store.command_interface import CommandStore
from fleettui.store.lease_interface import LeaseStore
from fleettui.store.push_interface import PushStore
from fleettui.store.webhook_interface import WebhookStore


class Store(CommandStore, WebhookStore, PushStore, LeaseStore, Protocol):
    """fleettui's database: the source of truth and the integration point (its command,
    webhook, push and lease questions are those of ``CommandStore``, ``WebhookStore``,
    ``PushStore`` and ``LeaseStore``).

    Open one with ``open_store(path)``; close it with ``close()``. Refusals
    raise the errors of ``fleettui.store.errors``.
    """

    # --- the database ----------------------------------------------------------
    async def close(self) -> None:
        """Close both connections (waits for the write in progress)."""
        ...

    async def schema_version(self) -> int:
        """How many migrations have run."""
        ...

    # --- fleet: sites and devices ----------------------------------------------
    async def sync_fleet(self, sites: Iterable[Site], devices: Iterable[DeviceState]) -> None:
        """Make the store's sites and devices match the configuration.

        Configuration fields are updated; what the poller learned (status,
        identity, counters, sync cursor) is kept. Devices no longer
        configured are marked removed, never deleted (their punches stay).
        Sites and devices created through the API (origin "api") are the store's
        own and are kept; a configured one of the same id takes such a one over.
        """
        ...

    async def create_site(self, site: Site, now: datetime) -> bool:
        """Add a site of the store's own (origin "api"); False if the id is taken.

        A site once configured and since removed keeps its id (its punches
        and history still name it), so that id is taken too; so is a device's.
        """
        ...

    async def register_devices(
        self, devices: Sequence[DeviceSpec], now: datetime, *, site: Site | None = None,
        move: Sequence[str] = (),
    ) -> list[DeviceState]:
        """Add devices of the store's own (origin "api"), all or none.

        With ``site``, the site is created first (origin "api") and every device
        is placed there, including the existing API devices named in ``move``.
        A device whose id was removed comes back (history and sync cursor kept)
        only with the same serial. Raises FleetConflict for a taken id, serial
        or address, an unknown site, or a device the config file places.
        """
        ...

    async def update_api_device(self, device_id: str, changes: DeviceChanges,
                                now: datetime) -> DeviceState:
        """Change a device of the store's own: any of site_id, host, port, transport,
        comm_key, live_capture, name, enabled. FleetConflict: unknown (404), placed
        by the config file (409), or the change collides with another device."""
        ...

    async def remove_api_device(self, device_id: str, now: datetime) -> None:
        """Stop knowing a device of the store's own: marked removed, never deleted (its
        punches and history stay). FleetConflict: unknown (404), or the config's (409)."""
        ...

    async def api_device_specs(self) -> list[DeviceSpec]:
        """The devices of the store's own that are enabled, with their site's time zone."""
        ...

    async def sites(self) -> list[Site]:
        """Every configured site."""
        ...

    async def devices(self, site_id: str | None = None) -> list[DeviceState]:
        """Every configured device (of one site, if given), in id order."""
        ...

    async def device(self, device_id: str, *, removed: bool = True) -> DeviceState | None:
        """One device, or None; ``removed=False``: None for a device no longer in the fleet."""
        ...

    # --- health ----------------------------------------------------------------
    async def record_status(self, change: StatusChange) -> Event:
        """A status transition: the device's status, its history and the event log (and
        the device.online/offline webhook event), in one transaction."""
        ...

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
        ...

    async def record_seen_many(self, seen: Sequence[Liveness]) -> None:
        """Many successful checks in one transaction (the engine's liveness batch: 500
        checks a second would otherwise be 500 write transactions)."""
        ...

    async def record_identity(
        self, device_id: str, *, model: str, firmware: str, platform: str, mac: str
    ) -> None:
        """What the device said it is, read on connect."""
        ...

    async def record_clock(self, device_id: str, drift_s: float, at: datetime) -> None:
        """The device clock's offset from true local time, measured at ``at``."""
        ...

    async def status_history(
        self, device_id: str, since: datetime | None = None
    ) -> list[StatusChange]:
        """Transitions of a device, oldest first; with ``since``, the one in force then too."""
        ...

    async def uptime(self, device_id: str, window: timedelta, now: datetime) -> float | None:
        """Share of ``window`` before ``now`` the device was online, 0..1.

        Time before its first known status (or while unknown) does not count;
        None when nothing is known in the window.
        """
        ...

    async def flap_states(self) -> dict[str, FlapState]:
        """Each device's remembered flap state, by device id."""
        ...

    async def save_flap_states(
        self, states: Sequence[FlapState], now: datetime
    ) -> None:
        """Remember each device's flap state (changed at ``now``)."""
        ...

    # --- punches ---------------------------------------------------------------
    async def insert_punches(
        self,
        device_id: str,
        punches: Sequence[Punch],
        *,
        cursor: SyncCursor | None = None,
        synced_at: datetime | None = None,
    ) -> int:
        """Store punches not stored yet, with their webhook events, in one transaction.

        Duplicates (same device, user, local time, state and verify type) are
        ignored. ``cursor`` (records now stored, fingerprint of the last one)
        advances the device's sync cursor in the same transaction, so a crash
        can never leave the cursor ahead of the punches. Returns how many
        punches were new.
        """
        ...

    async def sync_cursor(self, device_id: str) -> SyncCursor:
        """How far the device's log is stored (nothing stored yet: 0 records)."""
        ...

    async def punches(
        self,
        *,
        since: datetime | None = None,
        site_id: str | None = None,
        device_id: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        until: datetime | None = None,
    ) -> list[Punch]:
        """Stored punches in UTC order (then id), filtered: a UTC time in [since, until)."""
        ...

    async def punch_count(self, device_id: str | None = None) -> int:
        """How many punches are stored (for one device, if given)."""
        ...

    async def outbox_count(self) -> int:
        """Events waiting in the webhook outbox."""
        ...

    # --- alerts and silences ---------------------------------------------------
    async def open_alert(
        self,
        *,
        target_kind: str,
        target: str,
        site_id: str | None,
        kind: AlertKind,
        severity: str,
        reason: str,
        since: datetime,
        now: datetime,
        notify: bool,
    ) -> Alert:
        """Open an alert (event, and webhook event when notified, in one transaction); if
        one of that kind is already open for the target (another poller opened it), that
        one comes back and nothing is written."""
        ...

    async def update_alert(
        self,
        alert: Alert,
        now: datetime,
        *,
        change: str,
        notify: bool,
        severity: str | None = None,
    ) -> Alert:
        """Resolve, escalate or remind: ``change`` is "resolved", "escalated" or "reminder".
        A change another process made since ``alert`` was read is not made again: the
        alert comes back as it stands."""
        ...

    async def acknowledge_alert(self, alert_id: int, by: str, now: datetime) -> Alert | None:
        """Acknowledge an open alert (stops its reminders); None if no such open alert."""
        ...

    async def alerts(self, *, open_only: bool = True, limit: int = 500) -> list[Alert]:
        """Alerts, newest first (only open ones by default)."""
        ...

    async def add_silence(
        self, target: str, until: datetime, reason: str, by: str, now: datetime
    ) -> Silence:
        """Silence a device or a site until ``until``."""
        ...

    async def end_silence(self, silence_id: int, now: datetime) -> Silence | None:
        """End a silence in force now; None if there is no such silence in force."""
        ...

    async def active_silences(self, now: datetime) -> list[Silence]:
        """Silences in force; those past their end are closed (with an event) first."""
        ...

    # --- API keys --------------------------------------------------------------
    async def create_api_key(self, role: str, name: str, now: datetime) -> NewApiKey:
        """Make a key. Only its SHA-256 is stored: show the key once."""
        ...

    async def api_key_role(self, key: str, now: datetime, *,
                           record_use: bool = True) -> KeyGrant | None:
        """The id and role of a live key, or None; records its use unless ``record_use`` is False
        (a read only: the HTTP API records uses itself, at most once a minute)."""
        ...

    async def record_api_key_use(self, key_id: int, now: datetime) -> None:
        """Write that key ``key_id`` was used at ``now`` (its ``last_used_at``)."""
        ...

    async def api_keys(self) -> list[ApiKey]:
        """Every key's id, name, role, prefix and dates (never the key)."""
        ...

    async def revoke_api_key(self, key_id: int, now: datetime) -> bool:
        """Revoke a key; False if there is no such live key."""
        ...

    # --- device sessions -------------------------------------------------------
    async def remember_session(self, device_id: str, session_id: int, at: datetime) -> None:
        """A UDP session was opened on a device (it holds a slot until CMD_EXIT)."""
        ...

    async def forget_sessions(self, device_id: str, session_ids: Iterable[int]) -> None:
        """Sessions of a device that were said goodbye to."""
        ...

    async def open_sessions(self, device_id: str) -> list[int]:
        """The device's sessions not known to be closed, oldest first."""
        ...

    # --- events ----------------------------------------------------------------
    async def add_event(
        self,
        kind: EventKind,
        message: str,
        *,
        at: datetime,
        device_id: str | None = None,
        site_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Event:
        """Append one line to the event log."""
        ...

    async def last_event_id(self) -> int:
        """The id of the newest event (0 when the log is empty)."""
        ...

    async def wait_for_events(self, after_id: int, timeout_s: float) -> bool:
        """Wait until the log holds an event above ``after_id`` (True) or ``timeout_s``
        passes (False): how a view in another process hears of new events without reading
        the log over and over (PostgreSQL: LISTEN/NOTIFY)."""
        ...

    async def events_after(self, last_id: int = 0, limit: int = 1000) -> list[Event]:
        """Events with an id above ``last_id``, in order: how views tail the log."""
        ...

    async def devices_changed_after(self, last_id: int) -> FleetChanges:
        """The devices with a ``device.*`` event (a status transition, a registration,
        a move, an update, a removal) above ``last_id``, up to the newest event: how
        the alert engine follows the fleet without reading all of it."""
        ...

    # --- panel queries (the control room's device and site panels) -------------
    async def punches_per_minute(
        self, start: datetime, end: datetime, *, device_id: str | None = None,
        site_id: str | None = None,
    ) -> dict[datetime, int]:
        """Punches with a UTC time in [start, end), counted per UTC minute (the
        minute's start as the key); ``device_id`` / ``site_id`` narrow it. Cheap
        enough to run every second: counted where the punches are, never loaded.
        """
        ...

    async def punches_per_device(self, start: datetime, end: datetime) -> dict[str, int]:
        """Punches with a UTC time in [start, end), counted per device (devices without
        one are left out): the fleet table's "today" column. Counted where the punches
        are, over the time index; about one day of the fleet's punches per call.
        """
        ...

    async def site_status_history(
        self, site_id: str, since: datetime
    ) -> dict[str, list[StatusChange]]:
        """Each device of a site's transitions since ``since``, with the one in force then,
        by device id (oldest first)."""
        ...

    async def site_requests(self, site_id: str, limit: int = 3) -> list[CommandRequest]:
        """The newest requests aimed at a whole site, newest first, with their commands."""
        ...

    async def site_commands_in_flight(self, site_id: str, limit: int = 50) -> list[Command]:
        """Commands queued for or running on a site's devices, oldest first."""
        ...
