"""The store's command queue, push lines and device sessions, called directly: once per
backend (a SQLite file, then a PostgreSQL database), and, where two processes can meet,
as two store objects on one PostgreSQL database calling at once."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from fleettui.domain import (
    CommandState,
    DeviceState,
    EventKind,
    PushContact,
    PushUser,
    Site,
)
from fleettui.store import IdempotencyConflict, Store, open_store
from fleettui.store.shared.command_facts import IDEMPOTENCY_WINDOW
from fleettui.store.where import is_postgres_url

T0 = datetime(2026, 3, 28, 9, 0, tzinfo=UTC)
DEVICES = ["dev_a", "dev_b", "gate_p"]


async def _filled(target: str) -> Store:
    """A store at ``target`` with one site of two pulled devices and a push device."""
    store = await open_store(target)
    await store.sync_fleet(
        [Site("wh-a", "Warehouse A", "UTC")],
        [DeviceState("dev_a", "SER1", "wh-a", "127.0.0.2", 4370, "tcp"),
         DeviceState("dev_b", "SER2", "wh-a", "127.0.0.3", 4370, "udp"),
         DeviceState("gate_p", "PUSH1", "wh-a", "", 0, "push")])
    return store


@pytest.fixture
async def store(db_target: str) -> AsyncIterator[Store]:
    """A store with three devices (two pulled, one push), on each backend in turn."""
    s = await _filled(db_target)
    yield s
    await s.close()


@pytest.fixture
async def two(pg_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two store objects on one PostgreSQL database: two processes."""
    first = await _filled(pg_url)
    second = await open_store(pg_url)
    yield first, second
    await first.close()
    await second.close()


async def _submit(store: Store, *, key: str | None = None, seconds: int = 3,
                  devices: list[str] | None = None, now: datetime = T0,
                  ttl: timedelta | None = None) -> Any:
    """Submit an unlock for one device (its target) or several (the site's)."""
    devices = devices if devices is not None else ["dev_a"]
    return await store.submit_command(
        target=devices[0] if len(devices) == 1 else "wh-a",
        target_kind="device" if len(devices) == 1 else "site", device_ids=devices,
        command="unlock", params={"seconds": seconds}, fingerprint=f"unlock:{seconds}",
        source="test", now=now, idempotency_key=key, ttl=ttl)


async def _outbox(target: str) -> list[tuple[str, str]]:
    """The webhook outbox as stored: (event type, payload text), in id order."""
    sql = "SELECT event_type, payload FROM webhook_outbox ORDER BY id"
    if is_postgres_url(target):
        conn = await asyncpg.connect(target)
        try:
            return [(r[0], r[1]) for r in await conn.fetch(sql)]
        finally:
            await conn.close()
    with sqlite3.connect(target) as raw:
        return [(r[0], r[1]) for r in raw.execute(sql)]


async def _kinds(store: Store) -> list[str]:
    """The kinds of the event log, in order."""
    return [e.kind for e in await store.events_after(0)]


# --- queueing -------------------------------------------------------------------------


async def test_a_request_queues_one_command_per_device_and_tells_listeners_after_commit(
    store: Store,
) -> None:
    heard: list[list[str]] = []
    listener = lambda ids: heard.append(list(ids))  # noqa: E731
    store.add_queue_listener(listener)
    submission = await _submit(store, devices=["dev_a", "dev_b"], ttl=timedelta(hours=1))
    request = submission.request
    assert submission.created and heard == [["dev_a", "dev_b"]]
    assert (request.target, request.target_kind, request.params) == ("wh-a", "site",
                                                                     {"seconds": 3})
    assert [c.device_id for c in request.commands] == ["dev_a", "dev_b"]
    assert {c.state for c in request.commands} == {CommandState.QUEUED}
    assert request.commands[0].expires_at == T0 + timedelta(hours=1)
    assert request.created_at == T0 and request.commands[0].created_at == T0
    assert await store.command_request(request.id) == request
    assert await store.command_request(request.id + 99) is None
    event = (await store.events_after(0))[-1]
    assert (event.kind, event.site_id, event.message) == (
        EventKind.COMMAND_QUEUED, "wh-a", "unlock queued for site wh-a (2 device(s))")
    assert event.data == {"request_id": request.id, "command": "unlock", "source": "test"}
    second = (await _submit(store, devices=["dev_b"])).request
    assert [c.id for c in await store.commands()] == [second.commands[0].id,
                                                      *[c.id for c in request.commands[::-1]]]
    assert [c.request_id for c in await store.commands(device_id="dev_b", limit=1)] == [
        second.id]
    assert await store.command(second.commands[0].id) == second.commands[0]
    assert await store.command(10_000) is None
    assert await store.devices_with_queued_commands() == {"dev_a", "dev_b"}
    store.remove_queue_listener(listener)
    await _submit(store)
    assert len(heard) == 2


async def test_an_idempotency_key_gives_the_request_back_refuses_another_and_is_forgotten(
    store: Store,
) -> None:
    heard: list[list[str]] = []
    store.add_queue_listener(lambda ids: heard.append(list(ids)))
    first = await _submit(store, key="k-1")
    again = await _submit(store, key="k-1", now=T0 + timedelta(days=1))
    assert first.created and not again.created and again.request == first.request
    assert len(heard) == 1 and await _kinds(store) == [EventKind.COMMAND_QUEUED]
    with pytest.raises(IdempotencyConflict, match="k-1"):
        await _submit(store, key="k-1", seconds=9)
    later = await _submit(store, key="k-1", seconds=9,
                          now=T0 + IDEMPOTENCY_WINDOW + timedelta(seconds=1))
    assert later.created and later.request.idempotency_key == "k-1"
    old = await store.command_request(first.request.id)
    assert old is not None and old.idempotency_key is None
    assert len(await store.commands()) == 2


# --- the queue's life -------------------------------------------------------------------


async def test_due_commands_expires_those_past_their_time_to_live_once(store: Store) -> None:
    short = (await _submit(store, ttl=timedelta(minutes=5))).request.commands[0]
    kept = (await _submit(store, seconds=4)).request.commands[0]
    assert [c.id for c in await store.due_commands("dev_a", T0)] == [short.id, kept.id]
    later = T0 + timedelta(minutes=5)
    assert [c.id for c in await store.due_commands("dev_a", later)] == [kept.id]
    assert [c.id for c in await store.due_commands("dev_a", later)] == [kept.id]
    expired = await store.command(short.id)
    assert expired is not None and expired.state is CommandState.EXPIRED
    assert expired.error == "time to live ran out before the device could take it"
    assert expired.updated_at == later
    event = (await store.events_after(0))[-1]
    assert (event.kind, event.message, event.data) == (
        EventKind.COMMAND_EXPIRED, "dev_a: unlock expired", {"command_id": short.id})
    assert (await _kinds(store)).count(EventKind.COMMAND_EXPIRED) == 1


async def test_a_finished_command_has_its_result_event_and_webhook_fact(
    store: Store, db_target: str,
) -> None:
    command = (await _submit(store)).request.commands[0]
    await store.start_command(command.id, T0)
    sent = await store.command(command.id)
    assert sent is not None and (sent.state, sent.attempts) == (CommandState.SENT, 1)
    at = T0 + timedelta(seconds=2)
    event = await store.finish_command(command, CommandState.DONE, at, result={"opened": 3})
    assert (event.kind, event.message, event.device_id, event.site_id) == (
        EventKind.COMMAND_DONE, "dev_a: unlock done", "dev_a", "wh-a")
    assert event.data == {"command_id": command.id, "request_id": command.request_id,
                          "command": "unlock", "result": {"opened": 3}, "error": ""}
    done = await store.command(command.id)
    assert done is not None and (done.state, done.result, done.updated_at) == (
        CommandState.DONE, {"opened": 3}, at)
    other = (await _submit(store, seconds=4)).request.commands[0]
    await store.start_command(other.id, T0)
    failed = await store.finish_command(other, CommandState.FAILED, at, error="refused")
    assert failed.message == "dev_a: unlock failed: refused"
    assert await _outbox(db_target) == [
        ("command.completed", json.dumps({
            "event": "command.completed",
            "command": {"id": command.id, "request_id": command.request_id,
                        "device_id": "dev_a", "command": "unlock", "status": "done",
                        "result": {"opened": 3}, "error": None},
            "timestamp": "2026-03-28T09:00:02.000000Z"})),
        ("command.failed", json.dumps({
            "event": "command.failed",
            "command": {"id": other.id, "request_id": other.request_id,
                        "device_id": "dev_a", "command": "unlock", "status": "failed",
                        "result": None, "error": "refused"},
            "timestamp": "2026-03-28T09:00:02.000000Z"})),
    ]


async def test_commands_a_dead_poller_left_running_fail_but_not_a_push_device_s(
    store: Store,
) -> None:
    pulled = (await _submit(store)).request.commands[0]
    pushed = (await _submit(store, devices=["gate_p"])).request.commands[0]
    waiting = (await _submit(store, devices=["dev_b"])).request.commands[0]
    for c in (pulled, pushed):
        await store.start_command(c.id, T0)
    assert await store.interrupt_sent_commands(T0) == 1
    states = [(await store.command(c.id)).state for c in (pulled, pushed, waiting)]  # type: ignore[union-attr]
    assert states == [CommandState.FAILED, CommandState.SENT, CommandState.QUEUED]
    assert "interrupted" in (await store.command(pulled.id)).error  # type: ignore[union-attr]


# --- push lines ---------------------------------------------------------------------------


async def test_push_lines_are_queued_sent_answered_once_expired_and_dropped(
    store: Store,
) -> None:
    command = (await _submit(store, devices=["gate_p"])).request.commands[0]
    lines = await store.start_push_command(command.id, "gate_p", ["A", "B", "C"],
                                           {"stage": "x", "n": 3}, T0)
    assert lines is not None
    assert await store.start_push_command(command.id, "gate_p", ["A"], {}, T0) is None
    started = await store.command(command.id)
    assert started is not None and (started.state, started.attempts) == (CommandState.SENT, 1)
    assert [(line.text, line.state) for line in lines] == [("A", "queued"), ("B", "queued"),
                                                           ("C", "queued")]
    assert await store.push_plan(command.id) == {"stage": "x", "n": 3}
    assert await store.push_plan(10_000) == {}
    assert await store.mark_push_lines_sent([lines[0].id, lines[1].id], T0) == [
        lines[0].id, lines[1].id]
    assert await store.mark_push_lines_sent([lines[1].id], T0) == []  # sent already
    sent = await store.push_lines("gate_p", state="sent")
    assert [(line.id, line.sent_at) for line in sent] == [(lines[0].id, T0), (lines[1].id, T0)]
    assert lines[2].sent_at is None
    answered = await store.answer_push_line("gate_p", lines[0].id, 0, {"k": "v"}, T0)
    assert answered is not None and (answered.state, answered.return_code, answered.result) \
        == ("done", 0, {"k": "v"})
    assert await store.answer_push_line("gate_p", lines[0].id, 0, {}, T0) is None  # twice
    assert await store.answer_push_line("dev_a", lines[1].id, 0, {}, T0) is None  # not its
    assert await store.expire_push_lines(T0 + timedelta(seconds=1),
                                         T0 + timedelta(minutes=1)) == {command.id: "gate_p"}
    assert await store.drop_push_lines(command.id) == 1  # "C", still queued
    assert [line.state for line in await store.push_lines_of(command.id)] == [
        "done", "failed", "failed"]
    assert await store.drop_push_lines(command.id) == 0


async def test_push_contacts_stamps_users_and_pending_serials(store: Store) -> None:
    assert await store.push_stamps("gate_p") == ("0", "0")
    await store.record_push_contacts([
        PushContact("gate_p", T0, "10.0.0.7", "2.4.1", firmware="Ver 8", users=4,
                    attlog_stamp="9" * 40),
        PushContact("nobody", T0, "10.0.0.8"),
    ])
    await store.record_push_contacts([PushContact("gate_p", T0 + timedelta(seconds=10),
                                                  "10.0.0.9", operlog_stamp="77")])
    assert await store.push_stamps("gate_p") == ("9" * 32, "77")
    assert await store.push_stamps("nobody") == ("0", "0")
    device = await store.device("gate_p")
    assert device is not None and (device.last_seen, device.firmware, device.users) == (
        T0 + timedelta(seconds=10), "Ver 8", 4)
    # another listener writes an older contact after it: when it was last heard stays
    await store.record_push_contacts([PushContact("gate_p", T0 + timedelta(seconds=4), "x")])
    assert await store.push_last_seen() == {"gate_p": T0 + timedelta(seconds=10)}
    await store.record_push_users("gate_p", [PushUser("2", "Bo"), PushUser("1", "Ana", 14)])
    await store.record_push_users("gate_p", [PushUser("2", "Bo Chen", card="55")], ["1"])
    assert await store.push_users("gate_p") == [PushUser("2", "Bo Chen", 0, "55")]
    await store.note_pending_push("NEW1", "10.1.1.1", "F" * 80, "2.4.1", T0)
    await store.note_pending_push("NEW2", "10.1.1.2", "", "", T0 + timedelta(seconds=1))
    await store.note_pending_push("NEW1", "10.1.1.3", "", "", T0 + timedelta(seconds=2))
    pending = await store.pending_push_devices()
    assert [(p.serial, p.address, p.firmware, p.push_version, p.requests) for p in pending] \
        == [("NEW1", "10.1.1.3", "F" * 60, "2.4.1", 2), ("NEW2", "10.1.1.2", "", "", 1)]
    assert (pending[0].first_seen, pending[0].last_seen) == (T0, T0 + timedelta(seconds=2))
    assert await store.forget_pending_push("NEW1") is True
    assert await store.forget_pending_push("NEW1") is False


async def test_device_sessions_are_remembered_until_forgotten(store: Store) -> None:
    await store.remember_session("dev_a", 7, T0 + timedelta(seconds=5))
    await store.remember_session("dev_a", 3, T0)
    await store.remember_session("dev_b", 9, T0)
    assert await store.open_sessions("dev_a") == [3, 7]
    await store.remember_session("dev_a", 3, T0 + timedelta(seconds=9))  # opened again
    assert await store.open_sessions("dev_a") == [7, 3]
    await store.forget_sessions("dev_a", [7, 99])
    await store.forget_sessions("dev_a", [])
    assert (await store.open_sessions("dev_a"), await store.open_sessions("dev_b")) == (
        [3], [9])


# --- two processes on one PostgreSQL database ----------------------------------------


async def test_one_idempotency_key_submitted_by_two_processes_at_once_queues_once(
    two: tuple[Store, Store],
) -> None:
    a, b = two
    heard: list[str] = []
    for s, name in ((a, "a"), (b, "b")):
        s.add_queue_listener(lambda ids, name=name: heard.append(name))  # type: ignore[misc]
    submissions = await asyncio.gather(*(_submit(s, key="race") for s in (a, b) * 3))
    assert [s.created for s in submissions].count(True) == 1 and len(heard) == 1
    assert {s.request.id for s in submissions} == {submissions[0].request.id}
    assert len(await a.commands()) == 1 and await _kinds(b) == [EventKind.COMMAND_QUEUED]
    results = await asyncio.gather(_submit(a, key="other"), _submit(b, key="other", seconds=9),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["IdempotencyConflict", "Submission"]


async def test_a_result_posted_to_two_processes_at_once_is_taken_once(
    two: tuple[Store, Store],
) -> None:
    a, b = two
    command = (await _submit(a, devices=["gate_p"])).request.commands[0]
    await a.start_command(command.id, T0)
    line = (await a.add_push_lines(command.id, "gate_p", ["REBOOT"], {}))[0]
    await a.mark_push_lines_sent([line.id], T0)
    taken = await asyncio.gather(*(s.answer_push_line("gate_p", line.id, 0, {}, T0)
                                   for s in (a, b) * 2))
    assert len([t for t in taken if t is not None]) == 1
    expired = await asyncio.gather(a.expire_push_lines(T0 + timedelta(minutes=9), T0),
                                   b.expire_push_lines(T0 + timedelta(minutes=9), T0))
    assert expired == [{}, {}]  # answered: not expired after all


async def test_push_commands_left_started_with_nothing_to_send_or_answer_are_found(
    store: Store,
) -> None:
    # a command started with no lines (from before start_push_command), one whose lines
    # are all answered (a listener died before ending it), one still waiting for an answer
    bare, answered, waiting = [(await _submit(store, devices=["gate_p"], key=k)
                                ).request.commands[0] for k in ("k1", "k2", "k3")]
    await store.start_command(bare.id, T0)
    answered_lines = await store.start_push_command(answered.id, "gate_p", ["INFO"], {}, T0)
    assert answered_lines is not None
    await store.mark_push_lines_sent([answered_lines[0].id], T0)
    later = T0 + timedelta(minutes=5)
    await store.answer_push_line("gate_p", answered_lines[0].id, 0, {}, later)
    assert await store.start_push_command(waiting.id, "gate_p", ["CHECK"], {}, T0) is not None
    assert await store.stranded_push_commands(T0 + timedelta(minutes=1)) == {
        bare.id: "gate_p"}
    assert await store.stranded_push_commands(later + timedelta(seconds=1)) == {
        bare.id: "gate_p", answered.id: "gate_p"}
    pulled = (await _submit(store, devices=["dev_a"], key="k4")).request.commands[0]
    await store.start_command(pulled.id, T0)  # a polled device's: not a push command
    assert pulled.id not in await store.stranded_push_commands(later + timedelta(hours=1))


async def test_a_queued_command_started_by_two_processes_at_once_starts_once(
    two: tuple[Store, Store],
) -> None:
    a, b = two
    command = (await _submit(a, devices=["gate_p"])).request.commands[0]
    starts = await asyncio.gather(*(s.start_push_command(command.id, "gate_p", ["REBOOT"], {},
                                                         T0) for s in (a, b) * 3))
    assert len([s for s in starts if s is not None]) == 1
    started = await b.command(command.id)
    assert started is not None and (started.state, started.attempts) == (CommandState.SENT, 1)
    (line,) = await a.push_lines_of(command.id)
    sent = await asyncio.gather(*(s.mark_push_lines_sent([line.id], T0) for s in (a, b) * 3))
    assert sorted(sent) == [[], [], [], [], [], [line.id]]


async def test_a_command_another_process_ended_is_not_brought_back(
    two: tuple[Store, Store], pg_url: str,
) -> None:
    a, b = two
    command = (await _submit(a)).request.commands[0]
    await a.start_command(command.id, T0)
    assert await b.interrupt_sent_commands(T0) == 1  # the other process thinks it died
    late = await a.finish_command(command, CommandState.DONE, T0, result={"ok": 1})
    assert late.message.endswith("(not recorded: the command was already failed)")
    await a.start_command(command.id, T0)
    ended = await b.command(command.id)
    assert ended is not None and (ended.state, ended.attempts) == (CommandState.FAILED, 1)
    assert await _outbox(pg_url) == []  # the interruption sends none, nor the late end
    other = (await _submit(a, seconds=4)).request.commands[0]
    await a.start_command(other.id, T0)
    events = await asyncio.gather(
        a.finish_command(other, CommandState.DONE, T0, result={}),
        b.finish_command(other, CommandState.FAILED, T0, error="gone"))
    assert ["not recorded" in e.message for e in events].count(True) == 1
    assert len(await _outbox(pg_url)) == 1


async def test_two_processes_reading_one_queue_expire_each_command_once(
    two: tuple[Store, Store],
) -> None:
    a, b = two
    for _ in range(3):
        await _submit(a, ttl=timedelta(minutes=1))
    later = T0 + timedelta(minutes=2)
    due = await asyncio.gather(*(s.due_commands("dev_a", later) for s in (a, b) * 2))
    assert due == [[]] * 4
    assert (await _kinds(b)).count(EventKind.COMMAND_EXPIRED) == 3
