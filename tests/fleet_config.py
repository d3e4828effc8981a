"""Write a fleettui config (TOML) for devices the test process emulates.

Emulated devices listen on 127.20.x.y with ephemeral ports chosen when the
emulator starts, so the config is written after ``emulate(...)`` returns,
from the devices' bound addresses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fleettui.emulator.device import DeviceConfig

#: [poll] tuned for tests: fast checks, quick offline detection, short backoff
FAST_POLL: dict[str, float | int | bool] = {
    "check_interval_s": 0.5,
    "timeout_s": 0.5,
    "retry_after_s": 0.2,
    "offline_after_failures": 2,
    "jitter_s": 0.1,
    "backoff_max_s": 1.0,
}


@dataclass(frozen=True)
class SiteEntry:
    """A [[sites]] table."""

    id: str
    name: str
    timezone: str


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def fleet_toml(
    sites: Iterable[SiteEntry],
    devices: Iterable[tuple[DeviceConfig, str]],
    *,
    poll: Mapping[str, float | int | bool] | None = None,
    transport: str = "tcp",
    security: Mapping[str, bool] | None = None,
    webhooks: Iterable[Mapping[str, str | float | int | bool]] = (),
) -> str:
    """The config text: ``[poll]``, the sites, and each (emulated device, site id), every
    device over ``transport``; a ``[security]`` table and ``[[webhooks]]`` tables if given
    (a loopback receiver needs ``security={"allow_private_webhook_targets": True}``)."""
    lines = ["[poll]"]
    lines += [f"{k} = {_toml(v)}" for k, v in {**FAST_POLL, **(poll or {})}.items()]
    lines.append("")
    for s in sites:
        lines += ["[[sites]]", f"id = {_toml(s.id)}", f"name = {_toml(s.name)}",
                  f"timezone = {_toml(s.timezone)}", ""]
    for cfg, site in devices:
        if cfg.port == 0:
            raise ValueError(f"{cfg.id}: start the emulator first (its port is not bound yet)")
        lines += [
            "[[devices]]",
            f"id = {_toml(cfg.id)}",
            f"serial = {_toml(cfg.serial)}",
            f"site = {_toml(site)}",
            f"host = {_toml(cfg.host)}",
            f"port = {cfg.port}",
            f"transport = {_toml(transport)}",
            f"comm_key = {cfg.comm_key}",
            "",
        ]
    if security:
        lines += ["[security]", *(f"{k} = {_toml(v)}" for k, v in security.items()), ""]
    for hook in webhooks:
        lines += ["[[webhooks]]", *(f"{k} = {_toml(v)}" for k, v in hook.items()), ""]
    return "\n".join(lines)


def write_fleet_config(
    path: Path,
    sites: Iterable[SiteEntry],
    devices: Iterable[tuple[DeviceConfig, str]],
    *,
    poll: Mapping[str, float | int | bool] | None = None,
    transport: str = "tcp",
    security: Mapping[str, bool] | None = None,
    webhooks: Iterable[Mapping[str, str | float | int | bool]] = (),
) -> Path:
    """Write :func:`fleet_toml` to ``path``, readable by its owner only (it holds comm keys)."""
    text = fleet_toml(sites, devices, poll=poll, transport=transport, security=security,
                      webhooks=webhooks)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path
