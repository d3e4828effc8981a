"""The help screen: every key binding and every palette action, one line each."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


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


def help_text(keys: list[tuple[str, str]], actions: list[tuple[str, str]]) -> Text:
    """The help as text: a keys section and a palette section."""
    out = Text()
    out.append("Keys\n", style="bold underline")
    width = max((len(k) for k, _ in keys), default=0) + 2
    for key, what in keys:
        out.append(key.ljust(width), style="bold cyan")
        out.append(f"{what}\n")
    out.append("\nCommand palette (Ctrl+P, then type)\n", style="bold underline")
    width = max((len(a) for a, _ in actions), default=0) + 2
    for action, what in actions:
        out.append(action.ljust(width), style="bold")
        out.append(f"{what}\n")
    out.append("\nEsc, q or ? closes this screen.", style="dim")
    return out


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
