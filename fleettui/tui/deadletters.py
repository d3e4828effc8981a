"""Dead webhook deliveries: the ones that gave up after their retries, shown for a replay.

A delivery dies after its retry schedule (24 h and more) runs out; the
receiver may be fixed since. The operator sees what died, where and why, and
replays them: they go back in their endpoint's queue, in order per device.
"""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from fleettui.domain import WebhookDelivery
from fleettui.egress import redacted_url
from fleettui.engine.webhooks import failure_class

#: dead deliveries listed (the newest); the count in the title is of all of them
SHOWN = 100


def dead_table(rows: list[WebhookDelivery], total: int, detail: bool = True
               ) -> Table | Text:
    """The dead deliveries as a table, newest first (or a line saying there are none).

    Endpoints show as scheme, host and port (a URL may hold a token); each last
    error in full with ``detail`` (the poller's own screen), else as its class
    only ("timeout", "HTTP 500", "refused target"...).
    """
    if not rows:
        return Text("No dead webhook deliveries: every event was delivered or is still "
                    "being retried.", style="green")
    table = Table(show_edge=False, box=None, padding=(0, 1), expand=True,
                  title=f"{total:,} dead deliveries" + (f" (newest {len(rows)})"
                                                         if total > len(rows) else ""),
                  title_justify="left", title_style="bold")
    for name in ("event", "type", "device", "endpoint", "tries", "died", "last error"):
        table.add_column(name, no_wrap=name not in ("endpoint", "last error"),
                         ratio=2 if name == "last error" else None)
    for r in rows:
        died = r.next_attempt_at
        where = r.url or r.endpoint
        table.add_row(str(r.outbox_id), r.event_type, r.device_id or "-",
                      redacted_url(where) if "://" in where else where, str(r.attempts),
                      f"{died:%m-%d %H:%M}" if died else "",
                      Text((r.last_error if detail else failure_class(r.last_error))
                           or "", style="red"))
    return table


class DeadLetters(ModalScreen[bool]):
    """The dead deliveries; ``r`` replays them all (dismisses True), Esc closes (False)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "replay", "Replay all", id="dead.replay"),
        Binding("escape,q", "close", "Close", id="dead.close"),
    ]
    DEFAULT_CSS = """
    DeadLetters { align: center middle; }
    DeadLetters > VerticalScroll { width: 95%; height: 80%; border: thick $error;
                                   padding: 0 1; background: $surface; }
    """

    def __init__(self, rows: list[WebhookDelivery], total: int, detail: bool = True) -> None:
        super().__init__()
        self.rows = rows
        self.total = total
        #: the last errors in full (the poller's screen) or as their class (a viewer's)
        self.detail = detail

    def compose(self) -> ComposeResult:
        """The table and the keys."""
        with VerticalScroll() as box:
            box.border_title = "Dead webhook deliveries"
            box.border_subtitle = "r replay all · Esc close" if self.rows else "Esc close"
            yield Static(dead_table(self.rows, self.total, self.detail), id="dead-table")

    def action_replay(self) -> None:
        """Close, asking the app to put every dead delivery back in its queue."""
        self.dismiss(bool(self.rows))

    def action_close(self) -> None:
        """Close without replaying."""
        self.dismiss(False)
