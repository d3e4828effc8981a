"""Emulated push terminals (ADMS / iclock) against a small real aiohttp push server.

The server (``tests/push_server.py``) stands in for the product's push
listener, which does not exist in this tree when these tests are written; it
records every request and answers as a server would. The terminals are real:
a Fleet on the test's event loop, calling the server over loopback HTTP.
Delays are injected small through the option block; every wait is on a
condition (with a generous bound), never a fixed sleep.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from fleettui.emulator.fleet import Fleet
from tests.push_server import PushServer, fleet, make_fleet, server, until

__all__ = ["fleet", "server"]  # the fixtures, from tests/push_server.py



async def test_handshake_is_parsed_and_delay_obeyed(server: PushServer, fleet: Fleet) -> None:
    server.options["Delay"] = "0.02"
    await fleet.start(live_punches=False)
    term = fleet.terminal("p1")
    await until(lambda: len(server.where("/iclock/getrequest")) >= 5, "heartbeats")
    hs = server.where("/iclock/cdata")[0]
    assert hs.method == "GET"
    assert hs.query == {"SN": "PUSH0001", "options": "all", "pushver": "2.4.1",
                        "language": "69", "DeviceType": "att", "PushOptionsFlag": "1"}
    assert term.opts.delay_s == pytest.approx(0.02)
    assert term.opts.error_delay_s == pytest.approx(0.05)
    assert term.opts.timezone_minutes == 0
    polls = server.where("/iclock/getrequest")
    assert "INFO" in polls[0].query  # telemetry on the first poll after a handshake
    fw, users, _fps, logs, _ip, *_ = polls[0].query["INFO"].split(",")
    assert (fw, users, logs) == ("Ver 6.60 Apr 26 2016", "2", "0")
    assert "INFO" not in polls[1].query
    # the startup operation is reported after boot
    oplog = server.where("/iclock/cdata", "OPERLOG")
    assert oplog[0].lines[0].startswith("OPLOG 0\t0\t")


@pytest.mark.parametrize(("profile", "fields", "crlf"),
                         [("legacy", 5, True), ("push2", 7, False), ("biodata", 10, False)])
async def test_attlog_field_count_per_profile(server: PushServer, profile: str, fields: int,
                                              crlf: bool) -> None:
    fleet = make_fleet(server, profile)
    try:
        await fleet.start(live_punches=False)
        at = datetime(2026, 3, 2, 8, 1, 5)
        fleet.device("p1").punch("1001", at, state=1, verify=15)
        await until(lambda: len(server.attlog()) == 1, "one ATTLOG line")
        post = server.where("/iclock/cdata", "ATTLOG")[0]
        assert post.method == "POST" and post.query["Stamp"] == "1"
        assert post.body.endswith("\r\n" if crlf else "\n")
        parts = server.attlog()[0].split("\t")
        assert len(parts) == fields
        assert parts[:5] == ["1001", "2026-03-02 08:01:05", "1", "15", "0"]
        hs = server.where("/iclock/cdata")[0]
        assert ("pushver" in hs.query) is (profile != "legacy")
    finally:
        await fleet.stop()


async def test_batch_kept_on_503_then_accepted(server: PushServer, fleet: Fleet) -> None:
    await fleet.start(live_punches=False)
    term = fleet.terminal("p1")
    await until(lambda: term.stats["getrequests"] >= 1 and not term.oplog, "session up")
    server.upload_answers = [(503, "BUSY\n"), (503, "BUSY\n")]
    stored, _ = fleet.generate_punches("p1", 3)
    assert stored == 3
    await until(lambda: term.cursor == 3, "batch accepted")
    posts = server.where("/iclock/cdata", "ATTLOG")
    assert [p.answer[0] for p in posts] == [503, 503, 200]
    assert posts[0].body == posts[1].body == posts[2].body
    assert term.cursor == 3 and term.stats["failures"] >= 2


async def test_bare_ok_does_not_take_a_push2_batch(server: PushServer, fleet: Fleet) -> None:
    await fleet.start(live_punches=False)
    term = fleet.terminal("p1")
    await until(lambda: term.stats["getrequests"] >= 1 and not term.oplog, "session up")
    server.upload_answers = [(200, "OK")]
    fleet.device("p1").punch("1001")
    await until(lambda: len(server.attlog()) == 1, "batch accepted")
    posts = server.where("/iclock/cdata", "ATTLOG")
    assert len(posts) == 2 and posts[0].body == posts[1].body


async def test_lost_answer_reposts_the_identical_batch(server: PushServer, fleet: Fleet) -> None:
    await fleet.start(live_punches=False)
    term = fleet.terminal("p1")
    await until(lambda: term.stats["getrequests"] >= 1 and not term.oplog, "session up")
    await fleet.set_faults("p1", {"lost_answers": 1})
    fleet.generate_punches("p1", 4)
    await until(lambda: term.cursor == 4, "cursor past the batch")
    posts = server.where("/iclock/cdata", "ATTLOG")
    assert len(posts) == 2
    assert posts[0].answer == posts[1].answer == (200, "OK:4")  # the server took both
    assert posts[0].body == posts[1].body and posts[0].query == posts[1].query
    assert term.stats["answers_lost"] == 1
    assert fleet.device("p1").summary()["faults"] == {}


async def test_offline_buffers_then_catches_up_in_order(server: PushServer, fleet: Fleet) -> None:
    await fleet.start(live_punches=False)
    term = fleet.terminal("p1")
    dev = fleet.device("p1")
    await until(lambda: term.stats["getrequests"] >= 1, "session up")
    await fleet.set_faults("p1", {"offline": True})
    await until(lambda: not dev.reachable(), "offline")
    calls = len(server.seen)
    base = datetime(2026, 3, 2, 9, 0, 0)
    for i in range(250):
        dev.punch("1001" if i % 2 else "1002", base + timedelta(seconds=i))
    assert len(server.seen) == calls  # nothing while offline
    assert term.summary()["pending_records"] == 250
    await fleet.clear_faults("p1")
    await until(lambda: len(server.attlog()) == 250, "caught up")
    times = [ln.split("\t")[1] for ln in server.attlog()]
    assert times == sorted(times) and len(set(times)) == 250
    sizes = [len(p.lines) for p in server.where("/iclock/cdata", "ATTLOG")]
    assert sizes == [100, 100, 50]


async def test_clock_follows_the_date_header(server: PushServer, fleet: Fleet) -> None:
    wrong = datetime(2031, 7, 1, 10, 0, 0, tzinfo=UTC)
    server.date = lambda: wrong
    server.options["TimeZone"] = "2"
    await fleet.start(live_punches=False)
    term = fleet.terminal("p1")
    await until(lambda: term.stats["clock_sets"] >= 1, "clock set")
    clock = fleet.device("p1").local_time()
    assert abs((clock - datetime(2031, 7, 1, 12, 0, 0)).total_seconds()) < 5
    await until(lambda: any(ln.startswith("OPLOG 21\t") for s in server.where(
        "/iclock/cdata", "OPERLOG") for ln in s.lines), "set-time operation")


async def test_clock_without_timezone_uses_the_site_zone(server: PushServer,
                                                          fleet: Fleet) -> None:
    del server.options["TimeZone"]
    server.date = lambda: datetime(2030, 1, 15, 7, 0, 0, tzinfo=UTC)
    await fleet.start(live_punches=False)
    term = fleet.terminal("p1")
    await until(lambda: term.stats["clock_sets"] >= 1, "clock set")
    clock = fleet.device("p1").local_time()  # Paris in winter: UTC+1
    assert abs((clock - datetime(2030, 1, 15, 8, 0, 0)).total_seconds()) < 5


async def test_server_down_is_retried(server: PushServer) -> None:
    url = server.url
    await server.stop()
    fleet = make_fleet(server)
    try:
        await fleet.start(live_punches=False)
        term = fleet.terminal("p1")
        fleet.device("p1").punch("1001")
        await until(lambda: term.stats["failures"] >= 2, "failed calls")
        assert term.need_handshake
        host, port = url.removeprefix("http://").split(":")
        from aiohttp import web

        assert server._runner is not None
        server._runner = web.AppRunner(server._runner.app, access_log=None)
        await server._runner.setup()
        await web.TCPSite(server._runner, host, int(port)).start()
        await until(lambda: len(server.attlog()) == 1, "uploaded once the server is back")
    finally:
        await fleet.stop()


async def test_many_terminals_share_one_loop(server: PushServer) -> None:
    fleet = make_fleet(server, count=30)
    try:
        await fleet.start(live_punches=False)
        for i in range(1, 31):
            fleet.generate_punches(f"p{i}", 2)
        await until(lambda: len(server.attlog()) == 60, "every terminal uploaded")
        serials = {f"PUSH{i:04d}" for i in range(1, 31)}
        await until(lambda: {s.query["SN"] for s in server.where("/iclock/getrequest")}
                    == serials, "every terminal heartbeating")
        await until(lambda: fleet.terminal("p3").cursor == 2, "cursor past the upload")
        summary = fleet.device("p3").summary()
        assert summary["push"]["profile"] == "push2" and summary["push"]["upload_cursor"] == 2
    finally:
        await fleet.stop()


async def test_control_api_acts_on_push_terminals(server: PushServer, fleet: Fleet) -> None:
    from fleettui.emulator.control import bound_port, start_control
    from tests.conftest import next_host

    host = next_host()
    runner = await start_control(fleet, host, 0)
    await fleet.start(live_punches=False)
    term = fleet.terminal("p1")
    url = f"http://{host}:{bound_port(runner)}/devices/p1"
    try:
        async with httpx.AsyncClient(trust_env=False) as api:
            await until(lambda: term.stats["getrequests"] >= 1, "session up")
            r = await api.put(url + "/faults", json={"offline": True, "lost_answers": 1,
                                                     "command_returns": {"data delete": -3}})
            assert r.status_code == 200, r.text
            assert r.json()["faults"] == {"offline": True, "lost_answers": 1.0,
                                          "command_returns": {"DATA DELETE": -3}}
            r = await api.post(url + "/punches", json={"count": 3})
            assert r.status_code == 201 and r.json()["stored"] == 3
            assert (await api.get(url)).json()["push"]["pending_records"] == 3
            for bad in ({"command_returns": {"DATA": "busy"}}, {"command_returns": [1]},
                        {"lost_answers": -1}, {"resend_all_after_reboot": 1}):
                r = await api.put(url + "/faults", json=bad)
                assert r.status_code == 400, bad
            r = await api.put(url + "/faults", json={"offline": False})
            assert r.status_code == 200
            await until(lambda: term.cursor == 3, "uploaded after the link is back")
            posts = server.where("/iclock/cdata", "ATTLOG")
            assert len(posts) == 2 and posts[0].body == posts[1].body  # one answer lost
            server.commands = [("31", "DATA DELETE USERINFO PIN=1001"),
                               ("32", "DATA UPDATE USERINFO PIN=1003\tName=Cy")]
            await until(lambda: bool(server.where("/iclock/devicecmd")), "results")
            assert server.where("/iclock/devicecmd")[0].lines == [
                "ID=31&Return=-3&CMD=DATA", "ID=32&Return=0&CMD=DATA"]
            r = await api.post(url + "/restart")
            assert r.json()["power"] == "rebooting"
            await until(lambda: term.stats["handshakes"] == 2, "handshake after the restart")
    finally:
        await runner.cleanup()


async def test_flapping_link_stops_calls_while_down(server: PushServer, fleet: Fleet) -> None:
    await fleet.start(live_punches=False)
    term = fleet.terminal("p1")
    dev = fleet.device("p1")
    await until(lambda: term.stats["getrequests"] >= 1, "session up")
    await fleet.set_faults("p1", {"flap": {"up_s": 0.3, "down_s": 0.3}})
    downs = 0
    while downs < 3:  # calls made while the link is down would be a bug
        await until(lambda: not dev.reachable(), "link down")
        polls = term.stats["getrequests"]
        dev.punch("1001")
        await until(lambda: dev.reachable(), "link up")
        assert term.stats["getrequests"] in (polls, polls + 1)  # at most one in flight
        downs += 1
    await fleet.clear_faults("p1")
    await until(lambda: len(server.attlog()) == 3, "every punch uploaded")


async def test_without_realtime_punches_wait_for_trans_interval(server: PushServer,
                                                                fleet: Fleet) -> None:
    server.options.update(Realtime="0", TransInterval="0.01")  # 0.6 s
    await fleet.start(live_punches=False)
    term = fleet.terminal("p1")
    await until(lambda: term.stats["getrequests"] >= 1 and not term.oplog, "session up")
    assert not term.opts.realtime
    fleet.generate_punches("p1", 2)
    await until(lambda: len(server.attlog()) == 2, "uploaded at the interval")
    assert len(server.where("/iclock/cdata", "ATTLOG")) == 1  # both in one batch


async def test_biodata_profile_posts_its_options_after_the_handshake(server: PushServer) -> None:
    fleet = make_fleet(server, "biodata")
    try:
        await fleet.start(live_punches=False)
        await until(lambda: bool(server.where("/iclock/getrequest")), "session up")
        posts = server.where("/iclock/cdata", "options")
        assert len(posts) == 1 and posts[0].method == "POST"
        assert posts[0].body.startswith("~DeviceName=F18/ID,FWVersion=Ver 6.60")
        assert server.seen.index(posts[0]) == 1  # right after the handshake
    finally:
        await fleet.stop()


async def test_overwritten_records_do_not_move_the_cursor_past_new_ones(
        server: PushServer) -> None:
    fleet = make_fleet(server)
    dev = fleet.device("p1")
    dev.profile.records_cap, dev.profile.when_full = 5, "overwrite"
    try:
        base = datetime(2026, 3, 2, 9, 0, 0)
        for i in range(5):
            dev.punch("1001", base + timedelta(minutes=i))
        await fleet.start(live_punches=False)
        term = fleet.terminal("p1")
        await until(lambda: term.cursor == 5 and term.stats["getrequests"] >= 1, "uploaded")
        await fleet.set_faults("p1", {"offline": True})
        for i in range(5, 8):  # three oldest records are overwritten
            dev.punch("1002", base + timedelta(minutes=i))
        await fleet.clear_faults("p1")
        await until(lambda: len(server.attlog()) == 8, "the three new records uploaded")
        assert [ln.split("\t")[0] for ln in server.attlog()] == ["1001"] * 5 + ["1002"] * 3
    finally:
        await fleet.stop()
