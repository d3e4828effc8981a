"""Where in a TOML text a key is written: line numbers for error messages.

tomllib parses values but forgets positions; ``KeyLocator`` scans the text
for table headers and ``key =`` lines (dotted keys, quoted keys, inline tables
and values spanning several lines included) so that an error can say
"fleet.toml:23: devices[2].port".
"""

from __future__ import annotations

import json
import re

#: a key path in the TOML document: ("devices", 2, "port")
Loc = tuple[str | int, ...]


def _parse_key(text: str, i: int) -> tuple[list[str], int] | None:
    """Parse a (dotted, maybe quoted) TOML key at ``text[i:]``: its parts and the end index."""
    parts: list[str] = []
    n = len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return None
        if text[i] == '"':
            j = i + 1
            buf = ""
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    buf += text[j : j + 2]
                    j += 2
                    continue
                buf += text[j]
                j += 1
            try:
                parts.append(json.loads(f'"{buf}"'))
            except ValueError:
                parts.append(buf)
            i = j + 1
        elif text[i] == "'":
            j = text.find("'", i + 1)
            if j < 0:
                return None
            parts.append(text[i + 1 : j])
            i = j + 1
        else:
            m = re.compile(r"[A-Za-z0-9_-]+").match(text, i)
            if not m:
                return None
            parts.append(m.group())
            i = m.end()
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == ".":
            i += 1
            continue
        return parts, i


def _scan_value(text: str, delim: str | None, depth: int) -> tuple[str | None, int]:
    """Carry a TOML value's lexical state over one line: open multi-line string, bracket depth."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if delim is not None:
            if c == "\\" and delim in ('"', '"""'):
                i += 2
                continue
            if len(delim) == 3 and text.startswith(delim, i):
                j = i
                while j < n and text[j] == delim[0]:
                    j += 1
                i, delim = j, None
                continue
            if len(delim) == 1 and c == delim:
                delim = None
            i += 1
            continue
        if c == "#":
            break
        if text.startswith('"""', i) or text.startswith("'''", i):
            delim = text[i : i + 3]
            i += 3
            continue
        if c in "\"'":
            delim = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    if delim is not None and len(delim) == 1:
        delim = None  # single-line strings end with the line
    return delim, max(depth, 0)


class KeyLocator:
    """Line numbers of TOML keys and tables, found by scanning the text.

    ``line_of(("devices", 2, "port"))`` is the ``port =`` line after the third
    ``[[devices]]`` header; a key that is not written falls back to its
    table's header line.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[Loc, int] = {}
        arrays: dict[Loc, int] = {}  # array-of-tables path -> elements seen
        table: Loc = ()
        delim: str | None = None
        depth = 0
        for number, line in enumerate(text.splitlines(), start=1):
            if delim is not None or depth > 0:
                delim, depth = _scan_value(line, delim, depth)
                continue
            stripped = line.lstrip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("["):
                is_array = stripped.startswith("[[")
                parsed = _parse_key(stripped, 2 if is_array else 1)
                if parsed is None:
                    continue
                parts = parsed[0]
                head: list[str | int] = []
                for part in parts[:-1]:
                    head.append(part)
                    if tuple(head) in arrays:
                        head.append(arrays[tuple(head)] - 1)
                head.append(parts[-1])
                path = tuple(head)
                if is_array:
                    count = arrays.get(path, 0)
                    arrays[path] = count + 1
                    self._add(path, number)
                    path = (*path, count)
                table = path
                self._add(table, number)
                continue
            parsed = _parse_key(stripped, 0)
            if parsed is None:
                continue
            parts, end = parsed
            if not stripped.startswith("=", end):
                continue
            for k in range(1, len(parts) + 1):
                self._add((*table, *parts[:k]), number)
            delim, depth = _scan_value(stripped[end + 1 :], None, 0)

    def _add(self, loc: Loc, line: int) -> None:
        self._lines.setdefault(loc, line)

    def line_of(self, loc: Loc) -> int | None:
        """The line of ``loc``, else of its nearest written parent, else None."""
        for k in range(len(loc), 0, -1):
            line = self._lines.get(loc[:k])
            if line is not None:
                return line
        return None
