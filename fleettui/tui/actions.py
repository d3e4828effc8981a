"""What the control room's palette offers and does: commands for a device, a site or the
marked devices, silences, acknowledgements, approvals and dead webhook deliveries.

A base class of ``FleetApp`` (``app.py``), kept apart so the app's file is about the
screen. Everything here goes through the store (``enqueue`` and the store's writes):
the poller that owns the database runs what is queued, whether this app embeds it
or is a viewer.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from textual.app import App

from fleettui.commands import COMMANDS as COMMAND_SPECS
from fleettui.commands import CommandError
from fleettui.commands import label as command_label
from fleettui.domain import Alert, PendingDevice, Site
from fleettui.engine.approve import ApprovalError, approve_push_device
from fleettui.engine.engine import Engine
from fleettui.engine.enqueue import enqueue, enqueue_devices
from fleettui.printable import printable, printable_fields
from fleettui.store import Store
from fleettui.store.errors import FleetConflict
from fleettui.tui.confirm import Confirm
from fleettui.tui.deadletters import SHOWN as SHOWN_DEAD
from fleettui.tui.deadletters import DeadLetters
from fleettui.tui.model import DeviceRow
from fleettui.tui.palette import PaletteItem


class FleetActions(App[None]):
    """The palette's candidates and the actions behind them (mixed into ``FleetApp``)."""

    # what the app holds, that the actions read
    rows: dict[str, DeviceRow]
    site_list: list[Site]
    open_alerts: list[Alert]
    pending_push: list[PendingDevice]
    dead_webhooks: int
    engine: Engine | None
    #: the requests this app queued (their end is a toast)
    my_requests: set[int]
    selected: tuple[str, str] | None

    if TYPE_CHECKING:  # the app's own, which the actions call
        @property
        def store(self) -> Store: ...

        @property
        def marked(self) -> set[str]: ...

        def now(self) -> datetime: ...

        def jump(self, target: tuple[str, str]) -> None: ...

        def unmark(self) -> None: ...

        def request_refresh(self) -> None: ...

        def refresh_panel_soon(self) -> None: ...

        async def refresh_panel(self) -> None: ...

        async def refresh_data(self) -> None: ...

    def queue_command(self, target: str, command: str) -> None:
        """Queue a command for a device or a whole site (the owning engine runs it)."""
        self.run_worker(self._queue(target, command), group="commands")

    async def _queue(self, target: str, command: str) -> None:
        try:
            request, _new = await enqueue(self.store, target, command, None,
                                          now=self.now(), source="tui")
        except CommandError as e:
            self.notify(str(e), title="command refused", severity="error")
            return
        self.my_requests.add(request.id)
        count = len(request.commands)
        where = target if count == 1 else f"{count} devices of {target}"
        self.notify(f"{command_label(command)} {where}: queued (request {request.id})",
                    title="command")
        kind = "device" if request.target_kind == "device" else "site"
        self.jump((kind, target))
        self.selected = (kind, target)
        await self.refresh_panel()

    def palette_items(self) -> list[PaletteItem]:
        """Palette candidates: problems first, then every device and site."""
        items: list[PaletteItem] = self._bulk_items()
        rows = sorted(self.rows.values(), key=lambda r: (not r.problem, r.id))
        sites = {s.id: s for s in self.site_list}
        for r in rows:
            d = r.device
            where = sites[d.site_id].name if d.site_id in sites else d.site_id
            state = "flapping" if r.flapping else d.status.value
            items.append((f"Jump to {d.id}", partial(self.jump, ("device", d.id)),
                          f"{state} · {where} · {d.serial}"))
            for spec in COMMAND_SPECS.values():
                if (entry := spec.device_palette) is not None:
                    run = (partial(self.sync_employees, d.id, d.id) if spec.needs_employee_file
                           else partial(self.queue_command, d.id, spec.name))
                    items.append((entry.text.format(device=d.id), run,
                                  entry.hint.format(state=state, count=1)))
            items.append((f"Silence {d.id} for 2h", partial(self.silence, d.id, 2),
                          "no alert notifications for this device for 2 hours"))
        for s in self.site_list:
            items.append((f"Jump to site {s.name} ({s.id})", partial(self.jump, ("site", s.id)),
                          s.timezone))
            count = sum(1 for r in self.rows.values()
                        if r.device.site_id == s.id and r.device.enabled)
            for spec in COMMAND_SPECS.values():
                if (entry := spec.site_palette) is None:
                    continue
                if spec.needs_employee_file:
                    run = partial(self.sync_employees, s.id, f"all {count} device(s) of {s.name}")
                elif spec.confirm_site:
                    run = partial(self.confirm_site_command, s.id, s.name, spec.name, count)
                else:
                    run = partial(self.queue_command, s.id, spec.name)
                items.append((entry.text.format(site=f"{s.name} ({s.id})"), run,
                              entry.hint.format(state="", count=count)))
            items.append((f"Silence site {s.name} ({s.id}) for 2h",
                          partial(self.silence, s.id, 2), "maintenance: no notifications"))
        for a in self.open_alerts:
            items.append((f"Acknowledge alert {a.id}: {a.kind.value} {a.target}",
                          partial(self.acknowledge, a.id), a.reason or a.severity))
        for p in self.pending_push:
            for s in self.site_list:
                items.append((f"Approve push device {p.serial} onto {s.name} ({s.id})",
                              partial(self.approve_push, p.serial, s.id),
                              f"dialed in unknown from {p.address or '?'}, {p.requests} calls"))
        dead = self.dead_webhooks
        items.append((f"Dead webhook deliveries ({dead:,})", self.show_dead_letters,
                      "what gave up after its retries, and why; r replays them"))
        if dead:
            items.append((f"Replay {dead:,} dead webhook deliveries", self.replay_dead_letters,
                          "back in their endpoints' queues, in order per device"))
        return items

    def _bulk_items(self) -> list[PaletteItem]:
        """With devices marked in the table: each command for all of them at once (one
        request, after one confirmation), and a way to unmark them."""
        marked = sorted(self.marked)
        if not marked:
            return []
        n = len(marked)
        items: list[PaletteItem] = []
        for spec in COMMAND_SPECS.values():
            if spec.device_palette is None or spec.needs_employee_file:
                continue
            items.append((f"{spec.label}: the {n} marked device(s)",
                          partial(self.confirm_bulk_command, spec.name, marked),
                          f"one request for {n} device(s), after a confirmation"))
        items.append((f"Unmark the {n} marked device(s)", self.unmark,
                      "clear the table's marks"))
        return items

    def confirm_bulk_command(self, command: str, device_ids: list[str]) -> None:
        """Ask once before a command goes to every marked device, naming how many; then
        queue it as one request."""
        shown = ", ".join(device_ids[:3]) + (f" and {len(device_ids) - 3} more"
                                            if len(device_ids) > 3 else "")

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._queue_bulk(command, device_ids), group="commands")

        self.push_screen(Confirm(f"{command_label(command)} {len(device_ids)} device(s): "
                                 f"{shown}?"), answered)

    async def _queue_bulk(self, command: str, device_ids: list[str]) -> None:
        try:
            request, _new = await enqueue_devices(self.store, device_ids, command,
                                                  now=self.now(), source="tui")
        except CommandError as e:
            self.notify(printable(str(e)), title="command refused", severity="error")
            return
        self.my_requests.add(request.id)
        self.notify(f"{command_label(command)} {len(request.commands)} device(s): queued "
                    f"(request {request.id})", title="command")
        self.unmark()

    def show_dead_letters(self) -> None:
        """Open the list of dead webhook deliveries (``r`` there replays them)."""

        async def do() -> None:
            rows = [printable_fields(r) for r in await self.store.webhook_dead(SHOWN_DEAD)]
            total = await self.store.webhook_dead_count()

            def answered(replay: bool | None) -> None:
                if replay:
                    self.replay_dead_letters()

            # a viewer (not this database's poller) sees why each died only as a class
            self.push_screen(DeadLetters(rows, total, detail=self.engine is not None),
                             answered)

        self.run_worker(do(), group="webhooks")

    def replay_dead_letters(self) -> None:
        """Put every dead delivery back in its endpoint's queue (the poller sends them)."""

        async def do() -> None:
            count = await self.store.webhook_replay(None, self.now())
            self.notify(f"{count:,} dead webhook deliveries queued again" if count
                        else "no dead webhook deliveries to replay", title="webhooks")
            await self.refresh_data()

        self.run_worker(do(), group="webhooks")

    def confirm_site_command(self, site_id: str, name: str, command: str, count: int) -> None:
        """Ask before a command reaches every device of a site, naming how many."""
        def answered(yes: bool | None) -> None:
            if yes:
                self.queue_command(site_id, command)

        self.push_screen(Confirm(f"{command_label(command)} all {count} device(s) of {name}?"),
                         answered)

    def sync_employees(self, target: str, label: str) -> None:
        """Ask for an employee file, preview the change on the devices, then maybe apply it."""
        from fleettui.domain import CommandRequest
        from fleettui.tui.employees import EmployeeSync

        def applied(request: CommandRequest | None) -> None:
            if request is None:
                return
            self.my_requests.add(request.id)
            self.notify(f"Sync employees to {label}: queued (request {request.id})",
                        title="command")
            kind = "device" if request.target_kind == "device" else "site"
            self.jump((kind, target))
            self.selected = (kind, target)
            self.refresh_panel_soon()

        self.push_screen(EmployeeSync(target, label, self.store, self.now), applied)

    def silence(self, target: str, hours: float) -> None:
        """Silence a device or a site (notifications only; alerts are still recorded)."""
        self.run_worker(self.silence_now(target, hours), group="alerts")

    async def silence_now(self, target: str, hours: float,
                          reason: str = "from the palette") -> None:
        """Silence a device or a site for ``hours`` from now, as "tui", and say so in a
        toast (the palette's silence and the alerts view's)."""
        now = self.now()
        until = now + timedelta(hours=hours)
        await self.store.add_silence(target, until, reason, "tui", now)
        self.notify(f"{target} silenced until {until:%H:%M} UTC", title="silence")

    def approve_push(self, serial: str, site_id: str) -> None:
        """Put a pending push device on a site (the poller answers it within seconds)."""

        async def do() -> None:
            try:
                state = await approve_push_device(self.store, serial, site_id, self.now())
            except (ApprovalError, FleetConflict) as e:
                self.notify(printable(str(e)), title="push device", severity="error")
                return
            if self.engine is not None:
                self.engine.reconcile_soon()
            self.notify(f"{state.id} approved at {site_id}: its buffered records follow",
                        title="push device")
            self.request_refresh()

        self.run_worker(do(), group="push")

    def acknowledge(self, alert_id: int) -> None:
        """Acknowledge an open alert (its reminders stop)."""
        self.run_worker(self.acknowledge_now(alert_id), group="alerts")

    async def acknowledge_now(self, alert_id: int) -> Alert | None:
        """Acknowledge an open alert as "tui" and say so in a toast (the palette's
        acknowledge and the alerts view's); None if it is no longer open."""
        alert = await self.store.acknowledge_alert(alert_id, "tui", self.now())
        if alert is None:
            self.notify(f"alert {alert_id} is no longer open", severity="warning")
        else:
            self.notify(f"alert {alert_id} acknowledged", title="alert")
        return alert
