"""The remote commands an operator can send to a device, with their parameters' schemas.

Every entry point (TUI palette, CLI, HTTP API, schedules) validates here,
then enqueues through the store; the poller that owns the database runs the
queue. Validation errors say which parameter and what was expected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)


class CommandError(ValueError):
    """A command or its parameters are not valid."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(_Params):
    """A command that takes no parameters."""


class Employee(_Params):
    """One person to enrol on a device."""

    user_id: str = Field(min_length=1, max_length=9, pattern=r"^[0-9]+$")
    name: str = Field("", max_length=24)
    card: int = Field(0, ge=0, le=0xFFFFFFFF)
    privilege: int = Field(0, description="0 user, 14 admin")
    password: str = Field("", max_length=8, repr=False)

    @field_validator("privilege")
    @classmethod
    def _privilege(cls, v: int) -> int:
        if v not in (0, 14):
            raise ValueError("expected 0 (user) or 14 (admin)")
        return v


class SyncEmployeesParams(_Params):
    """sync_employees: make the device's users match a list."""

    employees: list[Employee] = Field(max_length=100_000)
    remove_missing: bool = False
    dry_run: bool = False
    """Only say what would change (read the device's users, write nothing)."""

    @field_validator("employees")
    @classmethod
    def _unique(cls, v: list[Employee]) -> list[Employee]:
        seen: set[str] = set()
        for e in v:
            if e.user_id in seen:
                raise ValueError(f"user_id {e.user_id} appears twice")
            seen.add(e.user_id)
        return v


class UnlockParams(_Params):
    """unlock: energise the door relay."""

    seconds: int = Field(3, ge=1, le=60)


#: the earliest and latest local times a device's clock can hold
EARLIEST = datetime(2000, 1, 1)
LATEST = datetime(2099, 12, 31, 23, 59, 59)


def _local_time(v: str) -> str:
    """A device's local time as ``YYYY-MM-DDTHH:MM:SS`` (no zone: the device has none)."""
    try:
        at = datetime.fromisoformat(v)
    except ValueError:
        raise ValueError("expected a local time, YYYY-MM-DDTHH:MM[:SS]") from None
    if at.tzinfo is not None:
        raise ValueError("expected the device's local time, without a zone")
    if not EARLIEST <= at <= LATEST:
        raise ValueError("expected a time between 2000 and 2099")
    return at.isoformat(timespec="seconds")


class ResendPunchesParams(_Params):
    """resend_punches: read a range of the device's records again, store those missing."""

    since: str = Field(EARLIEST.isoformat(), description="device local time, from")
    until: str = Field(LATEST.isoformat(), description="device local time, to (included)")

    @field_validator("since", "until")
    @classmethod
    def _times(cls, v: str) -> str:
        return _local_time(v)

    @field_validator("until")
    @classmethod
    def _after_since(cls, v: str, info: ValidationInfo) -> str:
        since = info.data.get("since")  # absent when since itself was refused
        if since is not None and v < since:
            raise ValueError("must not be before since")
        return v


#: the device options set_option may write, each with what its value may be: options an
#: operator may change from afar without harm. The comm key (COMKey), the network
#: settings (IPAddress, NetMask, GATEIPAddress: a typo takes the device off the network)
#: and the read-only "~" options are not among them: they are set on the device itself.
SETTABLE_OPTIONS: dict[str, tuple[str, str]] = {
    "LockOn": (r"^(?:[1-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-4])$",
               "the door relay's drive time, 1 to 254"),
    "WorkCode": (r"^[01]$", "0 (off) or 1 (ask for a work code with each punch)"),
}


class SetOptionParams(_Params):
    """set_option: write one of the harmless device options (SETTABLE_OPTIONS)."""

    key: str
    value: str = Field(max_length=64)

    @field_validator("key")
    @classmethod
    def _settable(cls, v: str) -> str:
        if v not in SETTABLE_OPTIONS:
            raise ValueError(f"expected one of {', '.join(SETTABLE_OPTIONS)} (other options, "
                             "such as the comm key or the network settings, are set on the "
                             "device itself)")
        return v

    @field_validator("value")
    @classmethod
    def _value_fits(cls, v: str, info: ValidationInfo) -> str:
        key = info.data.get("key")  # absent when the key itself was refused
        if key in SETTABLE_OPTIONS:
            pattern, what = SETTABLE_OPTIONS[key]
            if not re.fullmatch(pattern, v):
                raise ValueError(f"{key} takes {what}")
        return v


@dataclass(frozen=True, slots=True)
class PaletteEntry:
    """How the control room's command palette offers a command for one kind of target.

    ``text`` names the target as ``{device}`` or ``{site}``; ``hint``, shown beside the
    candidate, may name the device's ``{state}`` or the site's device ``{count}``;
    ``help`` is the help screen's line for it."""

    text: str
    hint: str
    help: str

    def help_pattern(self) -> str:
        """The text as the help screen lists it: "Restart <device>"."""
        return self.text.replace("{device}", "<device>").replace("{site}", "<site>")


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command, everything about it: its name, parameters (with their validation),
    what it does, how the screens call it and offer it. What it does on a pull device is
    its handler in ``engine/executor.py``, registered under the same name."""

    name: str
    params: type[_Params]
    summary: str
    #: what progress lines and toasts call it ("Restart 3/4 done")
    label: str
    #: the device goes away after it (status tolerates the reboot window)
    reboots: bool = False
    #: the palette offers it for one device / for every device of a site
    device_palette: PaletteEntry | None = None
    site_palette: PaletteEntry | None = None
    #: a whole site's run is confirmed first (it interrupts every device of the site)
    confirm_site: bool = False
    #: the palette opens the employee file and its preview instead of queueing at once
    needs_employee_file: bool = False


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec(
            "restart", NoParams, "reboot the device", "Restart", reboots=True,
            device_palette=PaletteEntry(
                "Restart {device}", "reboot the terminal ({state})",
                "reboot the terminal (queued; the panel shows queued → done)"),
            site_palette=PaletteEntry(
                "Restart all devices of {site}", "{count} device(s), after a confirmation",
                "reboot every device of a site, after a confirmation"),
            confirm_site=True),
        CommandSpec(
            "sync_time", NoParams, "set the device clock to its site's local time", "Sync clock",
            device_palette=PaletteEntry(
                "Sync clock {device}", "set its clock to the site's local time",
                "set the device clock to its site's local time"),
            site_palette=PaletteEntry(
                "Sync clocks of {site}", "{count} device(s), each to the site's local time",
                "set every device clock of a site")),
        CommandSpec(
            "refresh_info", NoParams, "re-read identity, sizes and firmware", "Refresh info",
            device_palette=PaletteEntry(
                "Refresh info {device}", "read its identity, firmware and counters again",
                "read the device's identity, firmware and counters again")),
        CommandSpec(
            "sync_employees", SyncEmployeesParams,
            "add and update users from a list; optionally remove the others", "Sync employees",
            device_palette=PaletteEntry(
                "Sync employees to {device}",
                "from a CSV or JSON file, after a preview of what changes",
                "push a CSV/JSON employee file, after a preview"),
            site_palette=PaletteEntry(
                "Sync employees to all devices of {site}",
                "{count} device(s), from a CSV or JSON file, after a preview",
                "push an employee file to a whole site, after a preview"),
            needs_employee_file=True),
        CommandSpec(
            "resend_punches", ResendPunchesParams,
            "read a range of the device's records again and store any that are missing",
            "Re-read punches",
            device_palette=PaletteEntry(
                "Re-read all punches of {device}",
                "store any record of its log that is missing ({state})",
                "read a device's whole log again and store what is missing (fills a gap)")),
        CommandSpec("clear_attendance", NoParams,
                    "delete the device's records, only once every one is stored",
                    "Clear attendance"),
        CommandSpec("enable", NoParams, "let the device take punches again", "Enable"),
        CommandSpec("disable", NoParams, "stop the device taking punches", "Disable"),
        CommandSpec("unlock", UnlockParams, "open the door relay for some seconds", "Unlock"),
        CommandSpec("set_option", SetOptionParams,
                    "write a harmless device option: LockOn (door relay time) or WorkCode",
                    "Set option"),
    )
}


def label(command: str) -> str:
    """What screens call a command ("Sync clock"); an unknown one by its name."""
    spec = COMMANDS.get(command)
    return spec.label if spec is not None else command


def validate(command: str, params: Any) -> dict[str, Any]:
    """Check a command and its parameters; return the parameters normalised.

    Raises CommandError naming the parameter and what was expected.
    """
    spec = COMMANDS.get(command)
    if spec is None:
        raise CommandError(
            f"unknown command {command!r}; known: {', '.join(sorted(COMMANDS))}"
        )
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise CommandError(f"{command}: params must be an object")
    try:
        model = spec.params.model_validate(params)
    except ValidationError as e:
        problems = []
        for err in e.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in err["loc"]) or "params"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown parameter"
            problems.append(f"{where}: {msg}")
        raise CommandError(f"{command}: " + "; ".join(problems)) from None
    return model.model_dump()


def canonical(command: str, params: dict[str, Any]) -> str:
    """A stable text of a command and its parameters (what an idempotency key guards)."""
    return json.dumps({"command": command, "params": params}, sort_keys=True,
                      separators=(",", ":"))
