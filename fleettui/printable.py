"""How is text from outside shown on a terminal? With its control characters made visible.

Names, reasons and notes come from API clients and devices (a silence reason, a
device name, an acknowledgement's ``by``, a serial a device answers with). They
are stored and served as given, but a terminal obeys what it is sent: an ESC
sequence in a device name could clear the operator's screen, retitle the
window, or hide a line, and a bidirectional override could make a line read
backwards. Wherever such text reaches a terminal (the control room, the CLI's
tables, log lines) it goes through :func:`printable` first. JSON output needs
nothing: ``json.dumps`` already escapes every one of these.

Imports nothing of ours, so any layer may use it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from typing import TypeVar, cast

#: C0 controls, DEL, C1 controls (ESC and CSI among them), the bidirectional
#: embeddings, overrides and isolates, and the line and paragraph separators
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029"
                     "\u2066-\u2069]")


T = TypeVar("T")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep: str = "") -> str:
    """``text`` with every character that steers a terminal written as an escape
    (``\\x1b``, ``\\u202e``); the characters of ``keep`` (say "\\n" for a table the
    program drew itself) stay as they are."""
    if keep:
        return "".join(printable(part) if part not in keep else part
                       for part in re.split(f"([{re.escape(keep)}])", text))
    return _UNSAFE.sub(_escape, text)


class PrintableFormatter(logging.Formatter):
    """A log formatter whose lines carry no terminal controls (the log may be tailed on
    a terminal): what a record says is escaped, its line breaks (tracebacks) kept."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, made printable."""
        return printable(super().format(record), keep="\n")


def printable_fields(obj: T) -> T:
    """A copy of a dataclass (or a dict of its fields) whose text fields are made printable,
    nested text left alone; the object itself when nothing needed escaping. For views that
    draw stored objects on a terminal: ids, which the config and the API limit to plain
    characters, are never changed by it."""
    if isinstance(obj, dict):
        if not any(isinstance(v, str) and _UNSAFE.search(v) for v in obj.values()):
            return obj
        return cast(T, {k: printable(v) if isinstance(v, str) else v for k, v in obj.items()})
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return obj
    names = _field_names(type(obj))
    values = [getattr(obj, name) for name in names]
    # the usual case, nothing to escape, in one search (the control room reads 2,000
    # devices a second: a search per field was a tenth of its refresh)
    if not _UNSAFE.search("".join(v for v in values if isinstance(v, str))):
        return obj
    changes = {name: printable(value) for name, value in zip(names, values, strict=True)
               if isinstance(value, str) and _UNSAFE.search(value)}
    return dataclasses.replace(obj, **changes)


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    """A dataclass's field names, read once per class."""
    return tuple(f.name for f in dataclasses.fields(cls))
