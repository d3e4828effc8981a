"""The help screen: every key binding and every palette action, one line each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    ("? pending approval", "a push device dialed in unknown: approve it onto a site from "
                           "the palette (the header counts them)"),
    ("59 online (1 flapping)", "the header's statuses add up to the fleet; a mark is "
                               "counted within its device's status"),
]


#: a line of the keys section: (keys, what they do, binding id for [tui.keys] or "")
KeyRow = tuple[str, str, str]


def binding_rows(bindings: Iterable[BindingType], keymap: Mapping[str, str] | None = None
                 ) -> list[KeyRow]:
    """(keys in force, what they do, id) for every described binding, in declaration
    order; ``keymap`` (``[tui.keys]``) replaces a binding's keys."""
    rows: list[KeyRow] = []
    for b in bindings:
        if not isinstance(b, Binding) or not b.description:
            continue
        keys = (keymap or {}).get(b.id or "", b.key)
        shown = ", ".join(_key_label(k) for k in keys.split(","))
        rows.append((shown, b.description, b.id or ""))
    return rows


def _key_label(key: str) -> str:
    names = {"slash": "/", "question_mark": "?", "escape": "Esc", "enter": "Enter",
             "space": "Space", "asterisk": "*", "pageup": "PgUp", "pagedown": "PgDn",
             "home": "Home", "end": "End", "up": "↑", "down": "↓", "left": "←", "right": "→"}
    key = key.strip()
    if key in names:
        return names[key]
    if key.startswith("ctrl+"):
        return "Ctrl+" + key[5:].upper()
    return key.upper() if key.startswith("f") and key[1:].isdigit() else key


def help_text(sections: list[tuple[str, list[KeyRow]]], actions: list[tuple[str, str]]
              ) -> Group:
    """The help: the keys (a section per place they work in, each with its binding id),
    the palette, the header and the marks; descriptions wrap in their column."""

    # one width for every section's keys, so their descriptions line up
    key_width = max((len(row[0]) for _title, rows in sections for row in rows), default=0)

    def table(rows: list[tuple[str, ...]], style: str, width: int | None = None) -> Table:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style=style, no_wrap=True, width=width)
        grid.add_column(ratio=1)
        if any(len(row) > 2 for row in rows):
            grid.add_column(style="dim", no_wrap=True)
        for row in rows:
            # plain text: "[poller]" is a label, not Rich markup
            grid.add_row(*(Text(cell) for cell in row))
        return grid

    parts: list[Text | Table] = []
    for title, rows in sections:
        parts += [Text(f"\n{title}" if parts else title, style="bold underline"),
                  table(list(rows), "bold cyan", key_width)]
    return Group(
        *parts,
        Text('Any key can be yours: in the config, [tui.keys] "app.problems" = "P" '
             "(the ids are on the right).", style="dim"),
        Text("\nCommand palette (Ctrl+P, then type)", style="bold underline"),
        table(list(actions), "bold"),
        Text("\nHeader", style="bold underline"),
        table(list(MODES), "bold"),
        Text("\nMarks (each one is a problem: shown under p)", style="bold underline"),
        table(list(MARKS), "bold"),
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

    def __init__(self, sections: list[tuple[str, list[KeyRow]]],
                 actions: list[tuple[str, str]]) -> None:
        super().__init__()
        self.sections = sections
        self.actions = actions

    def compose(self) -> ComposeResult:
        """The help text in a scrollable box."""
        with VerticalScroll() as box:
            box.border_title = "fleettui help"
            yield Static(help_text(self.sections, self.actions), id="help-text")

    def action_close(self) -> None:
        """Back to the control room."""
        self.dismiss(None)
