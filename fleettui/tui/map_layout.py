"""Where the fleet map puts each device: no Textual, no I/O.

The map draws every device as a cell coloured by its status, grouped by site
under the site's name, and must fit a whole fleet (2,000 devices on 100 sites)
on one 80x24 screen. ``layout_map`` tries forms from the most readable to the
densest and keeps the first that fits: a device per character with a space
between ("● ● ●"), then a device per character ("●●●"), then two devices per
character (half blocks, "▌": one device in the foreground colour, the other in
the background colour); each as a table (a row per site, names in a column)
before flowing the sites inline ("Plant A ●●● Farm B ●●"), with site names
shortened step by step. When nothing fits, the densest form scrolls: no
device is ever dropped.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from fleettui.tui.map_text import clean, shorten


class Pitch(Enum):
    """How many character cells a device takes."""

    SPARSE = "sparse"  # a device per character, a space between: "● ● ●"
    FULL = "full"  # a device per character: "●●●"
    HALF = "half"  # two devices per character (half blocks): "▌▌"

    def capacity(self, x: int, width: int) -> int:
        """How many devices fit on a line from column ``x``."""
        room = max(0, width - x)
        if self is Pitch.SPARSE:
            return (room + 1) // 2
        return room if self is Pitch.FULL else 2 * room

    def advance(self, count: int) -> int:
        """How many columns ``count`` devices take (a sparse run keeps its last space)."""
        if self is Pitch.SPARSE:
            return 2 * count
        return count if self is Pitch.FULL else (count + 1) // 2


@dataclass(frozen=True, slots=True)
class Form:
    """One way to draw the map: the pitch, table or flow, and how long a site's label may be."""

    pitch: Pitch
    #: a row per site with the names in a column; else the sites flow inline
    table: bool
    label: int

    @property
    def after_label(self) -> int:
        """Spaces between a label and its cells (half blocks sit right against it)."""
        return 0 if self.pitch is Pitch.HALF else 1


class Label(NamedTuple):
    """A site's name (maybe shortened) at a line and column."""

    line: int
    x: int
    text: str
    site: int


class Run(NamedTuple):
    """Consecutive devices of one site on one line, from flat index ``first``, ``size`` of them."""

    line: int
    x: int
    first: int
    size: int
    site: int


#: the longest a label gets, then the steps by which labels shorten
LABEL_STEPS = (32, 16, 12, 10, 8, 6, 5, 4, 3, 2)
#: the shortest label each pitch accepts before trying a denser pitch
_SHORTEST = {Pitch.SPARSE: 8, Pitch.FULL: 4, Pitch.HALF: 2}
#: a table's names are never shorter than this (else the sites flow)
_TABLE_SHORTEST = 8


def candidate_forms(longest_name: int) -> list[Form]:
    """Every form worth trying, the most readable first."""
    top = max(1, min(longest_name, LABEL_STEPS[0]))
    widths = [top] + [w for w in LABEL_STEPS if w < top]
    forms: list[Form] = []
    for pitch in Pitch:
        forms += [Form(pitch, True, w) for w in widths if w >= _TABLE_SHORTEST or w == top]
        forms += [Form(pitch, False, w) for w in widths if w >= _SHORTEST[pitch] or w == top]
    return forms


@dataclass(slots=True)
class MapLayout:
    """Where every label and device goes in one form, and how to move between cells.

    Devices are numbered in flat order (the sites in the order given, each
    site's devices in order); that order runs left to right, line by line.
    """

    form: Form
    width: int
    height: int
    #: within the height asked for; else the map scrolls (and is one column narrower)
    fits: bool
    labels: list[Label]
    runs: list[Run]
    #: per device, in flat order: line, character column, half (0 left, 1 right; 0 unless HALF)
    line: list[int] = field(default_factory=list)
    col: list[int] = field(default_factory=list)
    half: list[int] = field(default_factory=list)
    site: list[int] = field(default_factory=list)
    #: per line, the [start, end) range of the devices on it
    line_devices: list[tuple[int, int]] = field(default_factory=list)
    #: per line, what it draws (labels and runs) left to right
    items: list[list[Label | Run]] = field(default_factory=list)

    @property
    def devices(self) -> int:
        """How many devices are drawn."""
        return len(self.line)

    def centre(self, i: int) -> float:
        """The horizontal middle of device ``i``'s cell, in columns."""
        if self.form.pitch is Pitch.HALF:
            return self.col[i] + 0.25 + 0.5 * self.half[i]
        return self.col[i] + 0.5

    def vertical(self, i: int, dy: int) -> int | None:
        """The device visually above (``dy`` -1) or below (+1) device ``i``: the nearest
        column on the closest line in that direction that has devices; None at an edge."""
        line = self.line[i] + dy
        while 0 <= line < self.height and self.line_devices[line][0] == self.line_devices[line][1]:
            line += dy
        if not 0 <= line < self.height:
            return None
        start, end = self.line_devices[line]
        target = self.centre(i)
        return min(range(start, end), key=lambda j: (abs(self.centre(j) - target), j))

    def hit(self, line: int, col: int, right: bool = False) -> int | None:
        """The device drawn at a line and column (the right half's when ``right``)."""
        if not 0 <= line < len(self.line_devices):
            return None
        start, end = self.line_devices[line]
        i = bisect_left(self.col, col, start, end)
        if i >= end or self.col[i] != col:
            return None
        if right and i + 1 < end and self.col[i + 1] == col:
            return i + 1
        return i

    def holds(self, i: int, line: int, col: int) -> bool:
        """Whether device ``i`` is drawn in the character at this line and column."""
        return 0 <= i < self.devices and self.line[i] == line and self.col[i] == col

    def click(self, line: int, col: int, fraction: float, cursor: int) -> int | None:
        """The device a click selects: the one under it (the right half's when the click
        is on the right of the character); a click on the cursor's half-block
        character without a pixel position (``fraction`` 0) selects the other half,
        else that half could not be reached with the mouse."""
        target = self.hit(line, col, right=fraction >= 0.5)
        if target is not None and target == cursor and fraction == 0 \
                and self.form.pitch is Pitch.HALF:
            partner = self.hit(line, col, right=self.half[target] == 0)
            return partner if partner is not None else target
        return target


def site_step(starts: Sequence[int], cursor: int, step: int) -> int | None:
    """PgUp/PgDn: the first device of the previous (``step`` -1) or next (+1) site;
    PgUp goes to the start of the cursor's own site first. ``starts`` are the
    first devices of the sites that have some, in order. None: nowhere to go."""
    k = bisect_right(starts, cursor) - 1
    if k < 0:
        return None
    if step < 0 and cursor > starts[k]:
        return starts[k]
    k += step
    return starts[k] if 0 <= k < len(starts) else None


def nearest_survivor(previous: Sequence[str], at: int, shown: Container[str]) -> str | None:
    """After an update, the device nearest position ``at`` of the old order that is
    still ``in shown`` (where the cursor goes when its device is no longer shown)."""
    if not 0 <= at < len(previous):
        return None
    for distance in range(len(previous)):
        for j in (at + distance, at - distance):
            if 0 <= j < len(previous) and previous[j] in shown:
                return previous[j]
    return None


def layout_map(sites: Sequence[tuple[str, int]], width: int, height: int, *,
               scrollbar: int = 1) -> MapLayout:
    """Lay out sites (name, device count), in order, in ``width`` x ``height``: the
    first candidate form that fits, else the densest, scrolling, ``scrollbar``
    columns narrower."""
    width = max(1, width)
    longest = max((len(clean(name)) for name, _ in sites), default=1)
    forms = candidate_forms(longest)
    for form in forms:
        if _at_least(sites, form, width) > height:
            continue
        placed = _place(sites, form, width)
        if placed is not None and placed[2] <= height:
            return _materialise(form, width, placed, fits=True)
    narrow = max(1, width - scrollbar)
    placed = _place(sites, forms[-1], narrow)
    assert placed is not None  # a flow always places
    return _materialise(forms[-1], narrow, placed, fits=False)


_Placed = tuple[list[Label], list[Run], int]


def _at_least(sites: Sequence[tuple[str, int]], form: Form, width: int) -> int:
    """A lower bound of the lines a form takes (cheap: no placing), to skip hopeless forms."""
    if form.table:
        return len(sites)
    most = max(0, width - form.after_label - 1)  # a flow cuts a label to fit a line
    used = sum(form.pitch.advance(count) + min(most, len(shorten(name, form.label)))
               + (form.after_label if count else 0) for name, count in sites)
    return -(-used // width)


def _place(sites: Sequence[tuple[str, int]], form: Form, width: int) -> _Placed | None:
    """Labels, runs and line count of a form at a width (None: a table that cannot fit)."""
    texts = [shorten(name, form.label) for name, _ in sites]
    if form.table:
        return _place_table(sites, texts, form.pitch, width)
    return _place_flow(sites, texts, form, width)


def _place_table(sites: Sequence[tuple[str, int]], texts: list[str], pitch: Pitch,
                 width: int) -> _Placed | None:
    """A row per site: names in a column, cells after them (wrapping under the cells)."""
    start = max((len(t) for t in texts), default=0) + 1
    per_line = pitch.capacity(start, width)
    if per_line < 1:
        return None
    labels: list[Label] = []
    runs: list[Run] = []
    line = first = 0
    for s, ((_, count), text) in enumerate(zip(sites, texts, strict=True)):
        labels.append(Label(line, 0, text, s))
        for offset in range(0, count, per_line):
            runs.append(Run(line, start, first + offset, min(per_line, count - offset), s))
            line += 1
        line += count == 0
        first += count
    return labels, runs, line


def _place_flow(sites: Sequence[tuple[str, int]], texts: list[str], form: Form,
                width: int) -> _Placed:
    """Sites one after the other, a space between (none after a half-empty half block);
    a site's cells wrap to the next line."""
    pitch = form.pitch
    labels: list[Label] = []
    runs: list[Run] = []
    line = x = first = 0
    half_empty = False  # the last character drawn is a half block with its right half empty
    for s, ((_, count), text) in enumerate(zip(sites, texts, strict=True)):
        text = text[:max(0, width - form.after_label - 1)]
        lead = 1 if x and not half_empty else 0
        need = lead + len(text) + (form.after_label + 1 if count else 0)
        if x and x + need > width:
            line, x, lead = line + 1, 0, 0
        labels.append(Label(line, x + lead, text, s))
        x += lead + len(text) + (form.after_label if count else 0)
        half_empty = False
        left = count
        while left:
            take = min(left, pitch.capacity(x, width))
            if take:
                runs.append(Run(line, x, first + count - left, take, s))
                x += pitch.advance(take)
                left -= take
                half_empty = pitch is Pitch.HALF and take % 2 == 1
            if left:
                line, x = line + 1, 0
        first += count
    return labels, runs, line + 1 if sites else 0


def _materialise(form: Form, width: int, placed: _Placed, *, fits: bool) -> MapLayout:
    """The chosen form's layout with every device's position and the lines' contents."""
    labels, runs, height = placed
    out = MapLayout(form, width, height, fits, labels, runs)
    out.items = [[] for _ in range(height)]
    every: list[Label | Run] = [*labels, *runs]
    for item in sorted(every, key=lambda item: (item.line, item.x)):
        out.items[item.line].append(item)
    _place_devices(out)
    return out


def _place_devices(out: MapLayout) -> None:
    """Each device's line, column, half and site, and each line's range of devices."""
    half = out.form.pitch is Pitch.HALF
    step = 2 if out.form.pitch is Pitch.SPARSE else 1
    for run in out.runs:
        for k in range(run.size):
            out.line.append(run.line)
            out.col.append(run.x + (k // 2 if half else k * step))
            out.half.append(k % 2 if half else 0)
            out.site.append(run.site)
    done = 0
    for line in range(out.height):
        start = done
        while done < len(out.line) and out.line[done] == line:
            done += 1
        out.line_devices.append((start, done))
