"""Commands a push terminal gets in its getrequest answers: run, answered, faulted.

Against the recording push server of ``tests/push_server.py``, which stands in
for the product's push listener (not in this tree when these were written).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from fleettui.emulator.fleet import Fleet
from tests.push_server import PushServer, fleet, make_fleet, server, until

__all__ = ["fleet", "server"]  # the fixtures, from tests/push_server.py



async def test_commands_run_and_results_are_posted(server: PushServer, fleet: Fleet) -> None:
    dev = fleet.device("p1")
    dev.punch("1001", datetime(2026, 3, 1, 8, 0, 0))
    await fleet.start(live_punches=False)
    term = fleet.terminal("p1")
    await until(lambda: term.cursor == 1 and term.stats["getrequests"] >= 1, "session up")
    server.commands = [
        ("1", "DATA UPDATE USERINFO PIN=2001\tName=Bob\tPri=0\tPasswd=\tCard=777\tGrp=1\tTZ=\t"
              "Verify=0"),
        ("2", "DATA DELETE USERINFO PIN=1002"),
        ("3", "DATA DELETE USERINFO PIN=9999"),
        ("4", "INFO"),
        ("5", "DATA QUERY ATTLOG StartTime=2026-03-01 00:00:00\tEndTime=2026-03-01 23:59:59"),
        ("6", "DATA QUERY ATTLOG StartTime=2020-01-01 00:00:00\tEndTime=2020-01-02 00:00:00"),
        ("7", "SET OPTION LockOn=50"),
        ("8", "USER ADD PIN=1"),
        ("9", "AC_UNLOCK"),
    ]
    await until(lambda: bool(server.where("/iclock/devicecmd")), "results")
    result = server.where("/iclock/devicecmd")[0]
    heads = [ln for ln in result.lines if ln.startswith("ID=")]
    assert heads == ["ID=1&Return=0&CMD=DATA", "ID=2&Return=0&CMD=DATA",
                     "ID=3&Return=-10&CMD=DATA", "ID=4&Return=0&CMD=INFO",
                     "ID=5&Return=0&CMD=DATA", "ID=6&Return=-1&CMD=DATA",
                     "ID=7&Return=0&CMD=SET", "ID=8&Return=-1002&CMD=USER",
                     "ID=9&Return=0&CMD=AC_UNLOCK"]
    info = result.lines[result.lines.index("ID=4&Return=0&CMD=INFO") + 1:]
    assert "UserCount=2" in info and "TransactionCount=1" in info
    assert "~MaxAttLogCount=10" in info and "FWVersion=Ver 6.60 Apr 26 2016" in info
    assert dev.user_by_id("2001") is not None and dev.user_by_id("2001").card == 777
    assert dev.user_by_id("1002") is None
    assert dev.options["LockOn"] == "50" and dev.door_unlocks == 1
    # the queried range is uploaded again (before the result), the users reported
    assert server.attlog().count("1001\t2026-03-01 08:00:00\t0\t1\t0\t0\t0") == 2
    oplines = [ln for s in server.where("/iclock/cdata", "OPERLOG") for ln in s.lines]
    assert any(ln.startswith("USER PIN=2001\tName=Bob\t") for ln in oplines)
    assert any(ln.startswith("OPLOG 9\t0\t") and "\t1002\t" in ln for ln in oplines)


async def test_fault_forces_a_return_code(server: PushServer, fleet: Fleet) -> None:
    await fleet.start(live_punches=False)
    term = fleet.terminal("p1")
    await until(lambda: term.stats["getrequests"] >= 1, "session up")
    await fleet.set_faults("p1", {"command_returns": {"DATA": -1005}})
    server.commands = [("11", "DATA DELETE USERINFO PIN=1001"), ("12", "CHECK")]
    await until(lambda: bool(server.where("/iclock/devicecmd")), "results")
    assert server.where("/iclock/devicecmd")[0].lines == [
        "ID=11&Return=-1005&CMD=DATA", "ID=12&Return=0&CMD=CHECK"]
    assert fleet.device("p1").user_by_id("1001") is not None


@pytest.mark.parametrize("profile", ["push2-resend", "push2"])
async def test_reboot_resends_everything_on_the_resend_profile(server: PushServer,
                                                               profile: str) -> None:
    fleet = make_fleet(server, profile)
    try:
        fleet.generate_punches("p1", 5)
        await fleet.start(live_punches=False)
        term = fleet.terminal("p1")
        await until(lambda: term.cursor == 5 and term.stats["getrequests"] >= 1, "uploaded")
        server.commands = [("21", "REBOOT"), ("22", "INFO")]
        await until(lambda: term.stats["handshakes"] == 2 and term.cursor == 5
                    and not term.oplog, "back after the reboot")
        results = server.where("/iclock/devicecmd")
        assert results[0].lines == ["ID=21&Return=0&CMD=REBOOT"]  # the rest is not run
        expected = 10 if profile == "push2-resend" else 5
        await until(lambda: len(server.attlog()) == expected, "uploads")
        assert len(server.attlog()) == expected
        oplines = [ln for s in server.where("/iclock/cdata", "OPERLOG") for ln in s.lines]
        assert sum(ln.startswith("OPLOG 0\t") for ln in oplines) == 2
    finally:
        await fleet.stop()


@pytest.mark.parametrize(("stamp", "resent"), [("0", 3), ("3", 0)])
async def test_check_rereads_options_and_a_zero_stamp_resends_all(
        server: PushServer, fleet: Fleet, stamp: str, resent: int) -> None:
    fleet.generate_punches("p1", 3)
    await fleet.start(live_punches=False)
    term = fleet.terminal("p1")
    await until(lambda: term.cursor == 3 and term.stats["getrequests"] >= 1, "uploaded")
    server.options["ATTLOGStamp"] = stamp
    server.commands = [("41", "CHECK")]
    await until(lambda: term.stats["handshakes"] == 2 and term.stats["getrequests"] >= 3,
                "options read again")
    await until(lambda: term.cursor == 3, "cursor")
    assert len(server.attlog()) == 3 + resent
    assert server.where("/iclock/devicecmd")[0].lines == ["ID=41&Return=0&CMD=CHECK"]
