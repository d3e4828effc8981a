"""Alert notifications as terminal escape sequences (OSC 777 / OSC 9), opt-in.

Over SSH there is no desktop bus for the operator's desktop, but the
terminal on their desk is there: OSC 777 (``ESC ] 777 ; notify ; title ;
body ESC \\``, urxvt, foot, Ghostty, WezTerm...) or OSC 9 (``ESC ] 9 ; body
ESC \\``, iTerm2, ConEmu, Windows Terminal...) ask it to show a desktop
notification. Terminals without them ignore the sequence. Inside tmux
(``$TMUX`` set) the sequence is wrapped for passthrough, which tmux only
honours with ``set -g allow-passthrough on``.

The text comes from alerts, which carry device names and reasons read from
config and devices: every control character (C0, DEL, C1) and every ``;``
(the field separator) is removed, so no alert text can end the sequence
early or inject one of its own. The engine rate-limits this sink like every
other alert sink.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fleettui.engine.alerts import Notification

#: OSC flavours this sink can write
KINDS = ("777", "9")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f;]+")
ST = "\x1b\\"


def clean(text: str, limit: int = 200) -> str:
    """``text`` without control characters or ';', spaces collapsed, at most ``limit`` chars."""
    return " ".join(_UNSAFE.sub(" ", text).split())[:limit]


def osc_sequence(kind: str, title: str, body: str) -> str:
    """The escape sequence asking the terminal to notify ``title``/``body``."""
    if kind == "9":
        # the "fleettui:" prefix also keeps the text from reading as an OSC 9;4 progress code
        return f"\x1b]9;{clean(f'{title}: {body}', 300)}{ST}"
    if kind == "777":
        return f"\x1b]777;notify;{clean(title, 80)};{clean(body)}{ST}"
    raise ValueError(f"unknown OSC notification kind {kind!r}; expected one of {KINDS}")


def osc_kind(value: str | None) -> str | None:
    """An --osc-notify / FLEETTUI_OSC_NOTIFY value as a kind ("777", "9") or None (off).

    Raises ValueError for anything else.
    """
    if value is None:
        return None
    v = value.strip().lower()
    if v in ("", "0", "off", "no", "false"):
        return None
    if v in ("1", "on", "yes", "true", "777"):
        return "777"
    if v == "9":
        return "9"
    raise ValueError(f"expected 777, 9 or off, got {value!r}")


def tmux_passthrough(sequence: str) -> str:
    """``sequence`` wrapped so tmux hands it to the outer terminal (ESCs doubled)."""
    return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + ST


class OscSink:
    """An alert sink that writes terminal notification sequences through ``write``."""

    def __init__(self, write: Callable[[str], None], kind: str = "777", *,
                 tmux: bool = False) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown OSC notification kind {kind!r}; expected one of {KINDS}")
        self._write = write
        self.kind = kind
        self.tmux = tmux
        self.sent = 0

    def __call__(self, n: Notification) -> None:
        """Write one notification."""
        sequence = osc_sequence(self.kind, f"fleettui {n.change}", n.text)
        self._write(tmux_passthrough(sequence) if self.tmux else sequence)
        self.sent += 1
