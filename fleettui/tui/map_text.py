"""The fleet map's words and colours: no Textual, no I/O.

What colour a device's cell is (its tone), how a site's name shortens to fit
the map, and the status line under the map (the device under the cursor and a
legend). Colours are the 16 named ones, as ``model.py`` uses: the map reads
the same on a 16-colour terminal.
"""

from __future__ import annotations

import re
from enum import IntEnum
from functools import lru_cache

from rich.text import Text

from fleettui.domain import DeviceStatus
from fleettui.tui.model import GLYPHS, MARK_GLYPHS, DeviceRow, SiteRow


class Tone(IntEnum):
    """What colour a device's cell is (its value indexes ``GLYPH`` and ``COLOUR``)."""

    OK = 0
    PROBLEM = 1
    OFFLINE = 2
    ERROR = 3
    UNKNOWN = 4


#: glyph, 16-colour name and legend word of each tone
TONES: dict[Tone, tuple[str, str, str]] = {
    Tone.OK: (*GLYPHS[DeviceStatus.ONLINE], "online"),
    # yellow, as the marks beside a device in the tree (model.MARK_GLYPHS)
    Tone.PROBLEM: (GLYPHS[DeviceStatus.ONLINE][0], "yellow", "problem"),
    Tone.OFFLINE: (*GLYPHS[DeviceStatus.OFFLINE], "offline"),
    Tone.ERROR: (*GLYPHS[DeviceStatus.ERROR], "error"),
    Tone.UNKNOWN: (*GLYPHS[DeviceStatus.UNKNOWN], "unknown"),
}
#: each tone's glyph and colour by its value (faster than the dict when drawing)
GLYPH = tuple(TONES[t][0] for t in Tone)
COLOUR = tuple(TONES[t][1] for t in Tone)

_STATUS_TONES = {DeviceStatus.OFFLINE: Tone.OFFLINE, DeviceStatus.ERROR: Tone.ERROR,
                 DeviceStatus.UNKNOWN: Tone.UNKNOWN, DeviceStatus.ONLINE: Tone.OK}


def tone_of(row: DeviceRow) -> Tone:
    """A device's tone: its status, or "problem" when it answers but is flapping,
    its clock is off, its buffer nearly full or its punches unsynced."""
    status = row.device.status
    if status is DeviceStatus.ONLINE:
        return Tone.PROBLEM if row.issues or row.flapping else Tone.OK
    return _STATUS_TONES[status]


# --- site names ----------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")


def clean(name: str) -> str:
    """A name on one line, its runs of spaces (tabs, newlines) made single spaces."""
    return " ".join(name.split())


@lru_cache(maxsize=16384)
def shorten(name: str, width: int) -> str:
    """A site's label in at most ``width`` characters, as telling as can be: the
    name itself; its words shortened, the first first ("Plant A - Lyon" →
    "Pla A Lyon"), numbers kept whole; at last the initials with the last word
    ("PALyon", "PAL"; "Site 042" → "S42")."""
    name = clean(name)
    if len(name) <= width:
        return name
    if width <= 0:
        return ""
    words = _WORD.findall(name) or [name]
    spaced = _shrink_words(words, width)
    if spaced is not None:
        return spaced
    parts = [w.lstrip("0") or "0" if w.isdigit() else w for w in words]
    head = "".join(p if p.isdigit() else p[0] for p in parts[:-1])
    last = parts[-1]
    if last.isdigit():
        return (head[:max(0, width - len(last))] + last)[-width:]
    return (head + last)[:width]


def _shrink_words(words: list[str], width: int) -> str | None:
    """The words joined by spaces, cut (to 3 letters at least, numbers never) from the
    first word on until they fit in ``width``: the last words ("Lyon" in "Plant A -
    Lyon") tell sites apart best. None if they cannot fit so."""
    sizes = [len(w) for w in words]
    excess = sum(sizes) + len(sizes) - 1 - width
    for i, word in enumerate(words):
        if excess <= 0:
            break
        cut = 0 if word.isdigit() else min(excess, max(0, len(word) - 3))
        sizes[i] -= cut
        excess -= cut
    if excess > 0:
        return None
    return " ".join(w[:n] for w, n in zip(words, sizes, strict=True))


# --- the status line -------------------------------------------------------------

_SHORT_WORDS = {"online": "ok", "problem": "warn", "offline": "off", "error": "err",
                "unknown": "unk"}


def legend(short: bool = False) -> Text:
    """"● online ● problem ✖ offline ▲ error ○ unknown", each glyph in its colour
    (``short``: "●ok ●warn ✖off ▲err ○unk")."""
    parts: list[tuple[str, str] | str] = []
    for glyph, colour, word in TONES.values():
        parts += [" " if parts else "", (glyph, colour),
                  _SHORT_WORDS[word] if short else f" {word}"]
    return Text.assemble(*parts)


def describe(row: DeviceRow, site: SiteRow | None) -> Text:
    """The device under the cursor: its id, its site's full name, its status and marks."""
    glyph, colour, _ = TONES[tone_of(row)]
    text = Text.assemble((row.id, "bold"))
    if site is not None:
        text.append(f" · {clean(site.site.name)}")
    text.append(" · ")
    text.append(f"{glyph} {row.device.status.value}", colour)
    for mark, note in row.labelled_marks():
        mark_glyph, mark_colour = MARK_GLYPHS[mark]
        text.append(f" {mark_glyph} {note}", mark_colour)
    return text


def status_text(row: DeviceRow | None, site: SiteRow | None, width: int) -> Text:
    """The status line in ``width`` columns: the device, then the legend (shortened,
    or left out, when the device's line needs the room)."""
    left = describe(row, site) if row is not None else Text("no device shown", "dim")
    for tail in (legend(), legend(short=True)):
        room = width - left.cell_len - tail.cell_len
        if room >= 2:
            return Text.assemble(left, " " * room, tail)
    left.truncate(max(0, width), overflow="ellipsis")
    return left
