"""Text from outside (API clients, devices) is drawn with its terminal controls visible.

A device's name and status reason, its firmware string, a site's name and the
event log's lines are stored as given; the control room draws them with ESC,
BEL and bidirectional overrides escaped, so nothing in them reaches the
terminal as a command. The real app on a real SQLite store, driven by the Pilot.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from textual.widgets import RichLog

from fleettui.domain import DeviceState, DeviceStatus, Site, StatusChange
from fleettui.store import open_store
from fleettui.tui.app import FleetApp
from fleettui.tui.panel import DevicePanel
from fleettui.tui.tree import SiteTree
from tests.test_tui import wait_for
from tests.test_tui_panels import plain

#: clear the screen, retitle the window, and read the rest backwards
HOSTILE = "\x1b[2J\x1b]0;owned\x07\u202eevil"
SHOWN = "\\x1b[2J\\x1b]0;owned\\x07\\u202eevil"


def _raw(text: str) -> bool:
    return any(c in text for c in ("\x1b", "\x07", "\u202e"))


async def test_names_reasons_and_events_are_drawn_escaped(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "hostile.db")
    now = datetime.now(UTC)
    try:
        await store.sync_fleet(
            [Site("s1", f"Site {HOSTILE}", "UTC")],
            [DeviceState("d1", "S1", "s1", "127.0.0.1", 4370, "tcp", name=f"Door {HOSTILE}")])
        await store.record_status(StatusChange("d1", DeviceStatus.ERROR, HOSTILE, now))
        await store.add_event("device.operation", f"note {HOSTILE}", at=now, device_id="d1")
        app = FleetApp(store, refresh_s=0.2)
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: "d1" in app.rows and app._tailing)
            app.jump(("device", "d1"))
            panel = app.query_one("#panel", DevicePanel)
            await wait_for(pilot, lambda: SHOWN in plain(panel.render(), 140))
            text = plain(panel.render(), 140)
            assert f"Door {SHOWN}" in text and f"Site {SHOWN}" in text
            assert not _raw(text)

            tree = app.query_one("#tree", SiteTree)
            labels = [str(node.label) for node in tree.root.children]
            labels += [str(n.label) for site in tree.root.children for n in site.children]
            assert any(f"Site {SHOWN}" in label for label in labels), labels
            assert not any(_raw(label) for label in labels), labels

            log = app.query_one("#events", RichLog)
            await wait_for(pilot, lambda: any(f"note {SHOWN}" in s.text for s in log.lines))
            assert not any(_raw(s.text) for s in log.lines)
    finally:
        await store.close()
