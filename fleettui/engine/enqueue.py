"""Asking for a command: validate it, resolve its target, queue it idempotently.

The one way in for every entry point (CLI, TUI palette, HTTP API, schedules).
It only writes to the store; the poller that owns the database runs the
queue, so a viewer's or a script's command is executed by the headless poller.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fleettui.commands import CommandError, canonical, validate
from fleettui.domain import DeviceState, Submission
from fleettui.engine.push_commands import runs_on_push
from fleettui.store import Store

#: a command not taken by its device within this time expires (unless told otherwise)
DEFAULT_TTL = timedelta(hours=24)


async def enqueue(
    store: Store,
    target: str,
    command: str,
    params: Any = None,
    *,
    now: datetime,
    source: str,
    idempotency_key: str | None = None,
    ttl: timedelta | None = DEFAULT_TTL,
) -> Submission:
    """Queue ``command`` for a device, or for every enabled device of a site.

    Returns the request and whether it is new (False: the idempotency key
    already named this same request). Raises CommandError for an unknown
    target, command or parameter, and IdempotencyConflict for a key reused
    with a different request.
    """
    clean = validate(command, params)
    device = await store.device(target)
    if device is not None:
        kind, members = "device", [device]
    else:
        members = [d for d in await store.devices(target) if d.enabled]
        if not members:
            sites = {s.id for s in await store.sites()}
            if target in sites:
                raise CommandError(f"site {target!r} has no enabled device")
            raise CommandError(f"no device or site called {target!r}")
        kind = "site"
    return await _submit(store, target, kind, members, command, clean, now=now, source=source,
                         idempotency_key=idempotency_key, ttl=ttl)


async def enqueue_devices(
    store: Store,
    device_ids: Sequence[str],
    command: str,
    params: Any = None,
    *,
    now: datetime,
    source: str,
    ttl: timedelta | None = DEFAULT_TTL,
) -> Submission:
    """Queue ``command`` for a chosen set of devices as one request (the control room's
    bulk action on its marked devices): one request to follow, one command per device.

    Raises CommandError for an unknown device or command, or a push device among
    them that cannot run it; nothing is queued then.
    """
    clean = validate(command, params)
    ids = sorted(set(device_ids))
    if not ids:
        raise CommandError("no device chosen")
    known = {d.id: d for d in await store.devices()}
    missing = [i for i in ids if i not in known]
    if missing:
        raise CommandError(f"no device called {_some(missing)}")
    target = ", ".join(ids) if len(ids) <= 3 else f"{ids[0]}, {ids[1]} and {len(ids) - 2} more"
    return await _submit(store, target, "devices", [known[i] for i in ids], command, clean,
                         now=now, source=source, idempotency_key=None, ttl=ttl,
                         fingerprint_target=",".join(ids))


def _some(ids: Sequence[str]) -> str:
    """At most five ids, and how many more."""
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


async def _submit(
    store: Store, target: str, kind: str, members: Sequence[DeviceState], command: str,
    clean: dict[str, Any], *, now: datetime, source: str, idempotency_key: str | None,
    ttl: timedelta | None, fingerprint_target: str | None = None,
) -> Submission:
    """Check the members can run it, then queue one request with a command for each."""
    unable = [d.id for d in members if d.push and not runs_on_push(command)]
    if unable:
        raise CommandError(f"{command}: a push device cannot do it ({_some(unable)} dial in: "
                           "they take only the commands of the push protocol)")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise CommandError("idempotency key: expected 1 to 200 characters")
    return await store.submit_command(
        target=target,
        target_kind=kind,
        device_ids=[d.id for d in members],
        command=command,
        params=clean,
        fingerprint=canonical(command, clean) + f"|{kind}:{fingerprint_target or target}",
        source=source,
        now=now,
        idempotency_key=idempotency_key,
        ttl=ttl,
    )


def read_employees(path: Path) -> list[dict[str, Any]]:
    """Employees from a CSV (header: id or user_id, name, card, privilege, password) or JSON.

    Raises CommandError naming the file and row of anything wrong.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise CommandError(f"{path}: {e.strerror or e}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CommandError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
        if isinstance(data, dict):
            data = data.get("employees")
        if not isinstance(data, list):
            raise CommandError(f"{path}: expected a list of employees")
        return [_employee(row, f"{path}: employees[{i}]") for i, row in enumerate(data)]
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise CommandError(f"{path}: empty file (expected a header: id,name,card)")
    fields = {f.strip().lower() for f in reader.fieldnames}
    if not fields & {"id", "user_id"}:
        raise CommandError(f"{path}: no 'id' (or 'user_id') column in the header")
    unknown = fields - {"id", "user_id", "name", "card", "privilege", "password"}
    if unknown:
        raise CommandError(f"{path}: unknown column(s): {', '.join(sorted(unknown))}")
    return [
        _employee({k.strip().lower(): v for k, v in row.items() if k}, f"{path}:{n}")
        for n, row in enumerate(reader, start=2)
    ]


def _employee(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise CommandError(f"{where}: expected an object")
    out: dict[str, Any] = {"user_id": str(row.get("user_id", row.get("id", "")) or "").strip()}
    if row.get("name") is not None:
        out["name"] = str(row["name"]).strip()
    for key in ("card", "privilege"):
        value = row.get(key)
        if value in (None, ""):
            continue
        try:
            out[key] = int(value)
        except (TypeError, ValueError):
            raise CommandError(f"{where}: {key}: expected a whole number, got {value!r}") from None
    if row.get("password"):
        out["password"] = str(row["password"])
    return out
