"""Sync employees to a device or a site from the palette: file, preview, apply.

The TUI never talks to a device: the preview is a ``sync_employees`` command
with ``dry_run`` queued through the normal queue. The poller that owns the
database (embedded, or a headless one when this TUI is a viewer) reads each
device's users and answers with what would be added, updated, removed and
left alone. "Apply" then queues the real command with the same employees,
under an idempotency key derived from the file's hash and the target, so a
second press returns the first request instead of queueing it twice.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Static

from fleettui.commands import CommandError, validate
from fleettui.domain import CommandRequest, CommandState
from fleettui.engine.enqueue import enqueue, read_employees
from fleettui.store import IdempotencyConflict, Store

#: a preview that no device took within this time expires (an offline device, say)
PREVIEW_TTL = timedelta(minutes=10)
_INDEX = re.compile(r"employees\.(\d+)\.?")


def load_employees(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The employees of a CSV or JSON file, checked, and the file's SHA-256.

    Raises CommandError naming the file and the line (CSV) or entry (JSON) at fault,
    using the same parser as ``fleettui sync-employees``.
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CommandError(f"{path}: {e.strerror or e}") from None
    employees = read_employees(path)
    if not employees:
        raise CommandError(f"{path}: no employees in the file")
    try:
        validate("sync_employees", {"employees": employees})
    except CommandError as e:
        raise CommandError(_with_lines(str(e), path, raw)) from None
    return employees, hashlib.sha256(raw).hexdigest()


def _with_lines(message: str, path: Path, raw: bytes) -> str:
    """A validation message with "employees.3.card" turned into the file's line (or entry)."""
    message = message.removeprefix("sync_employees: ")
    if path.suffix.lower() == ".json":
        return _INDEX.sub(lambda m: f"{path}: employees[{m.group(1)}]: ", message)
    lines = _csv_data_lines(raw)

    def line(m: re.Match[str]) -> str:
        i = int(m.group(1))
        return f"{path}:{lines[i]}: " if i < len(lines) else f"{path}: row {i + 1}: "

    return _INDEX.sub(line, message)


def _csv_data_lines(raw: bytes) -> list[int]:
    """The line number of each data row of a CSV (blank lines skipped, as DictReader does)."""
    reader = csv.reader(io.StringIO(raw.decode("utf-8-sig", errors="replace")))
    numbers = [reader.line_num for row in reader if row]
    return numbers[1:]  # after the header


def preview_text(request: CommandRequest) -> Text:
    """Per device: what the sync would add, update, remove and leave, with a few names."""
    out = Text()
    done = sum(1 for c in request.commands if c.state is CommandState.DONE)
    out.append(f"Preview (request {request.id}): {done}/{len(request.commands)} device(s) "
               "answered\n", style="bold")
    width = max((len(c.device_id) for c in request.commands), default=0) + 2
    for c in sorted(request.commands, key=lambda c: c.device_id):
        out.append(c.device_id.ljust(width), style="bold")
        if c.state is CommandState.DONE and c.result is not None:
            r = c.result
            out.append(f"+{r['added']} added", style="green")
            out.append(f"  ~{r['updated']} updated", style="yellow")
            out.append(f"  -{r['removed']} removed", style="red")
            out.append(f"  ={r['unchanged']} unchanged\n")
            for change, names in (r.get("names") or {}).items():
                if names:
                    more = r[change] - len(names)
                    tail = f" and {more} more" if more > 0 else ""
                    out.append(f"{'':{width}}{change}: {', '.join(names)}{tail}\n", style="dim")
        elif c.state in (CommandState.QUEUED, CommandState.SENT):
            out.append(f"waiting ({c.state.value}): the device answers when its poller "
                       "reaches it\n", style="yellow")
        else:
            out.append(f"{c.state.value}: {c.error or 'no answer'}\n", style="red")
    return out


class EmployeeSync(ModalScreen["CommandRequest | None"]):
    """Ask for an employee file, preview its effect on the real devices, then apply it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="employees.cancel"),
    ]
    DEFAULT_CSS = """
    EmployeeSync { align: center middle; }
    EmployeeSync > Vertical { width: 90%; max-width: 110; height: auto; max-height: 90%;
                              border: thick $primary; padding: 0 1; background: $surface; }
    EmployeeSync #buttons { height: auto; }
    EmployeeSync #buttons Button { margin-right: 1; }
    EmployeeSync #message { height: auto; }
    EmployeeSync #preview-box { height: auto; max-height: 16; }
    """

    def __init__(
        self,
        target: str,
        label: str,
        store: Store,
        now: Callable[[], datetime],
        *,
        poll_s: float = 0.3,
    ) -> None:
        super().__init__()
        self.target = target
        self.label = label
        self.store = store
        self.now = now
        self.poll_s = poll_s
        self.employees: list[dict[str, Any]] = []
        self.digest = ""
        self.preview: CommandRequest | None = None
        self.error = ""

    def compose(self) -> ComposeResult:
        """File path, remove-missing box, buttons, messages and the preview."""
        with Vertical() as box:
            box.border_title = f"Sync employees to {self.label}"
            yield Input(placeholder="employees file: .csv (id,name,card) or .json; Enter "
                        "previews", id="path")
            yield Checkbox("Also remove users who are not in the file", id="remove")
            with Horizontal(id="buttons"):
                yield Button("Preview", id="preview", variant="primary")
                yield Button("Apply", id="apply", variant="warning", disabled=True)
                yield Button("Cancel", id="cancel")
            yield Static("", id="message")
            with VerticalScroll(id="preview-box"):
                yield Static("", id="preview-text")

    def on_mount(self) -> None:
        """Start in the path field."""
        self.query_one("#path", Input).focus()

    def _say(self, text: str | Text, style: str = "") -> None:
        self.query_one("#message", Static).update(
            Text(text, style=style) if isinstance(text, str) else text)

    @on(Input.Submitted, "#path")
    @on(Button.Pressed, "#preview")
    def start_preview(self) -> None:
        """Read the file and queue a dry run for the target."""
        self.run_worker(self._preview(), group="preview", exclusive=True)

    @on(Input.Changed, "#path")
    @on(Checkbox.Changed, "#remove")
    def _invalidate(self) -> None:
        running = any(w.group == "preview" and w.node is self and not w.is_finished
                      for w in self.workers)
        if self.preview is not None or running:
            self.workers.cancel_group(self, "preview")  # a stale preview must not enable Apply
            self.preview = None
            self.query_one("#apply", Button).disabled = True
            self._say("the file or the options changed: preview again", "yellow")

    @on(Button.Pressed, "#apply")
    def start_apply(self) -> None:
        """Queue the real sync (only after a preview answered)."""
        self.run_worker(self._apply(), group="apply", exclusive=True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without applying anything."""
        self.dismiss(None)

    @property
    def remove_missing(self) -> bool:
        """Whether users missing from the file are to be deleted."""
        return self.query_one("#remove", Checkbox).value

    async def _preview(self) -> None:
        self.query_one("#apply", Button).disabled = True
        self.query_one("#preview-text", Static).update("")
        self.preview = None
        text = self.query_one("#path", Input).value.strip()
        if not text:
            self._fail("give the path of a CSV or JSON file")
            return
        try:
            employees, digest = await asyncio.to_thread(load_employees, Path(text).expanduser())
        except CommandError as e:
            self._fail(str(e))
            return
        remove = self.remove_missing
        try:
            request, _new = await enqueue(
                self.store, self.target, "sync_employees",
                {"employees": employees, "remove_missing": remove, "dry_run": True},
                now=self.now(), source="tui", ttl=PREVIEW_TTL)
        except CommandError as e:
            self._fail(str(e))
            return
        self.error = ""
        self.employees, self.digest = employees, digest
        self._say(f"{len(employees)} employee(s) read; asking the device(s) what would "
                  "change…")
        while True:
            fresh = await self.store.command_request(request.id)
            if fresh is None:
                self._fail(f"preview request {request.id} disappeared")
                return
            self.query_one("#preview-text", Static).update(preview_text(fresh))
            answered = any(c.state is CommandState.DONE for c in fresh.commands)
            if answered and self.preview is None:
                self.preview = fresh
                self.query_one("#apply", Button).disabled = False
                self._say(f"{len(employees)} employee(s); nothing is written until Apply"
                          + (" (and users missing from the file are removed)" if remove
                             else ""))
            if answered:
                self.preview = fresh
            if all(c.state.final for c in fresh.commands):
                if not answered:
                    self._fail("no device answered the preview")
                return
            await asyncio.sleep(self.poll_s)

    def _fail(self, message: str) -> None:
        self.error = message
        self._say(message, "bold red")

    def idempotency_key(self) -> str:
        """Same file, same target, same options, same preview: the same request."""
        assert self.preview is not None
        mode = "remove" if self.remove_missing else "keep"
        return f"tui-employees:{self.target}:{self.digest[:32]}:{mode}:{self.preview.id}"

    async def _apply(self) -> None:
        if self.preview is None:
            return
        try:
            request, _new = await enqueue(
                self.store, self.target, "sync_employees",
                {"employees": self.employees, "remove_missing": self.remove_missing},
                now=self.now(), source="tui", idempotency_key=self.idempotency_key())
        except (CommandError, IdempotencyConflict) as e:
            self._fail(str(e))
            return
        self.dismiss(request)
