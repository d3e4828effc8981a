"""Your keys: ``[tui.keys]`` in the config remaps bindings by id; a wrong id, a bad key
name or a key two bindings would share is a clear config error before the screen
opens; the remapped keys work and the help screen shows them with their ids."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fleettui.config import ConfigError, parse_config
from fleettui.store import Store
from fleettui.tui.app import FleetApp
from fleettui.tui.help import HelpScreen
from fleettui.tui.keys import binding_ids, check_keys
from tests.test_tui import wait_for
from tests.test_tui_table import FLEET, NOW, store  # noqa: F401 (the fixture)


def _config(keys: str) -> str:
    return f"[tui.keys]\n{keys}\n"


@pytest.mark.parametrize(("keys", "message"), [
    ('problems = "P"', "expected a binding id such as 'app.problems'"),
    ('"app.problems" = "P Q"', "expected key names such as 'P'"),
    ('"app.problems" = ""', "expected key names"),
])
def test_a_badly_formed_entry_is_a_config_error(keys: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_config(keys), Path("fleet.toml"))


def test_an_unknown_id_names_the_closest_one_and_a_shared_key_names_both() -> None:
    config = parse_config(_config('"app.tabel" = "T"'), Path("fleet.toml"))
    with pytest.raises(ConfigError) as e:
        check_keys(config)
    assert "tui.keys.app.tabel: no such key binding: did you mean 'app.table'?" in str(e.value)
    config = parse_config(_config('"app.table" = "p"'), Path("fleet.toml"))
    with pytest.raises(ConfigError, match=re.escape("'p' is also the key of app.problems")):
        check_keys(config)
    # a key a widget answers to would never reach the app while that widget has focus
    config = parse_config(_config('"app.table" = "space"'), Path("fleet.toml"))
    with pytest.raises(ConfigError, match=re.escape("'space' is also the key of table.mark "
                                                    "in the fleet table")):
        check_keys(config)
    check_keys(parse_config(_config('"app.problems" = "P"\n"app.table" = "p"'),
                            Path("fleet.toml")))  # a swap is fine


def test_every_binding_of_the_control_room_has_an_id() -> None:
    assert {"app.problems", "app.table", "app.alerts", "table.sort_buffer", "tree.down",
            "panel.page_down"} <= set(binding_ids())


def test_check_config_refuses_an_unknown_binding(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(_config('"app.nope" = "x"'))
    done = subprocess.run([sys.executable, "-m", "fleettui", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"{path}: tui.keys.app.nope: no such key binding" in done.stderr


async def test_remapped_keys_work_and_the_help_shows_them(
        store: Store, tmp_path: Path) -> None:  # noqa: F811 (the fixture)
    config = parse_config(_config('"app.problems" = "P"\n"app.table" = "T"'),
                          tmp_path / "fleet.toml")
    # a viewer (embed=False): an engine built from this config would poll no device
    app = FleetApp(store, None, config=config, embed=False, clock=lambda: NOW, refresh_s=0.2)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: len(app.rows) == len(FLEET))
        await pilot.press("p")  # no longer its key
        await pilot.pause()
        assert not app.problems_only
        await pilot.press("P")
        await wait_for(pilot, lambda: app.problems_only)
        await pilot.press("T")
        await wait_for(pilot, lambda: app.view == "table")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        lines = _help_lines(app)
        assert any(line.split()[:1] == ["P"] and "Problems only" in line
                   and line.rstrip().endswith("app.problems") for line in lines)
        assert any("sort by buffer fill" in line and "table.sort_buffer" in line
                   for line in lines)


def _help_lines(app: FleetApp) -> list[str]:
    from rich.console import Console
    from textual.widgets import Static

    console = Console(width=160, file=io.StringIO(), color_system=None)
    with console.capture() as capture:
        console.print(app.screen.query_one("#help-text", Static).content)
    return capture.get().splitlines()
