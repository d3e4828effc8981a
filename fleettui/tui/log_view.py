"""Drawing the event log's model (``eventlog.py``) into the screen's log widget.

Drawing is bounded (the newest ``shown`` lines), and cheap in the usual case:
when the new lines only follow those drawn (events arrive at the end), only
they are written; anything else (a fold grew, a line came in between, a
filter changed) draws the lines anew.
"""

from __future__ import annotations

from textual.widgets import RichLog

from fleettui.tui.eventlog import EventLog


class LogPainter:
    """Keeps a RichLog showing an EventLog: its newest lines, and its filters in the title."""

    def __init__(self, model: EventLog, shown: int) -> None:
        self.model = model
        self.shown = shown
        #: the lines drawn since the log was last cleared, as text
        self._drawn: list[str] = []

    def draw(self, log: RichLog, *, again: bool = False) -> None:
        """Bring ``log`` up to date with the model (``again``: draw everything anew)."""
        lines = self.model.lines(last=self.shown)
        plains = [line.plain for line in lines]
        keep = None if again or len(self._drawn) + len(plains) > 3 * self.shown else \
            self._follows(plains)
        # an operator who scrolled up to read stays where they were: only a log left at
        # its end follows new lines
        following = log.scroll_y >= log.max_scroll_y
        top = log.scroll_y
        if keep is None:
            log.clear()
            self._drawn.clear()
            keep = 0
        for line in lines[keep:]:
            log.write(line, scroll_end=following)
        if not following and keep == 0:
            log.scroll_to(y=top, animate=False, immediate=True)
        self._drawn.extend(plains[keep:])
        log.border_title = self.model.title()

    def _follows(self, plains: list[str]) -> int | None:
        """How many of the new lines are the last ones drawn (at least half of them must
        be, else the view moved too far for appending: None)."""
        drawn = self._drawn
        for overlap in range(min(len(drawn), len(plains)), len(plains) // 2 - 1, -1):
            if drawn[len(drawn) - overlap:] == plains[:overlap]:
                return overlap
        return None
