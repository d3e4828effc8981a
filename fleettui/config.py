"""fleettui's configuration: a TOML file, validated into pydantic models.

The file lists the sites and devices of a fleet (the ``[[sites]]`` and
``[[devices]]`` part is exactly what ``fleettui emulate --config-out`` writes)
and, optionally, polling settings, paths and the placeholders of later
features (``[server]``, ``[alerts]``, ``[[webhooks]]``, ``[[schedules]]``).

Bad input is answered with a :class:`ConfigError` that names the file, the key
(in the TOML's own shape: ``devices[2].port``), the line, and what was
expected. Unknown keys are errors, so a typo never silently falls back to a
default. Device comm keys and webhook secrets are secrets: they never appear
in an error message or in a model's repr.

Where things live: :func:`resolve_config_path` and :func:`resolve_db_path`
pick the command line, then the environment (``FLEETTUI_CONFIG``,
``FLEETTUI_DB``), then the config file, then platformdirs' defaults.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import tomllib
import types
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from platformdirs import user_config_path, user_data_path
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from fleettui.egress import url_refusal
from fleettui.store.where import DatabaseUrl, StoreTarget, store_target
from fleettui.tomlkeys import KeyLocator, Loc

__all__ = [
    "CONFIG_ENV",
    "DB_ENV",
    "AlertSettings",
    "Config",
    "ConfigError",
    "DeviceConfig",
    "Paths",
    "PollSettings",
    "Problem",
    "PushSettings",
    "ScheduleConfig",
    "SecuritySettings",
    "ServerSettings",
    "SiteConfig",
    "WebhookConfig",
    "default_config_path",
    "default_db_path",
    "load_config",
    "parse_config",
    "resolve_config_path",
    "resolve_db_path",
]

APP_NAME = "fleettui"
CONFIG_ENV = "FLEETTUI_CONFIG"
"""Environment variable naming the config file (overridden by the command line)."""
DB_ENV = "FLEETTUI_DB"
"""Environment variable naming the database file (overridden by the command line)."""

DEFAULT_PORT = 4370

SITE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SERIAL_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"

_SITE_ID_EXPECTED = (
    "a site id: 1 to 64 lowercase letters, digits, '-' or '_', "
    "starting with a letter or digit"
)
_DEVICE_ID_EXPECTED = (
    "a device id: 1 to 64 letters, digits, '.', '-' or '_', starting with a letter or digit"
)
_SERIAL_EXPECTED = "a serial number: 1 to 32 letters, digits, '-' or '_'"
_HOST_EXPECTED = "an IPv4 or IPv6 address or a host name"
_TZ_EXPECTED = "an IANA time zone name such as 'Europe/Paris'"

# Validation context keys used by parse_config (see Config._check_fleet).
_CTX_RAW_CHECKS = "fleettui_raw_checks"
_CTX_BASE_DIR = "fleettui_base_dir"
# The error type of messages written here, shown to the user verbatim.
_OWN_ERROR = "fleettui"


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file: the key (``devices[2].port``), what, and where.

    ``key`` is empty for problems of the file as a whole (missing, unreadable,
    not TOML); ``line`` is 1-based, or None when no line can be pointed at.
    """

    key: str
    message: str
    line: int | None = None

    def render(self, path: Path | None = None) -> str:
        """This problem as one line: ``fleet.toml:23: devices[2].port: expected ...``."""
        if path is not None:
            where = f"{path}:{self.line}" if self.line is not None else str(path)
        else:
            where = f"line {self.line}" if self.line is not None else ""
        return ": ".join(part for part in (where, self.key, self.message) if part)


class ConfigError(Exception):
    """A config file that cannot be used, with every problem found in it.

    ``str(error)`` is meant for the user: one line per problem, each naming
    the file, line and key. It never contains a secret.
    """

    def __init__(self, problems: Sequence[Problem], path: Path | None = None) -> None:
        self.path: Path | None = path
        self.problems: list[Problem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(problem.render(self.path) for problem in self.problems)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems, self.path))


def _own_error(message: str) -> PydanticCustomError:
    """A validation error whose message is shown as is (no templating of ``{}``)."""
    return PydanticCustomError(_OWN_ERROR, "{message}", {"message": message})


# --------------------------------------------------------------------------- value checks


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def _check_host(value: str) -> str:
    """Accept an IPv4/IPv6 address or an RFC 1123 host name, as written."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if value.startswith("[") and value.endswith("]"):
        raise _own_error(
            f"expected {_HOST_EXPECTED}, got {_show(value)} (write IPv6 addresses without [ ])"
        )
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise _own_error(f"expected {_HOST_EXPECTED}, got {_show(value)}")
    if all(label.isdigit() for label in labels):
        raise _own_error(
            f"expected {_HOST_EXPECTED}, got {_show(value)} (not a valid IPv4 address)"
        )
    return value


def _host_key(host: str) -> str:
    """``host`` normalised for comparison: canonical address, or lowercased name."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower().rstrip(".")


def _check_timezone(value: str) -> str:
    """Accept an IANA time zone name that zoneinfo can load."""
    if not value:
        raise _own_error(f"expected {_TZ_EXPECTED}, got ''")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        hint = ""
        try:
            close = difflib.get_close_matches(value, zoneinfo.available_timezones(), n=1)
        except OSError:  # pragma: no cover - an unreadable zone database
            close = []
        if close:
            hint = f"; did you mean {close[0]!r}?"
        raise _own_error(
            f"unknown time zone {_show(value)} (expected {_TZ_EXPECTED}){hint}"
        ) from None
    return value


def _check_aware(value: datetime | None) -> datetime | None:
    """Accept a time that says its UTC offset (a naive one would be guessed at)."""
    if value is not None and value.tzinfo is None:
        raise _own_error("expected a time with its UTC offset, e.g. 2026-12-01T18:00:00+01:00")
    return value


Host = Annotated[str, AfterValidator(_check_host)]
TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]


def _field(default: Any = ..., *, expected: str | None = None, secret: bool = False,
           **kwargs: Any) -> Any:
    """``pydantic.Field`` plus how to describe the field in an error, and whether it is secret."""
    extra: dict[str, Any] = {}
    if expected is not None:
        extra["expected"] = expected
    if secret:
        extra["secret"] = True
        kwargs.setdefault("repr", False)
    if "default_factory" in kwargs:
        return Field(json_schema_extra=extra or None, **kwargs)
    return Field(default, json_schema_extra=extra or None, **kwargs)


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    """Common settings: unknown keys are errors, TOML types are taken as they are
    (no ``"4370"`` → 4370), no NaN or infinity, and inputs are never echoed by
    pydantic's own error text (they may be secrets)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        allow_inf_nan=False,
        hide_input_in_errors=True,
    )


def _raw_checks(info: ValidationInfo) -> bool:
    """True when parse_config does the cross-field checks itself (to report them all)."""
    return bool(info.context and info.context.get(_CTX_RAW_CHECKS))


class PollSettings(_Model):
    """How devices are polled: liveness checks, timeouts, backoff, worker pool, sync size."""

    check_interval_s: float = Field(4.0, ge=0.5, le=3600)
    """Seconds between liveness checks of one device."""
    timeout_s: float = Field(2.0, ge=0.1, le=120)
    """Socket timeout of one device operation."""
    retry_after_s: float = Field(0.5, ge=0, le=60)
    """Quick re-check after a failed check, before declaring the device offline."""
    offline_after_failures: int = Field(2, ge=1, le=20)
    """Consecutive failed checks before a device is offline."""
    jitter_s: float = Field(1.0, ge=0, le=60)
    """Random spread of the first checks and of each check."""
    backoff_max_s: float = Field(60.0, ge=0.5, le=86400)
    """Longest interval between checks of an offline device (>= check_interval_s).
    When not given: 60, or check_interval_s if that is longer."""
    clock_check_interval_s: float = Field(300.0, ge=10, le=86400)
    """The device clock is read at least this often."""
    live_capture: bool = False
    """Real-time punch events for every device (a device may override it)."""
    workers: int = Field(32, ge=1, le=512)
    """Size of the thread pool that runs blocking device I/O."""
    sync_batch: int = Field(5000, ge=100, le=100_000)
    """Punches committed per transaction during a big sync."""
    bulk_timeout_s: float = Field(30.0, ge=1, le=600)
    """Socket timeout during attendance downloads."""
    lease_s: float = Field(15.0, ge=3, le=600)
    """Several pollers on one PostgreSQL database: how long a poller's hold on a site lasts
    unrenewed (renewed every lease_s / 5; a dead poller's sites are taken over after it)."""

    @model_validator(mode="before")
    @classmethod
    def _default_backoff(cls, data: Any) -> Any:
        """Without an explicit backoff_max_s, never default below check_interval_s."""
        if isinstance(data, dict) and "backoff_max_s" not in data:
            interval = data.get("check_interval_s")
            if isinstance(interval, int | float) and not isinstance(interval, bool):
                data = {**data, "backoff_max_s": max(60.0, float(interval))}
        return data

    @model_validator(mode="after")
    def _check_backoff(self, info: ValidationInfo) -> PollSettings:
        if not _raw_checks(info) and self.backoff_max_s < self.check_interval_s:
            raise ValueError(_backoff_message(self.check_interval_s, self.backoff_max_s))
        return self


def _backoff_message(check_interval_s: float, backoff_max_s: float) -> str:
    return (
        f"expected a number of seconds no smaller than poll.check_interval_s "
        f"({_num(check_interval_s)}), got {_num(backoff_max_s)}"
    )


class Paths(_Model):
    """Where fleettui keeps its files."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    db: Path | DatabaseUrl | None = _field(None,
                                           expected="a file path or a postgresql:// address")
    """The database: a SQLite file (relative paths are relative to the config file's
    directory) or a PostgreSQL database (``postgresql://user@host:port/name``)."""

    @field_validator("db", mode="before")
    @classmethod
    def _database_url(cls, value: Any) -> Any:
        if isinstance(value, str):  # TOML has no paths: text is a file, or an address
            return store_target(value) if value.strip() else Path(value)
        return value

    @field_validator("db", mode="after")
    @classmethod
    def _resolve_db(cls, value: Path | DatabaseUrl | None,
                    info: ValidationInfo) -> Path | DatabaseUrl | None:
        if value is None or isinstance(value, DatabaseUrl):
            return value
        if not str(value) or str(value) == ".":
            raise _own_error("expected a file path, got ''")
        value = value.expanduser()
        base = info.context.get(_CTX_BASE_DIR) if info.context else None
        if not value.is_absolute() and base is not None:
            value = Path(base) / value
        return value


class SiteConfig(_Model):
    """A place with devices; its time zone turns the devices' local time into UTC."""

    id: str = _field(pattern=SITE_ID_PATTERN, expected=_SITE_ID_EXPECTED)
    name: str = Field(min_length=1, max_length=120)
    timezone: TimeZoneName = _field(expected=_TZ_EXPECTED)
    """An IANA zone name (``Africa/Casablanca``)."""
    address: str = Field("", max_length=500)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The site's time zone."""
        return zoneinfo.ZoneInfo(self.timezone)


class DeviceConfig(_Model):
    """One ZKTeco terminal: where it is, how to reach it, and how to poll it.

    ``comm_key`` is the device's numeric password, a secret: it is left out of
    the repr and never shown in errors. A push device with one must give it in
    its handshake (the firmware's ``pushcommkey``) before anything it sends is taken.
    """

    id: str = _field(pattern=DEVICE_ID_PATTERN, expected=_DEVICE_ID_EXPECTED)
    serial: str = _field(pattern=SERIAL_PATTERN, expected=_SERIAL_EXPECTED)
    site: str = _field(pattern=SITE_ID_PATTERN, expected=_SITE_ID_EXPECTED)
    """The id of the [[sites]] entry the device stands at."""
    host: Host | None = _field(None, expected=_HOST_EXPECTED)
    """Where the poller dials the device (a push device dials in: no host)."""
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    transport: Literal["tcp", "udp", "push"] = "tcp"
    """``tcp``/``udp``: polled over the ZK protocol; ``push``: the device calls the push
    listener (ADMS / iclock) on its own."""
    comm_key: int = _field(0, ge=0, le=999_999, secret=True,
                           expected="a number from 0 to 999999")
    name: str = Field("", max_length=120)
    """Display name; empty means show the id."""
    live_capture: bool | None = None
    """Real-time punch events for this device; None follows poll.live_capture."""
    enabled: bool = True
    """A disabled device is listed but never polled."""

    @model_validator(mode="after")
    def _address_by_transport(self) -> DeviceConfig:
        """A polled device needs a host; a push device has none (it dials in)."""
        if self.transport == "push":
            if self.host is not None:
                raise _own_error("a push device dials in: remove its host (its address is "
                                 "learnt from its requests)")
        elif self.host is None:
            raise _own_error("required key 'host' is missing (the device's address), or "
                             'give transport = "push" for a device that dials in')
        return self

    @property
    def push(self) -> bool:
        """Whether the device dials in (push protocol) rather than being polled."""
        return self.transport == "push"

    @property
    def display_name(self) -> str:
        """The name to show: ``name``, or the id when no name is set."""
        return self.name or self.id


def _check_listen(value: str) -> str:
    """``host:port`` (``[v6]:port``) with a valid host and port."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _own_error(f"expected host:port (127.0.0.1:8081), got {_show(value)}")
    _check_host(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    return value


class PushSettings(_Model):
    """The push listener: devices that dial in (ADMS / iclock) instead of being polled.

    Devices send no API key, so it is its own listener, apart from [server]. It binds
    loopback unless told otherwise; put a TLS-terminating reverse proxy in front of it
    to take devices from the internet.
    """

    enabled: bool = False
    listen: Annotated[str, AfterValidator(_check_listen)] = _field(
        "127.0.0.1:8081", expected="host:port")
    """Where the listener binds (``0.0.0.0:8081`` to take devices from the network)."""
    delay_s: int = Field(10, ge=2, le=60)
    """How often devices are told to call (their heartbeat: the handshake's Delay)."""
    offline_after_s: float | None = Field(None, ge=4, le=3600)
    """A device that has not called for this long is offline (default 3 × delay_s)."""
    error_delay_s: int = Field(30, ge=10, le=300)
    """How long a device waits before trying again after a failed request."""
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    """The largest upload taken (the firmware's own maximum package is about 2 MB)."""
    rate_per_serial: float = Field(20.0, ge=0.1, le=1000)
    """Requests per second one serial may make (bursts of 4 × this); more get 503. A
    device catching up on a backlog posts a batch as soon as the last is acknowledged."""
    allow_networks: list[str] = Field(default_factory=list)
    """Source networks devices may call from (CIDR; empty: any)."""

    @property
    def offline_after(self) -> float:
        """Seconds without a call before a device is offline."""
        return self.offline_after_s if self.offline_after_s is not None else 3.0 * self.delay_s

    @property
    def host(self) -> str:
        """The listening address."""
        host = self.listen.rpartition(":")[0]
        return host[1:-1] if host.startswith("[") else host

    @property
    def port(self) -> int:
        """The listening port."""
        return int(self.listen.rpartition(":")[2])

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise _own_error(f"expected a network such as 10.20.0.0/16, got {_show(net)}") \
                    from None
        return value


class ServerSettings(_Model):
    """The optional HTTP API (placeholder: off, and bound to localhost by default)."""

    enabled: bool = False
    host: Host = _field("127.0.0.1", expected=_HOST_EXPECTED)
    port: int = Field(8470, ge=1, le=65535)


class SilenceConfig(_Model):
    """A maintenance window from the config: no notifications for a target until ``until``."""

    target: str = Field(min_length=1, max_length=64)
    until: datetime
    """An ISO time with its UTC offset, e.g. 2026-12-01T18:00:00+01:00."""
    reason: str = Field("", max_length=200)

    _aware = field_validator("until")(classmethod(lambda cls, v: _check_aware(v)))


class AlertSettings(_Model):
    """When a device problem becomes an alert, and how alerts are grouped and repeated."""

    confirm_after_s: float = Field(300.0, ge=0, le=86400)
    """An offline device raises an alert only if still offline after this long."""
    flap_method: Literal["weighted", "count"] = "weighted"
    """weighted: Nagios-style percent state change over the last 21 samples, with
    hysteresis; count: more than flap_count drops within flap_window_s."""
    flap_sample_s: float = Field(15.0, ge=1, le=3600)
    """How often each device's status is sampled into its flap history."""
    flap_low: float = Field(10.0, ge=0, le=100)
    """Flapping stops when the weighted change falls to this percent."""
    flap_high: float = Field(25.0, ge=0, le=100)
    """Flapping starts when the weighted change reaches this percent."""
    flap_count: int = Field(3, ge=1, le=1000)
    flap_window_s: float = Field(1800.0, ge=60, le=86400)
    site_share: float = Field(1.0, gt=0, le=1)
    """A site alert replaces device alerts when this share of its devices is down."""
    site_min_devices: int = Field(2, ge=1, le=10000)
    escalate_after_s: float = Field(1800.0, ge=0, le=30 * 86400)
    """An open alert becomes critical after this long (0: never)."""
    repeat_every_s: float = Field(14400.0, ge=0, le=30 * 86400)
    """Reminders of an unacknowledged open alert (0: none)."""
    sink_max: int = Field(10, ge=1, le=10000)
    """Notifications one sink passes per sink_window_s; the rest are summarised."""
    sink_window_s: float = Field(60.0, ge=1, le=86400)
    site_confirm_after_s: dict[str, float] = Field(default_factory=dict)
    """Per-site confirmation delays, by site id."""
    silences: list[SilenceConfig] = Field(default_factory=list)


class WebhookConfig(_Model):
    """An HTTP endpoint told about events, signed per Standard Webhooks.

    ``secret`` is a ``whsec_``-prefixed base64 key (a secret: never shown).
    ``events`` filters by type: exact names or prefixes ending in ``*``.
    ``hex_signature_header`` also sends a plain hex HMAC-SHA256 of the raw body
    in that header, for receivers written for the article's scheme.
    """

    url: str = Field(min_length=1, pattern=r"^https?://")
    events: list[str] = Field(default_factory=lambda: ["*"])
    secret: SecretStr = _field(SecretStr(""), secret=True, expected="a string")
    enabled: bool = True
    hex_signature_header: str | None = Field(None, pattern=r"^[A-Za-z0-9-]{1,64}$")
    timeout_s: float = Field(10.0, gt=0, le=120)
    previous_secret: SecretStr | None = _field(None, secret=True, expected="a string")
    """The secret before a rotation: it signs too (``v1,<new> v1,<previous>``) until
    ``previous_secret_until``, so receivers switch secrets without a gap."""
    previous_secret_until: datetime | None = None

    _aware = field_validator("previous_secret_until")(
        classmethod(lambda cls, v: _check_aware(v)))

    @model_validator(mode="after")
    def _previous_with_until(self) -> WebhookConfig:
        if (self.previous_secret is None) != (self.previous_secret_until is None):
            raise ValueError("previous_secret and previous_secret_until go together: the "
                             "previous secret signs until that time")
        return self


class ProblemSettings(_Model):
    """When a device that answers is still a problem for the control room (its mark, the
    "problems only" view, the header's counts)."""

    clock_drift_s: float = Field(120.0, gt=0, le=86400)
    """A clock off by this many seconds or more (either way)."""
    buffer_full_pct: float = Field(90.0, gt=0, le=100)
    """A record buffer this full or more (percent of its capacity)."""
    unsynced_after_s: float = Field(3600.0, ge=60, le=30 * 86400)
    """A polled device online whose punches were not synced for this long."""


#: a binding id ("app.problems") and one key name ("p", "P", "ctrl+t", "f5", "question_mark")
_BINDING_ID = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\Z")
_KEY_NAME = re.compile(r"[A-Za-z0-9_+-]{1,40}\Z")


class TuiSettings(_Model):
    """The control room's own settings: keys of your choosing.

    ``[tui.keys]`` maps a key binding's id, as the help screen lists it, to the key
    (or keys, comma-separated) that should do it instead: ``"app.problems" = "P"``.
    Whether each id exists is checked when the control room starts (``fleettui
    check-config`` too), since the bindings live with the screens.
    """

    keys: dict[str, str] = Field(default_factory=dict)
    """Binding id → key names (Textual's: "p", "ctrl+t", "f5", "space"), comma-separated."""

    @field_validator("keys")
    @classmethod
    def _check_keys(cls, keys: dict[str, str]) -> dict[str, str]:
        for binding, value in keys.items():
            if not _BINDING_ID.match(binding):
                raise _own_error(f"{binding!r}: expected a binding id such as 'app.problems' "
                                 "(the help screen lists them)")
            names = [k.strip() for k in value.split(",")]
            if not all(_KEY_NAME.match(k) for k in names):
                raise _own_error(f"{binding}: expected key names such as 'P', 'ctrl+t' or "
                                 "'f5', comma-separated")
        return {b: ",".join(k.strip() for k in v.split(",")) for b, v in keys.items()}


class SecuritySettings(_Model):
    """What fleettui's outgoing connections may reach.

    Webhooks never reach link-local addresses nor a cloud metadata service;
    other non-public addresses (private, loopback, shared 100.64/10, reserved,
    multicast...) only with ``allow_private_webhook_targets = true``: a
    receiver on the same machine or the LAN needs it (see fleettui/egress.py).
    """

    allow_private_webhook_targets: bool = False
    """Let webhooks reach private, loopback and other non-public addresses."""


class ScheduleConfig(_Model):
    """A command queued on a timetable, in the target site's own time zone.

    ``cron`` is a five-field crontab line (minute hour day month weekday).
    ``employees_file`` (for sync_employees) is read when the schedule fires, so
    HR can drop a new CSV or JSON there at any time.
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    command: str
    cron: str
    target: str = Field(min_length=1, max_length=64)
    """A site id (every enabled device of it) or a device id."""
    params: dict[str, Any] = Field(default_factory=dict)
    employees_file: str | None = None
    remove_missing: bool = False
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        from fleettui.cron import crontab_trigger

        try:
            crontab_trigger(value, "UTC")
        except ValueError as e:
            raise _own_error(
                f"expected a crontab line 'minute hour day month weekday' such as "
                f"'0 3 * * *', got {value!r} ({e})"
            ) from None
        return value

    @model_validator(mode="after")
    def _check_command(self) -> ScheduleConfig:
        from fleettui.commands import COMMANDS, CommandError, validate

        if self.command not in COMMANDS:
            raise ValueError(
                f"command: unknown command {self.command!r}; known: {', '.join(sorted(COMMANDS))}"
            )
        params = dict(self.params)
        if self.command == "sync_employees":
            if self.employees_file is None and "employees" not in params:
                raise ValueError("sync_employees needs employees_file (or params.employees)")
            params.setdefault("employees", [])
            params["remove_missing"] = self.remove_missing
        elif self.employees_file is not None:
            raise ValueError("employees_file is only for sync_employees")
        try:
            validate(self.command, params)
        except CommandError as e:
            raise ValueError(str(e)) from None
        return self


class Config(_Model):
    """The whole configuration: polling settings, paths, sites, devices and later features.

    Site ids, device ids, serials and device addresses are unique, and every
    device's site exists. Look-ups: :meth:`site`, :meth:`device`,
    :meth:`devices_at`.
    """

    poll: PollSettings = _field(default_factory=PollSettings, expected="a [poll] table")
    paths: Paths = _field(default_factory=Paths, expected="a [paths] table")
    sites: list[SiteConfig] = _field(default_factory=list, expected="[[sites]] tables")
    devices: list[DeviceConfig] = _field(default_factory=list, expected="[[devices]] tables")
    push: PushSettings = _field(default_factory=PushSettings, expected="a [push] table")
    server: ServerSettings = _field(default_factory=ServerSettings,
                                    expected="a [server] table")
    alerts: AlertSettings = _field(default_factory=AlertSettings, expected="an [alerts] table")
    problems: ProblemSettings = _field(default_factory=ProblemSettings,
                                       expected="a [problems] table")
    tui: TuiSettings = _field(default_factory=TuiSettings, expected="a [tui] table")
    security: SecuritySettings = _field(default_factory=SecuritySettings,
                                        expected="a [security] table")
    webhooks: list[WebhookConfig] = _field(default_factory=list,
                                           expected="[[webhooks]] tables")
    schedules: list[ScheduleConfig] = _field(default_factory=list,
                                             expected="[[schedules]] tables")

    _source: Path | None = PrivateAttr(None)
    _index: tuple[Any, Any, dict[str, SiteConfig], dict[str, DeviceConfig],
                  dict[str, list[DeviceConfig]]] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _check_fleet(self, info: ValidationInfo) -> Config:
        if not _raw_checks(info):
            problems = _fleet_problems(_view_of_config(self))
            if problems:
                raise ValueError("; ".join(f"{_key(loc)}: {msg}" for loc, msg in problems))
        return self

    @property
    def source(self) -> Path | None:
        """The file this configuration was loaded from, if any."""
        return self._source

    def _lookup(self) -> tuple[dict[str, SiteConfig], dict[str, DeviceConfig],
                               dict[str, list[DeviceConfig]]]:
        index = self._index
        if index is None or index[0] is not self.sites or index[1] is not self.devices:
            by_site: dict[str, list[DeviceConfig]] = {}
            for device in self.devices:
                by_site.setdefault(device.site, []).append(device)
            index = (
                self.sites,
                self.devices,
                {site.id: site for site in self.sites},
                {device.id: device for device in self.devices},
                by_site,
            )
            self._index = index
        return index[2], index[3], index[4]

    def site(self, site_id: str) -> SiteConfig:
        """The site with this id (KeyError if there is none)."""
        try:
            return self._lookup()[0][site_id]
        except KeyError:
            raise KeyError(f"no site {site_id!r}") from None

    def device(self, device_id: str) -> DeviceConfig:
        """The device with this id (KeyError if there is none)."""
        try:
            return self._lookup()[1][device_id]
        except KeyError:
            raise KeyError(f"no device {device_id!r}") from None

    def devices_at(self, site_id: str) -> list[DeviceConfig]:
        """The devices of a site, in file order (empty for an unknown site)."""
        return list(self._lookup()[2].get(site_id, []))

    def effective_live_capture(self, device: DeviceConfig | str) -> bool:
        """Whether a device (or device id) uses live capture: its own setting, else poll's."""
        if isinstance(device, str):
            device = self.device(device)
        if device.live_capture is not None:
            return device.live_capture
        return self.poll.live_capture


_TOML_NAMES: dict[type[BaseModel], str] = {
    Config: "the top level",
    PollSettings: "[poll]",
    Paths: "[paths]",
    SiteConfig: "[[sites]]",
    DeviceConfig: "[[devices]]",
    ServerSettings: "[server]",
    PushSettings: "[push]",
    AlertSettings: "[alerts]",
    SecuritySettings: "[security]",
    WebhookConfig: "[[webhooks]]",
    ScheduleConfig: "[[schedules]]",
}


# --------------------------------------------------------------------------- cross-field checks



@dataclass
class _DeviceView:
    """What the cross-field checks need of one device; None where the value is unusable."""

    id: str | None
    serial: str | None
    site: str | None
    endpoint: tuple[str, int, str] | None
    host: str | None


@dataclass
class _FleetView:
    """Sites and devices as the cross-field checks see them.

    ``site_ids`` is None when the site list cannot be trusted (then no device
    is blamed for an unknown site); an entry is None when that id is unusable.
    """

    site_ids: list[str | None] | None
    devices: list[_DeviceView]
    check_interval_s: float | None = None
    backoff_max_s: float | None = None
    #: (name, target) of each schedule; None where unusable
    schedules: list[tuple[str | None, str | None]] | None = None
    #: target of each [[alerts.silences]] entry; None where unusable
    silences: list[str | None] | None = None
    #: url of each [[webhooks]] entry; None where unusable
    webhook_urls: list[str | None] | None = None
    #: [security] allow_private_webhook_targets; None when unusable (then only what is
    #: always refused is reported)
    allow_private_webhook_targets: bool | None = False


def _view_of_config(config: Config) -> _FleetView:
    return _FleetView(
        site_ids=[site.id for site in config.sites],
        devices=[
            _DeviceView(
                id=d.id,
                serial=d.serial,
                site=d.site,
                endpoint=(_host_key(d.host), d.port, d.transport) if d.host else None,
                host=d.host,
            )
            for d in config.devices
        ],
        schedules=[(sc.name, sc.target) for sc in config.schedules],
        silences=[sc.target for sc in config.alerts.silences],
        webhook_urls=[w.url for w in config.webhooks],
        allow_private_webhook_targets=config.security.allow_private_webhook_targets,
    )


def _view_of_raw(raw: dict[str, Any], bad: Iterable[Loc]) -> _FleetView:
    """The fleet from the parsed TOML, skipping every value that failed validation."""
    bad_set = set(bad)

    def usable(loc: Loc) -> bool:
        return not any(loc[:k] in bad_set for k in range(1, len(loc) + 1))

    def value(loc: Loc, container: Any, key: str, default: Any = None) -> Any:
        if not isinstance(container, dict) or not usable(loc):
            return None
        return container.get(key, default)

    sites_raw = raw.get("sites", [])
    site_ids: list[str | None] | None = None
    if isinstance(sites_raw, list) and ("sites",) not in bad_set:
        site_ids = [value(("sites", i, "id"), s, "id") for i, s in enumerate(sites_raw)]

    devices: list[_DeviceView] = []
    devices_raw = raw.get("devices", [])
    if isinstance(devices_raw, list) and ("devices",) not in bad_set:
        for i, d in enumerate(devices_raw):
            host = value(("devices", i, "host"), d, "host")
            port = value(("devices", i, "port"), d, "port", DEFAULT_PORT)
            transport = value(("devices", i, "transport"), d, "transport", "tcp")
            endpoint = None
            if host is not None and port is not None and transport is not None:
                endpoint = (_host_key(host), port, transport)
            devices.append(
                _DeviceView(
                    id=value(("devices", i, "id"), d, "id"),
                    serial=value(("devices", i, "serial"), d, "serial"),
                    site=value(("devices", i, "site"), d, "site"),
                    endpoint=endpoint,
                    host=host,
                )
            )

    poll = raw.get("poll", {})
    interval = value(("poll", "check_interval_s"), poll, "check_interval_s", 4.0)
    backoff = value(("poll", "backoff_max_s"), poll, "backoff_max_s")
    schedules: list[tuple[str | None, str | None]] | None = None
    schedules_raw = raw.get("schedules", [])
    if isinstance(schedules_raw, list) and ("schedules",) not in bad_set:
        schedules = [
            (value(("schedules", i, "name"), sc, "name"),
             value(("schedules", i, "target"), sc, "target"))
            for i, sc in enumerate(schedules_raw)
        ]
    silences: list[str | None] | None = None
    alerts_raw = raw.get("alerts", {})
    silences_raw = alerts_raw.get("silences", []) if isinstance(alerts_raw, dict) else []
    if isinstance(silences_raw, list) and ("alerts", "silences") not in bad_set:
        silences = [value(("alerts", "silences", i, "target"), sc, "target")
                    for i, sc in enumerate(silences_raw)]
    webhook_urls: list[str | None] | None = None
    webhooks_raw = raw.get("webhooks", [])
    if isinstance(webhooks_raw, list) and ("webhooks",) not in bad_set:
        webhook_urls = [value(("webhooks", i, "url"), w, "url")
                        for i, w in enumerate(webhooks_raw)]
    security = raw.get("security", {})
    allow = value(("security", "allow_private_webhook_targets"), security,
                  "allow_private_webhook_targets", False)
    return _FleetView(site_ids, devices, interval, backoff, schedules, silences,
                      webhook_urls, allow if isinstance(allow, bool) else None)


def _fleet_problems(view: _FleetView) -> list[tuple[Loc, str]]:
    """Duplicates, unknown sites and poll settings that contradict each other."""
    problems: list[tuple[Loc, str]] = []

    first_site: dict[str, int] = {}
    for i, site_id in enumerate(view.site_ids or []):
        if site_id is None:
            continue
        if site_id in first_site:
            problems.append(
                (("sites", i, "id"), f"{site_id!r} is also the id of sites[{first_site[site_id]}]")
            )
        else:
            first_site[site_id] = i

    def also(what: str, j: int) -> str:
        other = view.devices[j].id
        named = f" ({other})" if other is not None and what != "id" else ""
        return f"is also the {what} of devices[{j}]{named}"

    first_id: dict[str, int] = {}
    first_serial: dict[str, int] = {}
    first_endpoint: dict[tuple[str, int, str], int] = {}
    for i, d in enumerate(view.devices):
        if d.id is not None:
            if d.id in first_id:
                problems.append((("devices", i, "id"), f"{d.id!r} {also('id', first_id[d.id])}"))
            else:
                first_id[d.id] = i
        if d.serial is not None:
            if d.serial in first_serial:
                j = first_serial[d.serial]
                problems.append((("devices", i, "serial"), f"{d.serial!r} {also('serial', j)}"))
            else:
                first_serial[d.serial] = i
        if d.endpoint is not None and d.host is not None:
            if d.endpoint in first_endpoint:
                j = first_endpoint[d.endpoint]
                _, port, transport = d.endpoint
                host = f"[{d.host}]" if ":" in d.host else d.host
                problems.append(
                    (("devices", i, "host"), f"{host}:{port} ({transport}) {also('address', j)}")
                )
            else:
                first_endpoint[d.endpoint] = i

    if view.site_ids is not None and None not in view.site_ids:
        known = sorted(first_site)
        for i, d in enumerate(view.devices):
            if d.site is not None and d.site not in first_site:
                problems.append((("devices", i, "site"), _unknown_site_message(d.site, known)))

    names: dict[str, int] = {}
    known_devices = {d.id for d in view.devices if d.id is not None}
    targets_known = view.site_ids is not None and None not in view.site_ids and all(
        d.id is not None for d in view.devices
    )
    for i, (name, target) in enumerate(view.schedules or []):
        if name is not None:
            if name in names:
                again = f"{name!r} is also the name of schedules[{names[name]}]"
                problems.append((("schedules", i, "name"), again))
            else:
                names[name] = i
        if targets_known and target is not None and target not in first_site and (
            target not in known_devices
        ):
            problems.append(
                (("schedules", i, "target"), f"no site or device called {target!r}")
            )

    for i, target in enumerate(view.silences or []):
        if targets_known and target is not None and target not in first_site and (
            target not in known_devices
        ):
            problems.append(
                (("alerts", "silences", i, "target"), f"no site or device called {target!r}")
            )

    allow = view.allow_private_webhook_targets
    for i, url in enumerate(view.webhook_urls or []):
        refused = url_refusal(url, allow is not False) if isinstance(url, str) else None
        if refused is not None:
            problems.append((("webhooks", i, "url"), refused))

    if (
        view.check_interval_s is not None
        and view.backoff_max_s is not None
        and view.backoff_max_s < view.check_interval_s
    ):
        problems.append(
            (("poll", "backoff_max_s"),
             _backoff_message(view.check_interval_s, view.backoff_max_s))
        )
    return problems


def _unknown_site_message(site: str, known: list[str]) -> str:
    if not known:
        return f"no site {site!r} (no [[sites]] are defined)"
    close = difflib.get_close_matches(site, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(known[:12])
    if len(known) > 12:
        listed += f", and {len(known) - 12} more"
    return f"no site {site!r} (known: {listed}){hint}"


# --------------------------------------------------------------------------- error messages


def _num(value: float | int) -> str:
    """A bound or value as a person writes it: 3600, 0.5."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _show(value: Any) -> str:
    """A user's (non-secret) value as shown in a message, briefly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int | float):
        return _num(value) if isinstance(value, float) and value == value else str(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, datetime | date | time):
        return f"a date/time ({value.isoformat()})"
    return type(value).__name__


def _key(loc: Loc) -> str:
    """A validation location in the TOML's own shape: ``devices[2].port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part)
            out += f".{name}" if out else name
    return out


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


@dataclass
class _Target:
    """What an error location points at: its type, field, the model holding it, secrecy."""

    annotation: Any
    field: FieldInfo | None
    name: str | None
    parent: type[BaseModel] | None
    secret: bool


def _target(loc: Loc) -> _Target | None:
    annotation: Any = Config
    field: FieldInfo | None = None
    name: str | None = None
    parent: type[BaseModel] | None = None
    secret = False
    for part in loc:
        annotation = _unwrap_optional(annotation)
        if isinstance(part, str):
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return None
            parent, name = annotation, part
            field = annotation.model_fields.get(part)
            if field is None:
                return _Target(None, None, name, parent, secret)
            annotation = field.annotation
            secret = secret or _extra(field).get("secret", False)
        else:
            if get_origin(annotation) is not list:
                return None
            annotation, field = get_args(annotation)[0], None
    return _Target(annotation, field, name, parent, secret)


def _extra(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _expected(target: _Target) -> str:
    """What a value at ``target`` should be, in plain words."""
    if target.field is not None and "expected" in _extra(target.field):
        return str(_extra(target.field)["expected"])
    annotation = _unwrap_optional(target.annotation)
    metadata = target.field.metadata if target.field is not None else []
    lo = hi = min_len = max_len = None
    for item in metadata:
        lo = getattr(item, "ge", lo)
        hi = getattr(item, "le", hi)
        min_len = getattr(item, "min_length", min_len)
        max_len = getattr(item, "max_length", max_len)
    if annotation is bool:
        return "true or false"
    if annotation is int or annotation is float:
        base = "an integer" if annotation is int else "a number"
        if annotation is float and target.name and target.name.endswith("_s"):
            base += " of seconds"
        if lo is not None and hi is not None:
            return f"{base} from {_num(lo)} to {_num(hi)}"
        if lo is not None:
            return f"{base}, at least {_num(lo)}"
        if hi is not None:
            return f"{base}, at most {_num(hi)}"
        return base
    if annotation is str or annotation is SecretStr:
        if min_len and max_len:
            return f"a non-empty string of at most {max_len} characters"
        if min_len:
            return "a non-empty string"
        if max_len:
            return f"a string of at most {max_len} characters"
        return "a string"
    if get_origin(annotation) is Literal:
        return " or ".join(json.dumps(v) for v in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"a {_TOML_NAMES.get(annotation, 'table')} table".replace("a the ", "the ")
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        if item is str:
            return "an array of strings"
        return "an array"
    return "a valid value"


def _unknown_key_message(loc: Loc, target: _Target | None) -> str:
    name = str(loc[-1])
    parent = target.parent if target is not None else None
    if parent is None:
        return f"unknown key {name!r}"
    where = _TOML_NAMES.get(parent, "this table")
    known = list(parent.model_fields)
    if not known:
        return f"unknown key {name!r}: {where} has no settings yet"
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key {name!r} ({hint}{where} takes: {', '.join(known)})"


def _message(error: Any) -> str:
    """A pydantic error in plain words, never echoing a secret."""
    loc: Loc = tuple(error["loc"])
    kind: str = error["type"]
    target = _target(loc)
    if kind == "extra_forbidden":
        return _unknown_key_message(loc, target)
    if kind == _OWN_ERROR:
        return str(error["msg"])
    expected = _expected(target) if target is not None else "a valid value"
    if kind == "missing":
        return f"required key is missing (expected {expected})"
    if kind in ("value_error", "assertion_error"):
        text = str(error["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            text = text.removeprefix(prefix)
        return text
    secret = target.secret if target is not None else True
    if secret or "input" not in error:
        return f"expected {expected}"
    return f"expected {expected}, got {_show(error['input'])}"


# --------------------------------------------------------------------------- loading

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


def _syntax_problem(error: tomllib.TOMLDecodeError, text: str) -> Problem:
    message = str(error)
    line: int | None = None
    where = ""
    m = _TOML_POSITION.search(message)
    if m:
        line = int(m.group(1))
        where = f" (column {m.group(2)})"
        message = message[: m.start()]
    else:
        m_end = _TOML_END.search(message)
        if m_end:
            line = max(1, len(text.splitlines()))
            where = " (at the end of the file)"
            message = message[: m_end.start()]
    message = message[:1].lower() + message[1:]
    return Problem("", f"invalid TOML: {message}{where}", line)


def parse_config(text: str, path: Path | None = None) -> Config:
    """Validate TOML ``text`` into a Config, or raise ConfigError listing every problem.

    ``path`` names the file in messages, and a relative ``paths.db`` is taken
    relative to its directory.
    """
    path = Path(path) if path is not None else None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([_syntax_problem(error, text)], path) from None

    locator = KeyLocator(text)
    context = {
        _CTX_RAW_CHECKS: True,
        _CTX_BASE_DIR: path.absolute().parent if path is not None else None,
    }
    problems: list[Problem] = []
    bad: list[Loc] = []
    config: Config | None = None
    try:
        config = Config.model_validate(raw, context=context)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            loc: Loc = tuple(item["loc"])
            bad.append(loc)
            problems.append(Problem(_key(loc), _message(item), locator.line_of(loc)))
    for loc, message in _fleet_problems(_view_of_raw(raw, bad)):
        problems.append(Problem(_key(loc), message, locator.line_of(loc)))
    if problems or config is None:
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise ConfigError(problems, path)
    config._source = path
    return config


def validate_device(data: dict[str, Any]) -> DeviceConfig:
    """One device from outside a config file (the HTTP API), checked as a [[devices]] entry is.

    Raises ConfigError whose problems are keyed by the device's own field
    names (``port``, not ``devices[0].port``); a secret is never echoed.
    """
    try:
        return DeviceConfig.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            loc: Loc = tuple(item["loc"])
            # the messages look a field up from the config's root
            problems.append(Problem(_key(loc), _message({**item, "loc": ("devices", 0, *loc)})))
        raise ConfigError(problems) from None


def load_config(path: str | Path) -> Config:
    """Read and validate the config file at ``path`` (ConfigError if it cannot be used)."""
    file = Path(path).expanduser()

    def fail(message: str, line: int | None = None) -> ConfigError:
        return ConfigError([Problem("", message, line)], file)

    if file.is_dir():
        raise fail("is a directory, not a config file")
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise fail("no such file") from None
    except PermissionError:
        raise fail("cannot read the file: permission denied") from None
    except OSError as error:
        raise fail(f"cannot read the file: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise fail(f"not UTF-8 text (bad byte at offset {error.start})", line) from None
    return parse_config(text, file)


# --------------------------------------------------------------------------- locations


def default_config_path() -> Path:
    """The per-user config file platformdirs picks (``~/.config/fleettui/fleettui.toml``)."""
    return user_config_path(APP_NAME) / "fleettui.toml"


def default_db_path() -> Path:
    """The per-user database platformdirs picks (``~/.local/share/fleettui/fleettui.db``)."""
    return user_data_path(APP_NAME) / "fleettui.db"


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def resolve_config_path(cli_value: str | None) -> Path:
    """The config file to use: the command line's, else $FLEETTUI_CONFIG, else the default."""
    if cli_value:
        return Path(cli_value).expanduser()
    return _env_path(CONFIG_ENV) or default_config_path()


def resolve_db_path(cli_value: str | None, config: Config | None) -> StoreTarget:
    """The database to use: command line, else $FLEETTUI_DB, else ``paths.db``, else default.

    Each may name a SQLite file or a PostgreSQL database (``postgresql://...``). A
    relative ``paths.db`` is relative to the config file's directory (resolved
    when the file is loaded); with no file, to the current directory.
    """
    if cli_value and cli_value.strip():
        return store_target(cli_value)
    env = os.environ.get(DB_ENV, "").strip()
    if env:
        return store_target(env)
    if config is not None and config.paths.db is not None:
        db = config.paths.db
        if isinstance(db, DatabaseUrl):
            return db
        db = db.expanduser()
        if not db.is_absolute() and config.source is not None:
            db = config.source.absolute().parent / db
        return db
    return default_db_path()
