"""Push devices in the control room: a device that dialed in unknown is approved from the
palette (the real app under Pilot, over a real store)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rich.style import Style
from textual.widgets import Static

from fleettui.domain import DeviceState, Site
from fleettui.store import open_store
from fleettui.tui.app import FleetApp
from fleettui.tui.model import SiteRow
from fleettui.tui.panel import DevicePanel
from fleettui.tui.tree import SiteTree
from tests.test_tui import wait_for
from tests.test_tui_panels import plain

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


async def test_a_pending_push_device_is_approved_from_the_palette(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "fleet.db")
    try:
        await store.sync_fleet([Site("lyon", "Lyon depot", "Europe/Paris")],
                               [DeviceState("d1", "S1", "lyon", "127.20.231.1", 4370, "tcp")])
        await store.note_pending_push("DOCK0042", "10.1.2.3", "", "2.4.1", T0)
        app = FleetApp(store, refresh_s=0.2)
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: len(app.pending_push) == 1)
            header = str(app.query_one("#totals", Static).render())
            assert "1 push device pending" in header
            # a problem of its own in the tree, on the "site" of those waiting, under p too
            tree = app.query_one("#tree", SiteTree)
            await wait_for(pilot, lambda: "DOCK0042" in tree.device_nodes)
            node = tree.device_nodes["DOCK0042"]
            assert "? pending approval" in tree.render_label(node, Style(), Style()).plain
            assert node.parent is not None and isinstance(node.parent.data, SiteRow)
            assert node.parent.data.site.name == "Pending approval"
            app.action_toggle_problems()
            assert [r.id for s in app.arranged for r in s.devices] == ["DOCK0042"]
            app.action_toggle_problems()
            app.jump(("device", "DOCK0042"))
            app.selected = ("device", "DOCK0042")
            await app.refresh_panel()
            hint = plain(app.query_one("#panel", DevicePanel).render())  # type: ignore[arg-type]
            assert "dialed in unknown from 10.1.2.3" in hint and "Approve push device" in hint
            items = {text: run for text, run, _help in app.palette_items()}
            run = items["Approve push device DOCK0042 onto Lyon depot (lyon)"]
            run()
            await wait_for(pilot, lambda: "dock0042" in app.rows)
            await wait_for(pilot, lambda: app.pending_push == [])
            app.jump(("device", "dock0042"))

            def panel() -> str:
                return plain(app.query_one("#panel", DevicePanel).render())  # type: ignore[arg-type]

            # the tree was rebuilt under the cursor (the pending line went): the panel
            # follows the jump at the next refresh
            await wait_for(pilot, lambda: "dials in" in panel() and "PUSH (ADMS)" in panel())
        device = await store.device("dock0042")
        assert device is not None and (device.transport, device.site_id) == ("push", "lyon")
        assert await store.pending_push_devices() == []
    finally:
        await store.close()
