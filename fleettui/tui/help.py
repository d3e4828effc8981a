"""The help screen: every key binding and every palette action, one line each."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

#: what the header's mode tag means
MODES = [
    ("[poller]", "this control room polls the devices (it owns the database's poller lock); "
                 "quitting stops polling"),
    ("[poller 12/40 sites]", "on a database several pollers share: this one polls 12 of "
                             "the 40 sites, the others the rest"),
    ("[viewer]", "another process (a headless poller or another control room) polls them; "
                 "this one reads the store and queues commands for that poller"),
]
#: the marks beside a device in the tree, and how the header counts them
MARKS = [
    ("● ✖ ▲ ○", "online, offline, in error, not checked yet"),
    ("↯ flapping", "its link goes up and down (alerts wait until it settles)"),
    ("◷ clock +7m", "its clock is off by more than [problems] clock_drift_s (2 min)"),
    ("▮ buffer 96%", "its record log is fuller than [problems] buffer_full_pct (90%)"),
    ("⟳ no sync 3h", "it answers, but its punches were not synced for [problems] "
                     "unsynced_after_s (1 h)"),
    ("59 online (1 flapping)", "the header's statuses add up to the fleet; a mark is "
                               "counted within its device's status"),
]


def binding_rows(bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
    """(keys, what they do) for every described binding, in declaration order."""
    rows: list[tuple[str, str]] = []
    for b in bindings:
        if not isinstance(b, Binding) or not b.description:
            continue
        keys = ", ".join(_key_label(k) for k in b.key.split(","))
        rows.append((keys, b.description))
    return rows


def _key_label(key: str) -> str:
    names = {"slash": "/", "question_mark": "?", "escape": "Esc", "enter": "Enter"}
    key = key.strip()
    if key in names:
        return names[key]
    if key.startswith("ctrl+"):
        return "Ctrl+" + key[5:].upper()
    return key.upper() if key.startswith("f") and key[1:].isdigit() else key


def help_text(keys: list[tuple[str, str]], actions: list[tuple[str, str]]) -> Group:
    """The help: a keys section and a palette section, descriptions wrapping in their column."""

    def table(rows: list[tuple[str, str]], style: str) -> Table:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style=style, no_wrap=True)
        grid.add_column(ratio=1)
        for left, right in rows:
            # plain text: "[poller]" is a label, not Rich markup
            grid.add_row(Text(left), Text(right))
        return grid

    return Group(
        Text("Keys", style="bold underline"),
        table(keys, "bold cyan"),
        Text("\nCommand palette (Ctrl+P, then type)", style="bold underline"),
        table(actions, "bold"),
        Text("\nHeader", style="bold underline"),
        table(MODES, "bold"),
        Text("\nMarks (each one is a problem: shown under p)", style="bold underline"),
        table(MARKS, "bold"),
        Text("\n↑ ↓ PgUp PgDn scroll this screen; Esc, q or ? closes it.", style="dim"),
    )


class HelpScreen(ModalScreen[None]):
    """A modal listing the keys and palette actions; Esc, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "close", "Close", id="help.close"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 100; height: 90%;
                                  border: thick $primary; padding: 0 1;
                                  background: $surface; }
    """

    def __init__(self, keys: list[tuple[str, str]], actions: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys
        self.actions = actions

    def compose(self) -> ComposeResult:
        """The help text in a scrollable box."""
        with VerticalScroll() as box:
            box.border_title = "fleettui help"
            yield Static(help_text(self.keys, self.actions), id="help-text")

    def action_close(self) -> None:
        """Back to the control room."""
        self.dismiss(None)
