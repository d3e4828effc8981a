"""Employee sync from the palette: a file, a preview from the real devices, then apply.

Pilot drives the app over the emulated 5-device fleet of test_tui.py (3
users on each device); the preview is a dry-run command run by the engine
against the emulated devices, never the TUI talking to a device.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, Input, Static

from fleettui.config import parse_config
from fleettui.domain import CommandState
from fleettui.emulator.device import Profile
from fleettui.engine.engine import Engine
from fleettui.store import open_store
from fleettui.tui.app import FleetApp
from fleettui.tui.employees import EmployeeSync, load_employees
from tests.conftest import Emulated, device_config, sample_users
from tests.test_tui import LAYOUT, OFFLINE, _palette_top, click, two_site_toml, wait_for

CSV = (
    "id,name,card\n"
    "1001,Worker 1,5000001\n"  # as on the device: unchanged
    "1002,Renamed Two,42\n"  # updated
    "2001,Amina New,777\n"  # added; 1003 is not in the file: removed if asked
)


@pytest.fixture
async def fleet(
    emulate: Callable[..., Emulated], tmp_path: Path
) -> AsyncIterator[tuple[FleetApp, Emulated]]:
    """The app over an engine polling the 5 emulated devices, and the emulator itself."""
    configs = [device_config(d, profile=Profile(reboot_s=0.3)) for d in LAYOUT]
    em = emulate(configs, users={c.id: sample_users(3) for c in configs})
    em.emu.run(em.fleet.set_faults(OFFLINE, {"offline": True}))
    config = parse_config(two_site_toml(configs), tmp_path / "fleet.toml")
    store = await open_store(tmp_path / "fleet.db")
    try:
        yield FleetApp(store, Engine(config, store), refresh_s=0.2), em
    finally:
        await store.close()


def users_of(em: Emulated, device_id: str) -> dict[str, tuple[str, int]]:
    """The emulated device's users, read from the device itself."""
    dev = em.fleet.devices[device_id]
    return em.emu.call(lambda: {u.user_id: (u.name, u.card) for u in dev.users.values()})


def _message(app: FleetApp) -> str:
    return str(app.screen.query_one("#message", Static).render())



async def preview(pilot: Pilot[None], app: FleetApp, device_id: str, path: Path) -> EmployeeSync:
    """Open the employee sync of a device, give it the file, press Preview."""
    app.sync_employees(device_id, device_id)
    await wait_for(pilot, lambda: isinstance(app.screen, EmployeeSync)
                   and bool(app.screen.query("#path")))
    screen = app.screen
    assert isinstance(screen, EmployeeSync)
    screen.query_one("#path", Input).value = str(path)
    await click(pilot, "#preview")
    return screen

async def test_preview_from_the_devices_then_apply_to_a_site(
    fleet: tuple[FleetApp, Emulated], tmp_path: Path
) -> None:
    app, em = fleet
    path = tmp_path / "employees.csv"
    path.write_text(CSV)
    site_b = [d for d, s in LAYOUT.items() if s == "site-b"]
    before = {d: users_of(em, d) for d in site_b}
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: all(d in app.rows for d in LAYOUT))
        await pilot.press("ctrl+p")
        await pilot.press(*"sync employees to all devices of site b")
        await wait_for(pilot, lambda: (_palette_top(app) or "").startswith(
            "Sync employees to all devices of Site B"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, EmployeeSync)
                       and bool(app.screen.query("#path")))
        screen = app.screen
        assert isinstance(screen, EmployeeSync)
        screen.query_one("#path", Input).value = str(path)
        await click(pilot, "#remove")
        assert screen.query_one("#remove", Checkbox).value
        screen.query_one("#path", Input).focus()
        await pilot.press("enter")

        # the preview: counts from each device's real users, and nothing written
        await wait_for(pilot, lambda: screen.preview is not None and all(
            c.state is CommandState.DONE for c in screen.preview.commands), 15)
        assert screen.preview is not None
        assert sorted(c.device_id for c in screen.preview.commands) == site_b
        for c in screen.preview.commands:
            assert c.params["dry_run"] is True
            assert c.result is not None
            assert {k: c.result[k] for k in ("added", "updated", "removed", "unchanged")} == {
                "added": 1, "updated": 1, "removed": 1, "unchanged": 1}
            assert c.result["names"] == {"added": ["Amina New"], "updated": ["Renamed Two"],
                                         "removed": ["Worker 3"]}
        shown = str(screen.query_one("#preview-text", Static).render())
        assert "+1 added" in shown and "-1 removed" in shown and "Amina New" in shown
        assert {d: users_of(em, d) for d in site_b} == before

        # apply: one real request, under a key derived from the file and the target
        assert not screen.query_one("#apply", Button).disabled
        await click(pilot, "#apply")
        await wait_for(pilot, lambda: not isinstance(app.screen, EmployeeSync))
        real = [c for c in await app.store.commands() if "dry_run" in c.params
                and not c.params["dry_run"]]
        assert len({c.request_id for c in real}) == 1 and len(real) == 2
        request = await app.store.command_request(real[0].request_id)
        assert request is not None and request.idempotency_key is not None
        assert request.idempotency_key.startswith("tui-employees:site-b:")
        assert request.id in app.my_requests

        async def done() -> bool:
            fresh = await app.store.command_request(request.id)
            return fresh is not None and all(c.state is CommandState.DONE
                                             for c in fresh.commands)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while not await done():
            assert loop.time() < deadline
            await pilot.pause(0.1)
    wanted = {"1001": ("Worker 1", 5000001), "1002": ("Renamed Two", 42),
              "2001": ("Amina New", 777)}
    for d in site_b:
        assert users_of(em, d) == wanted
    # the other site was not touched
    assert set(users_of(em, "dev_a_01")) == {"1001", "1002", "1003"}


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("missing.csv", None, "No such file"),
    ("bad_card.csv", "id,name,card\n1001,A,1\n1002,B,abc\n", "bad_card.csv:3: card"),
    ("bad_id.csv", "id,name,card\n1001,A,1\n\n12x,B,2\n", "bad_id.csv:4: user_id"),
    ("bad.json", '[{"user_id": "1", "name": "A"}, {"user_id": "x"}]',
     "bad.json: employees[1]: user_id"),
    ("broken.json", '[{"user_id": "1",\n', "broken.json:2: not valid JSON"),
    ("empty.csv", "id,name,card\n", "no employees in the file"),
    ("header.csv", "who,name\n1,A\n", "no 'id'"),
])
async def test_a_broken_file_shows_an_error_and_queues_nothing(
    fleet: tuple[FleetApp, Emulated], tmp_path: Path, name: str, content: str | None,
    expected: str,
) -> None:
    app, _em = fleet
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: all(d in app.rows for d in LAYOUT))
        screen = await preview(pilot, app, "dev_a_01", path)
        await wait_for(pilot, lambda: bool(screen.error))
        assert expected in screen.error, screen.error
        assert expected.split(":")[0] in _message(app)
        assert screen.query_one("#apply", Button).disabled
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, EmployeeSync))
        assert await app.store.commands() == []


def test_load_employees_hashes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(CSV)
    employees, digest = load_employees(path)
    assert [e["user_id"] for e in employees] == ["1001", "1002", "2001"]
    path.write_text(CSV + "2002,Second New,778\n")
    assert load_employees(path)[1] != digest


async def test_a_viewer_previews_and_applies_through_the_owning_poller(
    emulate: Callable[..., Emulated], tmp_path: Path
) -> None:
    configs = [device_config(d, profile=Profile(reboot_s=0.3)) for d in LAYOUT]
    em = emulate(configs, users={c.id: sample_users(3) for c in configs})
    em.emu.run(em.fleet.set_faults(OFFLINE, {"offline": True}))
    config = parse_config(two_site_toml(configs), tmp_path / "fleet.toml")
    owner_store = await open_store(tmp_path / "fleet.db")
    engine = Engine(config, owner_store)
    await engine.start()
    viewer_store = await open_store(tmp_path / "fleet.db")
    path = tmp_path / "employees.json"
    path.write_text('[{"user_id": "1001", "name": "Worker 1", "card": 5000001},'
                    ' {"user_id": "3001", "name": "Via Viewer", "card": 9}]')
    try:
        app = FleetApp(viewer_store, refresh_s=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: all(d in app.rows for d in LAYOUT))
            assert app.engine is None
            screen = await preview(pilot, app, "dev_a_01", path)
            await wait_for(pilot, lambda: screen.preview is not None and all(
                c.state is CommandState.DONE for c in screen.preview.commands), 15)
            assert screen.preview is not None
            (c,) = screen.preview.commands
            assert c.result is not None
            assert (c.result["added"], c.result["unchanged"], c.result["removed"]) == (1, 1, 0)
            assert "3001" not in users_of(em, "dev_a_01")
            await click(pilot, "#apply")
            await wait_for(pilot, lambda: not isinstance(app.screen, EmployeeSync))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while "3001" not in users_of(em, "dev_a_01"):
                assert loop.time() < deadline
                await pilot.pause(0.1)
        assert users_of(em, "dev_a_01")["3001"] == ("Via Viewer", 9)
        assert set(users_of(em, "dev_a_01")) == {"1001", "1002", "1003", "3001"}
    finally:
        await engine.stop()
        await viewer_store.close()
        await owner_store.close()


async def test_changing_the_file_or_options_after_a_preview_disables_apply(
    fleet: tuple[FleetApp, Emulated], tmp_path: Path
) -> None:
    app, em = fleet
    path = tmp_path / "employees.csv"
    path.write_text(CSV)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: all(d in app.rows for d in LAYOUT))
        screen = await preview(pilot, app, "dev_b_01", path)
        apply = screen.query_one("#apply", Button)
        await wait_for(pilot, lambda: not apply.disabled, 15)
        await click(pilot, "#remove")  # the preview was without removals: it is stale now
        await wait_for(pilot, lambda: apply.disabled and "preview again" in _message(app))
        assert screen.preview is None
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, EmployeeSync))
        # only the dry run was ever queued; the device is as it was
        assert all(c.params["dry_run"] for c in await app.store.commands())
    assert set(users_of(em, "dev_b_01")) == {"1001", "1002", "1003"}
