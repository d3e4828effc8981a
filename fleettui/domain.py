"""Plain domain objects shared by the engine, the store and the views.

Imports nothing of fleettui: these are the words every layer speaks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, TypedDict


class DeviceStatus(StrEnum):
    """Where a device stands, as far as the poller knows."""

    UNKNOWN = "unknown"  # never checked yet
    ONLINE = "online"  # answered its last check
    OFFLINE = "offline"  # does not answer (timeouts, refused, unreachable)
    ERROR = "error"  # answers, but wrongly (bad comm key, garbage, wrong serial)


class FailureKind(StrEnum):
    """Why a device operation failed; decides offline versus error."""

    UNREACHABLE = "unreachable"  # no answer in time, no route
    REFUSED = "refused"  # the host said no: connection refused or reset
    AUTH = "auth"  # wrong or missing comm key
    PROTOCOL = "protocol"  # the device answered something that is not the protocol
    IDENTITY = "identity"  # a different device answers at this address

    @property
    def status(self) -> DeviceStatus:
        """The status a device with this failure is in."""
        if self in (FailureKind.UNREACHABLE, FailureKind.REFUSED):
            return DeviceStatus.OFFLINE
        return DeviceStatus.ERROR


class TzFlag(StrEnum):
    """How a device's naive local time maps to UTC in its site's zone."""

    OK = "ok"
    AMBIGUOUS = "ambiguous"  # the hour repeated when clocks went back (first one taken)
    NONEXISTENT = "nonexistent"  # the hour skipped when clocks went forward


@dataclass(frozen=True, slots=True)
class Site:
    """A place with devices, in one time zone."""

    id: str
    name: str
    timezone: str
    address: str = ""


@dataclass(frozen=True, slots=True)
class RawPunch:
    """An attendance record as a device holds it: naive local time, no zone."""

    user_id: str
    local_time: datetime
    #: 0 check-in, 1 check-out, 2 break-out, 3 break-in, 4 OT-in, 5 OT-out
    state: int
    #: 0 password, 1 fingerprint, 2 card, 15 face
    verify: int


class SyncCursor(NamedTuple):
    """How far a device's attendance log is stored: the next download starts after it.

    ``tail`` is opaque to all but the sync that wrote it (a fingerprint of the last
    record stored, to tell a log that was cleared or rewritten from one that grew).
    """

    stored: int  # records of the device's log already stored
    tail: str


@dataclass(frozen=True, slots=True)
class Punch:
    """A stored punch: the device's local time, the site's zone and UTC, all kept."""

    device_id: str
    user_id: str
    local_time: datetime
    timezone: str
    utc_time: datetime
    tz_flag: TzFlag
    state: int
    verify: int
    source: str  # "sync" or "live"
    received_at: datetime
    clock_drift_s: float | None = None
    id: int | None = None


@dataclass(slots=True)
class DeviceState:
    """A device as the store knows it: configuration, identity, health and counters."""

    id: str
    serial: str
    site_id: str
    host: str
    port: int
    transport: str
    name: str = ""
    enabled: bool = True
    model: str | None = None
    firmware: str | None = None
    platform: str | None = None
    mac: str | None = None
    status: DeviceStatus = DeviceStatus.UNKNOWN
    status_reason: str = ""
    status_since: datetime | None = None
    last_seen: datetime | None = None
    users: int | None = None
    users_cap: int | None = None
    records: int | None = None
    records_cap: int | None = None
    clock_drift_s: float | None = None
    clock_checked_at: datetime | None = None
    last_sync_at: datetime | None = None
    last_punch_at: datetime | None = None
    synced_records: int = 0
    #: who declared the device: "config" (the config file) or "api" (registered over HTTP)
    origin: str = "config"
    #: a push device's address, as its last request came from (pull devices: "")
    push_address: str = ""

    @property
    def push(self) -> bool:
        """Whether the device dials in (push protocol) rather than being polled."""
        return self.transport == "push"

    @property
    def buffer_fill(self) -> float | None:
        """Share of the record buffer in use, 0..1, when known."""
        if self.records is None or not self.records_cap:
            return None
        return self.records / self.records_cap


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What the engine needs to poll one device, wherever it was declared.

    ``comm_key`` is the device's password: left out of the repr.
    """

    id: str
    serial: str
    site_id: str
    host: str
    port: int
    transport: str = "tcp"
    comm_key: int = field(default=0, repr=False)
    #: real-time punch events; None follows the config's [poll] live_capture
    live_capture: bool | None = None
    name: str = ""
    enabled: bool = True
    origin: str = "config"
    #: the site's time zone (filled in when read from the store)
    timezone: str = ""


class DeviceChanges(TypedDict, total=False):
    """A change to a device of the store's own: only the fields given change."""

    site_id: str
    host: str
    port: int
    transport: str
    comm_key: int
    live_capture: bool | None
    name: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One transition of a device's status."""

    device_id: str
    status: DeviceStatus
    reason: str
    at: datetime
    previous: DeviceStatus | None = None


class EventKind(StrEnum):
    """What one line of the event log says happened: the only kinds the log holds."""

    SITE_CREATED = "site.created"
    DEVICE_REGISTERED = "device.registered"
    DEVICE_MOVED = "device.moved"
    DEVICE_UPDATED = "device.updated"
    DEVICE_REMOVED = "device.removed"
    # a status transition: one kind per DeviceStatus (see for_status)
    DEVICE_UNKNOWN = "device.unknown"
    DEVICE_ONLINE = "device.online"
    DEVICE_OFFLINE = "device.offline"
    DEVICE_ERROR = "device.error"
    DEVICE_OPERATION = "device.operation"  # a push device told of something done on it
    SYNC = "sync"  # a download of a device's attendance brought new punches
    PUNCH = "punch"  # a punch heard live, as it was made
    # a command's life: one kind per CommandState (see for_command)
    COMMAND_QUEUED = "command.queued"
    COMMAND_SENT = "command.sent"
    COMMAND_DONE = "command.done"
    COMMAND_FAILED = "command.failed"
    COMMAND_EXPIRED = "command.expired"
    ALERT_OPENED = "alert.opened"
    ALERT_ESCALATED = "alert.escalated"
    ALERT_REMINDER = "alert.reminder"
    ALERT_RESOLVED = "alert.resolved"
    ALERT_ACKNOWLEDGED = "alert.acknowledged"
    SILENCE_ADDED = "silence.added"
    SILENCE_ENDED = "silence.ended"
    SILENCE_EXPIRED = "silence.expired"
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_UPDATED = "webhook.updated"
    WEBHOOK_DELETED = "webhook.deleted"
    WEBHOOK_DEAD = "webhook.dead"
    SCHEDULE_SKIPPED = "schedule.skipped"
    # read back from a log written by another fleettui version, with a kind this one lacks
    OTHER = "other"

    @classmethod
    def for_status(cls, status: DeviceStatus) -> EventKind:
        """The kind of the event that says a device entered ``status``."""
        return cls(f"device.{status.value}")

    @classmethod
    def for_command(cls, state: CommandState) -> EventKind:
        """The kind of the event that says a command reached ``state``."""
        return cls(f"command.{state.value}")

    @classmethod
    def read(cls, text: str) -> EventKind:
        """The kind stored as ``text`` (OTHER if this version does not know it)."""
        try:
            return cls(text)
        except ValueError:
            return cls.OTHER


class WebhookEvent(StrEnum):
    """The event types the webhook outbox carries, as receivers see them."""

    PUNCH_CREATED = "punch.created"
    DEVICE_ONLINE = "device.online"
    DEVICE_OFFLINE = "device.offline"
    DEVICE_FLAPPING = "device.flapping"
    DEVICE_STABLE = "device.stable"
    COMMAND_COMPLETED = "command.completed"
    COMMAND_FAILED = "command.failed"
    ALERT_OPENED = "alert.opened"
    ALERT_RESOLVED = "alert.resolved"
    ALERT_ESCALATED = "alert.escalated"


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the event log, in commit order (ids only grow)."""

    id: int
    at: datetime
    kind: EventKind
    message: str
    device_id: str | None = None
    site_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class CommandState(StrEnum):
    """Where a remote command is in its life."""

    QUEUED = "queued"  # waiting for the device (offline devices get it when back)
    SENT = "sent"  # being run on the device now
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"  # its time to live ran out before the device could take it

    @property
    def final(self) -> bool:
        """Whether the command will not change any more."""
        return self in (CommandState.DONE, CommandState.FAILED, CommandState.EXPIRED)


class Submission(NamedTuple):
    """A command request as queued, and whether this submission queued it (False: the
    idempotency key had already queued the same request, which comes back)."""

    request: CommandRequest
    created: bool


@dataclass(slots=True)
class Command:
    """One command for one device, as queued in the store."""

    id: int
    request_id: int
    device_id: str
    command: str
    params: dict[str, Any]
    state: CommandState
    attempts: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: str = ""


@dataclass(slots=True)
class CommandRequest:
    """What an operator asked for: one command to a device or to every device of a site."""

    id: int
    target: str
    target_kind: str  # "device" or "site"
    command: str
    params: dict[str, Any]
    source: str
    created_at: datetime
    idempotency_key: str | None = None
    commands: list[Command] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        """How many of its commands are in each state."""
        counts = {s.value: 0 for s in CommandState}
        for c in self.commands:
            counts[c.state.value] += 1
        counts["total"] = len(self.commands)
        return counts


class AlertKind(StrEnum):
    """What an alert is about."""

    OFFLINE = "offline"  # a device stayed offline past the confirmation delay
    ERROR = "error"  # a device stayed in error past the confirmation delay
    FLAPPING = "flapping"  # a device's link keeps going up and down
    SITE_DOWN = "site_down"  # (nearly) every device of a site down together: power or uplink


@dataclass(slots=True)
class Alert:
    """One alert, open or resolved, as the store keeps it."""

    id: int
    target_kind: str  # "device" or "site"
    target: str
    site_id: str | None
    kind: AlertKind
    severity: str  # "warning" or "critical"
    state: str  # "open" or "resolved"
    reason: str
    since: datetime
    opened_at: datetime
    resolved_at: datetime | None = None
    escalated_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str = ""
    notified: bool = False
    last_notified_at: datetime | None = None
    notifications: int = 0

    @property
    def open(self) -> bool:
        """Whether the alert is still open."""
        return self.state == "open"


@dataclass(frozen=True, slots=True)
class Silence:
    """No notifications for a device or a site (all its devices) until ``until``."""

    id: int
    target: str
    until: datetime
    reason: str
    created_by: str
    created_at: datetime
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An HTTP API key as the store knows it: never the key, only its first characters."""

    id: int
    name: str
    role: str  # "viewer", "operator" or "admin"
    prefix: str  # the key's first 8 characters, to tell keys apart
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def live(self) -> bool:
        """Whether the key still opens the API (not revoked)."""
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class PendingDevice:
    """A push device that called without being known: held until approved onto a site."""

    serial: str
    address: str
    firmware: str
    push_version: str
    first_seen: datetime
    last_seen: datetime
    requests: int


@dataclass(frozen=True, slots=True)
class Liveness:
    """What one successful check of a pull device learnt: when it answered and its
    counters (None: not read). The engine writes these in batches, about once a second."""

    device_id: str
    at: datetime
    users: int | None = None
    users_cap: int | None = None
    records: int | None = None
    records_cap: int | None = None


@dataclass(frozen=True, slots=True)
class FleetChanges:
    """The devices with a ``device.*`` event (status, registration, move, update,
    removal) in a range of the event log, and the newest event id it reached."""

    newest_event: int
    device_ids: list[str]


#: the lease of the work that belongs to no site (webhook events of no device), held by one
#: poller at a time when several share a database
FLEET_LEASE = "*"


@dataclass(frozen=True, slots=True)
class PollerInfo:
    """One poller process sharing a database: who it is, and until when it counts as alive
    (it renews that every few seconds; a poller killed stops renewing)."""

    id: str
    pid: int
    host: str
    mode: str
    started_at: datetime
    seen_at: datetime
    expires_at: datetime
    #: the sites whose leases it holds (with "*": the work of no site), in id order
    sites: tuple[str, ...] = ()

    def live(self, now: datetime) -> bool:
        """Whether it still counts as alive at ``now``."""
        return self.expires_at > now


@dataclass(frozen=True, slots=True)
class SiteLease:
    """Which poller holds a site (``"*"``: the work of no site), since when, until when."""

    site_id: str
    poller_id: str
    since: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class PushContact:
    """The latest a push device said of itself: when it last called, from where, with
    what counters (None: not said since the last time)."""

    device_id: str
    at: datetime
    address: str
    push_version: str = ""
    firmware: str | None = None
    users: int | None = None
    records: int | None = None
    records_cap: int | None = None
    #: the stamps its last uploads carried (None: none since the last time)
    attlog_stamp: str | None = None
    operlog_stamp: str | None = None


@dataclass(frozen=True, slots=True)
class PushUser:
    """A user a push device holds, as its uploads (``USER`` lines) or our syncs told."""

    pin: str
    name: str = ""
    privilege: int = 0
    card: str = ""


class PushStamps(NamedTuple):
    """The upload stamps a push device sent last, echoed in its next handshake (opaque)."""

    attlog: str
    operlog: str


@dataclass(frozen=True, slots=True)
class PushLine:
    """One line sent to a push device for a queued command: ``C:<id>:<text>``."""

    id: int
    command_id: int
    device_id: str
    text: str
    state: str  # "queued", "sent", "done" or "failed"
    return_code: int | None = None
    result: dict[str, str] = field(default_factory=dict)
    #: when it was handed to the device (None while queued)
    sent_at: datetime | None = None


class NewApiKey(NamedTuple):
    """A key just made: the only time the key itself is seen (the store keeps its hash)."""

    id: int
    key: str


class KeyGrant(NamedTuple):
    """What a live key presented to the API is: its id and its role."""

    id: int
    role: str


@dataclass(frozen=True, slots=True)
class FlapState:
    """What the flap detector remembers of a device between runs."""

    device_id: str
    history: str  # the recent checks, oldest first: "1" online, "0" not
    flapping: bool
    percent: float  # the weighted percent state change over ``history``


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A receiver of webhooks the store knows: mirrored from the config, or its own.

    ``secret`` and ``previous_secret`` are filled only when asked for (the
    dispatcher asks; views never do), and a config endpoint's stay in the file.
    """

    id: str
    origin: str  # "config" (mirrored at start) or "api" (the store's own)
    delivery_key: str  # names the endpoint's delivery queue
    url: str
    events: tuple[str, ...]  # event types wanted; "*" or a "prefix.*" pattern matches many
    enabled: bool
    hex_signature_header: str | None
    timeout_s: float
    created_at: datetime
    #: when the previous secret stops signing (not a secret itself; None: no rotation)
    previous_secret_until: datetime | None = None
    secret: str = field(default="", repr=False)
    previous_secret: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class ConfigEndpoint:
    """A webhook endpoint of the config file, as the store mirrors it for every view to list.

    Its secret is not here: it stays in the file, read by the poller's dispatcher.
    """

    id: str
    url: str  # also names the endpoint's delivery queue
    events: tuple[str, ...]
    enabled: bool = True
    hex_signature_header: str | None = None
    timeout_s: float = 10.0


class EndpointChanges(TypedDict, total=False):
    """A change to a webhook endpoint of the store's own: only the fields given change."""

    url: str
    events: Sequence[str]
    enabled: bool
    hex_signature_header: str | None  # None removes it
    timeout_s: float


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """Webhook deliveries (of one endpoint, or all) by state, and how fast they went."""

    pending: int = 0
    delivered: int = 0
    dead: int = 0
    avg_latency_ms: float | None = None  # mean of the delivered ones; None: none yet


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event's delivery to one endpoint: where it stands, and how its tries went."""

    endpoint: str  # the queue's key (a config endpoint's URL, an API endpoint's id)
    endpoint_id: str | None  # the endpoint's id; None when it is gone from the config
    url: str | None  # the endpoint's URL; None when it is gone from the config
    outbox_id: int  # the event's stable id (its webhook-id is msg_<outbox_id>)
    event_type: str
    device_id: str | None
    state: str  # "pending", "delivered" or "dead"
    attempts: int
    last_error: str
    created_at: datetime
    next_attempt_at: datetime | None  # for a dead one: when it gave up
    delivered_at: datetime | None
    latency_ms: float | None


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """An event due to be sent to one endpoint now, with what sending it needs."""

    outbox_id: int  # the event's stable id (its webhook-id is msg_<outbox_id>)
    device_id: str | None
    event_type: str
    payload: str  # the JSON body, as it was stored with the fact
    attempts: int  # tries so far
    created_at: datetime  # when it was queued for the endpoint (its age decides "dead")


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How one attempt at a delivery went, for the store to record."""

    outbox_id: int
    ok: bool
    latency_ms: float | None = None
    error: str = ""  # what failed, in full (admins read it)
    error_class: str = ""  # what failed in a word ("timeout"): all a webhook.dead event says
    dead: bool = False  # gave up: no more retries until a replay
    retry_at: datetime | None = None  # when to try again (not dead)
