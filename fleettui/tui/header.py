"""The control room's header line: the fleet's counts, the mode, what filters the view and
what needs attention, in the longest form that fits the screen's width."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from fleettui.tui.model import Totals

#: (totals' brevity, which banner) from the longest header to the shortest
FORMS = ((0, "long"), (0, "short"), (1, "short"), (2, "short"), (2, ""))


@dataclass(frozen=True, slots=True)
class HeaderFacts:
    """What the header says besides the counts."""

    mode: str
    filter_text: str = ""
    problems_only: bool = False
    dead_webhooks: int = 0
    pending_push: int = 0
    #: devices marked in the table for a bulk action
    marked: int = 0
    banner: str = ""
    short_banner: str = ""


def header_form(counts: Totals, facts: HeaderFacts, brevity: int, banner: str) -> Text:
    """One form of the header (``brevity`` 0-2; ``banner`` "long", "short" or "")."""
    gap = "   " if brevity == 0 else "  "
    header = Text(counts.text(brevity), style="bold")
    # short, so the counts and the mode fit in 80 columns (the help screen explains it)
    header.append(f"{gap}{facts.mode}", style="dim")
    if facts.filter_text:
        header.append(f"{gap}filter: {facts.filter_text!r}", style="yellow")
    if facts.problems_only:
        header.append(f"{gap}problems only", style="yellow")
    if facts.marked:
        header.append(f"{gap}{facts.marked:,} marked", style="bold green")
    if facts.dead_webhooks:
        header.append(f"{gap}{facts.dead_webhooks:,} dead webhook"
                      f"{'s' if facts.dead_webhooks > 1 else ''}", style="bold red")
    if facts.pending_push:
        n = facts.pending_push
        header.append(f"{gap}{n} push device{'s' if n > 1 else ''} pending", style="yellow")
    text = {"long": facts.banner, "short": facts.short_banner}.get(banner, "")
    if text:
        header.append(f"{gap}{text}", style="dim")
    return header


def fit_header(counts: Totals, facts: HeaderFacts, width: int) -> Text:
    """The longest form that fits ``width`` columns, cut with an ellipsis if even the
    shortest does not (80 columns: shorter counts and banner)."""
    for brevity, banner in FORMS:
        header = header_form(counts, facts, brevity, banner)
        if header.cell_len <= width:
            return header
    header.truncate(width, overflow="ellipsis")
    return header
