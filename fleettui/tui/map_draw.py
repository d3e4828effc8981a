"""How a line of the fleet map is drawn: Rich segments, no Textual, no I/O.

A line holds site labels and runs of device cells (``map_layout.py`` says
where). A cell is a device's glyph in its tone's colour ("● ● ●" or "●●●"),
or a half block "▌" for two devices: the left one in the foreground colour,
the right one in the background colour. The cursor's cell is a block of its
device's colour; in a half block, the cursor's half is bright white.
Consecutive cells of one colour make one segment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from rich.segment import Segment
from rich.style import Style

from fleettui.tui.map_layout import Label, MapLayout, Pitch, Run
from fleettui.tui.map_text import COLOUR, GLYPH

#: the selected half of a half-block character
CURSOR_HALF = "bright_white"
_NO_STYLE = Style()


class Paint(NamedTuple):
    """The styles a frame draws with: the widget's, a label's, the cursor's site's label."""

    base: Style
    label: Style
    site: Style


def draw_line(layout: MapLayout, line: int, tones: bytes, cursor: int,
              paint: Paint) -> tuple[list[Segment], int]:
    """A line's labels and cells as segments, and how many columns they take."""
    site = layout.site[cursor] if 0 <= cursor < layout.devices else -1
    segments: list[Segment] = []
    x = 0
    for item in layout.items[line]:
        if item.x > x:
            segments.append(Segment(" " * (item.x - x), paint.base))
        if isinstance(item, Label):
            segments.append(Segment(item.text, paint.site if item.site == site else paint.label))
            x = item.x + len(item.text)
        else:
            segments += _merge(_cells(layout.form.pitch, item, tones, cursor, paint.base),
                               paint.base)
            x = item.x + layout.form.pitch.advance(item.size)
    return segments, x


def _cells(pitch: Pitch, run: Run, tones: bytes, cursor: int,
           base: Style) -> list[tuple[str, Style]]:
    """The characters of a run of devices, each with its style."""
    if pitch is Pitch.HALF:
        return [("▌", _half_style(*pair)) for pair in _pairs(tones, run, cursor)]
    gap = " " if pitch is Pitch.SPARSE else ""
    cells: list[tuple[str, Style]] = []
    for i in range(run.first, run.first + run.size):
        glyph, colour = GLYPH[tones[i]], COLOUR[tones[i]]
        if i == cursor:
            cells.append((glyph, _cursor_style(colour, base)))
            if gap:
                cells.append((gap, _NO_STYLE))
        else:
            cells.append((glyph + gap, _tone_style(colour)))
    return cells


def _pairs(tones: bytes, run: Run, cursor: int) -> list[tuple[str, str | None]]:
    """(left colour, right colour or None) of each half-block character of a run,
    the cursor's half in bright white."""
    out: list[tuple[str, str | None]] = []
    end = run.first + run.size
    for left in range(run.first, end, 2):
        right = left + 1
        fg = CURSOR_HALF if left == cursor else COLOUR[tones[left]]
        bg = None if right >= end else CURSOR_HALF if right == cursor else COLOUR[tones[right]]
        out.append((fg, bg))
    return out


def _merge(cells: list[tuple[str, Style]], base: Style) -> list[Segment]:
    """Consecutive cells of one style as one segment, over the widget's style."""
    out: list[Segment] = []
    over: dict[Style, Style] = {}  # each style over the base once (adding styles is not free)
    text, style = "", _NO_STYLE
    for cell, cell_style in cells:
        if cell_style is style:
            text += cell
            continue
        if text:
            out.append(Segment(text, over.get(style) or over.setdefault(style, base + style)))
        text, style = cell, cell_style
    if text:
        out.append(Segment(text, base + style))
    return out


@lru_cache(maxsize=64)
def _tone_style(colour: str) -> Style:
    """A device's glyph in its colour."""
    return Style(color=colour)


def _cursor_style(colour: str, base: Style) -> Style:
    """The cursor's cell: a block of the device's colour, its glyph in the background's."""
    return Style(color=base.bgcolor or "black", bgcolor=colour, bold=True)


@lru_cache(maxsize=64)
def _half_style(fg: str, bg: str | None) -> Style:
    """A half block: the left device in the foreground, the right in the background
    (the widget's background when there is none)."""
    return Style(color=fg, bgcolor=bg)
