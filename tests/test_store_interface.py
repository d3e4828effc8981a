"""The store's interface speaks domain objects only, so a second backend can implement it.

Checked on the interface itself (the ``Store`` Protocol and the webhook half
it extends), so that it cannot drift back to rows, bare tuples or SQLite
details; and the package's files stay small enough to read.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from fleettui.domain import DeviceChanges, EventKind
from fleettui.server.device_routes import PATCH_FIELDS, _changes
from fleettui.store.interface import Store

STORE = Path(__file__).resolve().parent.parent / "fleettui" / "store"
#: what no signature of the interface may mention: raw rows, untyped tuples, SQLite itself
_NOT_DOMAIN = re.compile(r"\btuple\[|\bRow\b|sqlite|aiosqlite|rowid|\bCursor\b", re.IGNORECASE)


def _methods() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in inspect.getmembers(Store)
            if not name.startswith("_") and callable(fn)}


def test_the_interface_has_the_store_s_questions() -> None:
    names = set(_methods())
    # a sample from each part: fleet, health, punches, commands, alerts, webhooks, keys, events
    assert {"sync_fleet", "record_status", "insert_punches", "submit_command", "open_alert",
            "webhook_due", "create_api_key", "events_after"} <= names


@pytest.mark.parametrize("name", sorted(_methods()))
def test_no_signature_of_the_interface_is_sqlite_shaped(name: str) -> None:
    signature = _methods()[name]
    texts = [str(signature.return_annotation)] + [
        str(p.annotation) for p in signature.parameters.values()]
    offending = [t for t in texts if _NOT_DOMAIN.search(t)]
    assert offending == [], f"{name}: {offending}"


def test_no_file_of_the_store_package_needs_a_scroll_bar() -> None:
    lengths = {str(p.relative_to(STORE)): len(p.read_text().splitlines())
               for p in STORE.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 420} == {}


def test_event_kinds_read_back_whatever_another_version_wrote() -> None:
    assert EventKind.read("device.online") is EventKind.DEVICE_ONLINE
    assert EventKind.read("device.teleported") is EventKind.OTHER


def test_every_field_a_device_patch_takes_reaches_the_store() -> None:
    # the API's name "site" is the store's "site_id"; every other name is the same
    given = set(PATCH_FIELDS)
    store_names = {"site_id" if k == "site" else k for k in given}
    assert store_names == set(DeviceChanges.__annotations__)

    from fleettui.domain import DeviceSpec
    spec = DeviceSpec("d1", "S1", "hq", "10.0.0.9", 4371, "udp", 7, True, "Gate", False)
    assert _changes(spec, given) == {"site_id": "hq", "host": "10.0.0.9", "port": 4371,
                                     "transport": "udp", "comm_key": 7, "live_capture": True,
                                     "name": "Gate", "enabled": False}
    assert _changes(spec, {"name"}) == {"name": "Gate"}
