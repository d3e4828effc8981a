"""Your keys: ``[tui.keys]`` remaps the control room's bindings by their ids.

The config checks the form (``config.TuiSettings``); this module knows the
bindings, so it checks that each id exists and that a new key does not take one
another binding of the same screen already answers to. The app hands the map to
Textual (``App.set_keymap``), and the help screen and footer show the keys in
force.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from textual.binding import Binding, BindingType

from fleettui.config import Config, ConfigError, Problem


def _scopes() -> dict[str, list[BindingType]]:
    """Every remappable binding, by the screen or widget that answers to it."""
    from fleettui.tui.alerts_view import AlertsView
    from fleettui.tui.app import FleetApp
    from fleettui.tui.fleet_map import FleetMap
    from fleettui.tui.fleet_table import FleetTable
    from fleettui.tui.panel import DevicePanel
    from fleettui.tui.tree import SiteTree

    return {"the control room": FleetApp.BINDINGS, "the site tree": SiteTree.BINDINGS,
            "the fleet table": FleetTable.BINDINGS, "the fleet map": FleetMap.BINDINGS,
            "the device panel": DevicePanel.BINDINGS,
            "the alerts view": list(AlertsView.BINDINGS)}


def _with_ids(bindings: Iterable[BindingType]) -> list[Binding]:
    return [b for b in bindings if isinstance(b, Binding) and b.id]


def binding_ids() -> dict[str, Binding]:
    """Every binding that can be remapped, by id."""
    return {b.id: b for bindings in _scopes().values() for b in _with_ids(bindings)
            if b.id is not None}


def keymap_problems(keymap: Mapping[str, str]) -> list[tuple[str, str]]:
    """(binding id, what is wrong) for each id that does not exist, and for each
    remapped key that another binding answers to where both are in force (the control
    room's keys work in the tree, the table and the panel too)."""
    known = binding_ids()
    problems = [(ident, "no such key binding" + _did_you_mean(ident, known)
                 + " (the help screen lists every id)")
                for ident in keymap if ident not in known]
    scopes = _scopes()
    app = scopes.pop("the control room")
    for scope, bindings in [("the control room", app)] + [
            (name, app + bindings) for name, bindings in scopes.items()]:
        owners: dict[str, list[str]] = {}
        for b in _with_ids(bindings):
            for key in keys_in_force(b, keymap).split(","):
                owners.setdefault(key.strip(), []).append(b.id or "")
        for key, ids in owners.items():
            for ident in ids:
                others = [o for o in ids if o != ident]
                if ident in keymap and others:
                    problems.append((ident, f"{key!r} is also the key of {', '.join(others)} "
                                            f"in {scope}"))
    return list(dict.fromkeys(problems))  # a clash in the app's keys is seen from each scope


def _did_you_mean(ident: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(ident, list(known), n=1)
    return f": did you mean {close[0]!r}?" if close else ""


def check_keys(config: Config) -> None:
    """Raise ConfigError naming each ``[tui.keys]`` entry that cannot be used."""
    found = keymap_problems(config.tui.keys)
    if found:
        raise ConfigError([Problem(f"tui.keys.{ident}", message) for ident, message in found],
                          config.source)


def keys_in_force(binding: Binding, keymap: Mapping[str, str]) -> str:
    """The keys a binding answers to, remapped or not."""
    return keymap.get(binding.id or "", binding.key) if binding.id else binding.key
