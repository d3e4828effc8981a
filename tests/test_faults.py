"""Every device fault, switched at run time, as unmodified pyzk sees it on the wire.

Faults are applied the way the control API applies them, through
``Fleet.set_faults`` / ``Fleet.clear_faults`` on the emulator's loop, while
pyzk talks to the device over real loopback sockets. Each test states what a
poller would observe from real hardware with that sickness, including the
pyzk-specific ways of failing (see zk-protocol-notes.md §4.1): no reply
matching (a timeout makes the next call return the previous reply), and a
zoo of exception types.

Time is never guessed: clock-driven faults (flap, drift) run on a FakeClock,
waits for network events poll a condition with a bound, and wall-clock time
is only ever asserted as a lower bound.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from zk import ZK
from zk.exception import ZKErrorResponse, ZKNetworkError

from fleettui.emulator.device import Device
from fleettui.emulator.faults import FaultError
from fleettui.emulator.fleet import UnknownDevice
from tests.conftest import Emulated, FakeClock, device_config, sample_users

TRANSPORTS = [pytest.param(False, id="tcp"), pytest.param(True, id="udp")]

#: a pyzk timeout short enough to keep the suite fast, long enough for loopback
SHORT = 0.3
FIRMWARE = "Ver 6.60 Apr 26 2016"
#: a fixed wall clock, so that device times can be asserted to the second
WALL = datetime(2026, 3, 28, 9, 30, 0, tzinfo=UTC)


# --- helpers ---------------------------------------------------------------


def set_faults(em: Emulated, device_id: str, body: Any) -> dict[str, Any]:
    """Apply a fault update on the emulator loop, as the control API does."""
    return em.emu.run(em.fleet.set_faults(device_id, body))


def clear_faults(em: Emulated, device_id: str) -> dict[str, Any]:
    """Clear every fault of a device on the emulator loop."""
    return em.emu.run(em.fleet.clear_faults(device_id))


def assert_recovers(em: Emulated, device_id: str, udp: bool) -> None:
    """Clear the device's faults; a fresh pyzk session then works normally again."""
    clear_faults(em, device_id)
    fresh = em.zk(device_id, udp=udp, timeout=SHORT).connect()
    try:
        assert fresh.get_firmware_version() == FIRMWARE
    finally:
        fresh.disconnect()


def summary(em: Emulated, device_id: str) -> dict[str, Any]:
    """The device's control-API summary, read on the emulator loop."""
    return em.emu.call(em.fleet.devices[device_id].summary)


def drop(conn: ZK) -> None:
    """Close a pyzk connection's socket without the EXIT round trip.

    After an error pyzk's connection is unusable (or poisoned by a late reply)
    and ``disconnect()`` would itself time out and leave the socket open
    (notes §4.1 item 3), so the socket is closed directly, as a poller must.
    """
    conn._ZK__sock.close()  # type: ignore[attr-defined]


def wait_readable(conn: ZK, limit_s: float = 10.0) -> None:
    """Block until a reply is waiting in pyzk's socket (bounded), without reading it."""
    readable, _, _ = select.select([conn._ZK__sock], [], [], limit_s)  # type: ignore[attr-defined]
    assert readable, f"no late reply arrived within {limit_s} s"


def wait_until(em: Emulated, condition: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Poll ``condition`` on the emulator loop until it holds (bounded)."""
    deadline = time.monotonic() + limit_s
    while not em.emu.call(condition):
        assert time.monotonic() < deadline, f"condition not met within {limit_s} s"
        time.sleep(0.01)


def fixed_wall() -> datetime:
    """The frozen real (UTC) time of the clock tests."""
    return WALL


def true_local(tz: str) -> datetime:
    """The true naive local time at WALL in a device's zone."""
    return WALL.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


# --- offline ---------------------------------------------------------------


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_offline_device_times_out_then_answers_once_cleared(
    one_device: Emulated, udp: bool
) -> None:
    """offline: a new connect times out, an open session goes silent, clearing brings it back.

    Over TCP the emulator's listener still completes the TCP handshake (the
    kernel does that) and then drops every byte, so pyzk's CONNECT times out
    rather than its socket connect failing; to pyzk both are ZKNetworkError.
    """
    em, dev_id = one_device, "dev_test_01"
    serial = em.fleet.devices[dev_id].config.serial
    open_conn = em.zk(dev_id, udp=udp, timeout=SHORT).connect()
    assert open_conn.get_serialnumber() == serial

    state = set_faults(em, dev_id, {"offline": True})
    assert state["faults"] == {"offline": True}
    assert state["reachable"] is False

    with pytest.raises(ZKNetworkError, match="timed out"):
        em.zk(dev_id, udp=udp, timeout=SHORT).connect()
    # the session opened before the fault stops answering mid-session
    with pytest.raises(ZKNetworkError, match="timed out"):
        open_conn.get_firmware_version()
    drop(open_conn)

    state = clear_faults(em, dev_id)
    assert state["faults"] == {}
    assert state["reachable"] is True
    conn = em.zk(dev_id, udp=udp, timeout=SHORT).connect()
    try:
        assert conn.get_serialnumber() == serial
    finally:
        conn.disconnect()


def test_tcp_request_sent_during_an_outage_is_answered_when_the_link_returns(
    one_device: Emulated,
) -> None:
    """A short outage on an open TCP connection delays bytes rather than losing them.

    The client's stack retransmits what it sent while the link was down, so
    the device answers once it is back: pyzk, which has timed out by then, reads
    that late reply as the answer to its next call. This is the stale-reply
    hazard a poller avoids by reconnecting after any error.

    pyzk reads with one ``recv`` whatever is waiting, so had the next call's own
    reply arrived too, it would read both as one (and its parser would happen to
    find the serial in the second): the link goes down again before that call, so
    only the stale reply can be there to read.
    """
    em, dev_id = one_device, "dev_test_01"
    conn = em.zk(dev_id, timeout=SHORT).connect()
    set_faults(em, dev_id, {"offline": True})
    with pytest.raises(ZKNetworkError, match="timed out"):
        conn.get_firmware_version()
    clear_faults(em, dev_id)
    wait_readable(conn)  # the held request has now been answered
    set_faults(em, dev_id, {"offline": True})  # the next request is held, not answered
    assert conn.get_serialnumber() == FIRMWARE  # the stale firmware reply, taken for the serial
    drop(conn)


# --- flap ------------------------------------------------------------------


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_flap_is_up_then_down_then_up_on_the_fake_clock(
    emulate: Callable[..., Emulated], udp: bool
) -> None:
    """flap {"up_s": 20, "down_s": 10}: answers for 20 s, silent for 10 s, answers again.

    The schedule starts when the fault is applied and runs on the fleet's
    clock, so moving the FakeClock moves the device through its phases.
    """
    clock = FakeClock()
    cfg = device_config()
    em = emulate([cfg], users={cfg.id: sample_users(3)}, clock=clock)
    dev = em.fleet.devices[cfg.id]
    set_faults(em, cfg.id, {"flap": {"up_s": 20, "down_s": 10}})
    assert summary(em, cfg.id)["faults"] == {"flap": {"up_s": 20.0, "down_s": 10.0}}

    # phase 0: up
    conn = em.zk(cfg.id, udp=udp, timeout=SHORT).connect()
    assert conn.get_serialnumber() == cfg.serial
    clock.advance(19.5)  # phase 19.5: still up, the same session answers
    assert conn.get_firmware_version() == FIRMWARE

    clock.advance(0.5)  # phase 20.0: the up window is [0, 20), so now down
    assert em.emu.call(dev.reachable) is False
    clock.advance(5)  # phase 25: down
    with pytest.raises(ZKNetworkError, match="timed out"):
        em.zk(cfg.id, udp=udp, timeout=SHORT).connect()
    with pytest.raises(ZKNetworkError, match="timed out"):
        conn.get_serialnumber()
    drop(conn)

    clock.advance(5)  # phase 30 = phase 0 of the next period: up again
    assert em.emu.call(dev.reachable) is True
    clock.advance(5)  # phase 35
    conn = em.zk(cfg.id, udp=udp, timeout=SHORT).connect()
    try:
        assert conn.get_serialnumber() == cfg.serial
    finally:
        conn.disconnect()

    # stopping the flap (flap: null) leaves the device up in any phase
    clock.advance(20)  # phase 55 = 25 of the period: would be down
    assert em.emu.call(dev.reachable) is False
    set_faults(em, cfg.id, {"flap": None})
    assert em.emu.call(dev.reachable) is True


# --- latency and reply delay -------------------------------------------------


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_latency_above_the_timeout_makes_connect_time_out(
    one_device: Emulated, udp: bool
) -> None:
    """latency_ms above pyzk's timeout: the reply comes too late and connect fails.

    The reply is not lost, only late: it does arrive in pyzk's socket after
    the timeout (where a retry on that socket would read it as its own).
    """
    em, dev_id = one_device, "dev_test_01"
    set_faults(em, dev_id, {"latency_ms": 600})
    zk = em.zk(dev_id, udp=udp, timeout=SHORT)
    with pytest.raises(ZKNetworkError, match="timed out"):
        zk.connect()
    wait_readable(zk)  # the late CONNECT reply
    drop(zk)
    server = em.fleet.servers[dev_id]
    wait_until(em, lambda: all(link.udp for link in server.links))


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_reply_delay_timeout_leaves_a_stale_reply_for_the_next_call(
    one_device: Emulated, udp: bool
) -> None:
    """reply_delay_ms above the timeout: the call times out, and the NEXT call gets its reply.

    pyzk never matches a reply to its request (notes §4.1 item 1). The late
    firmware reply sits in the socket, so ``get_serialnumber()`` returns the
    firmware string. This is what hardware does to pyzk and why the poller
    must drop the connection after any error. A fresh connection is in step.
    """
    em, dev_id = one_device, "dev_test_01"
    serial = em.fleet.devices[dev_id].config.serial
    conn = em.zk(dev_id, udp=udp, timeout=SHORT).connect()
    set_faults(em, dev_id, {"reply_delay_ms": 600})
    with pytest.raises(ZKNetworkError, match="timed out"):
        conn.get_firmware_version()
    wait_readable(conn)  # the late firmware reply has now arrived
    # the fault stays on, so the serial number's own reply is 600 ms away:
    # pyzk reads the firmware reply already waiting in the socket instead
    assert conn.get_serialnumber() == FIRMWARE
    drop(conn)

    clear_faults(em, dev_id)
    fresh = em.zk(dev_id, udp=udp, timeout=SHORT).connect()
    try:
        assert fresh.get_serialnumber() == serial
        assert fresh.get_firmware_version() == FIRMWARE
    finally:
        fresh.disconnect()
    # let the dropped TCP connection's handler send its last late reply and end,
    # so the emulator does not stop with that reply still in flight
    server = em.fleet.servers[dev_id]
    wait_until(em, lambda: all(link.udp for link in server.links))


@pytest.mark.parametrize("udp", TRANSPORTS)
@pytest.mark.parametrize("fault", ["latency_ms", "reply_delay_ms"])
def test_delay_below_the_timeout_succeeds_but_no_faster_than_the_delay(
    one_device: Emulated, udp: bool, fault: str
) -> None:
    """A delay shorter than pyzk's timeout: every call succeeds and pays the delay.

    connect + two reads are three round trips, so they take at least three
    delays. Only that lower bound is asserted (1 ms slack for clock rounding).
    """
    em, dev_id = one_device, "dev_test_01"
    delay_s = 0.15
    set_faults(em, dev_id, {fault: delay_s * 1000})
    started = time.monotonic()
    conn = em.zk(dev_id, udp=udp, timeout=5).connect()
    try:
        assert conn.get_firmware_version() == FIRMWARE
        assert conn.get_serialnumber() == em.fleet.devices[dev_id].config.serial
        elapsed = time.monotonic() - started
    finally:
        clear_faults(em, dev_id)
        conn.disconnect()
    assert elapsed >= 3 * delay_s - 0.001


# --- throughput --------------------------------------------------------------


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_throughput_limit_still_delivers_every_record(
    emulate: Callable[..., Emulated], udp: bool
) -> None:
    """throughput_kbps: a 2000-record download is slowed but correct record for record.

    The log's 80 004-byte dataset cannot cross a 4000 KiB/s link faster than
    its size allows, so the download takes at least that long (lower bound).
    """
    cfg = device_config()
    em = emulate([cfg], users={cfg.id: sample_users(50)})
    dev = em.fleet.devices[cfg.id]

    def fill() -> list[tuple[str, datetime, int, int]]:
        start = datetime(2026, 1, 5, 6, 0, 0)
        for i in range(2000):
            dev.punch(str(1001 + i % 50), start + timedelta(seconds=61 * i),
                      state=i % 2, verify=(1, 2, 15)[i % 3], notify=False)
        return [(p.user_id, p.at, p.verify, p.state) for p in dev.log.records()]

    expected = em.emu.call(fill)
    dataset_bytes = len(em.emu.call(dev.log.dataset))
    rate_kbps = 4000
    set_faults(em, cfg.id, {"throughput_kbps": rate_kbps})
    conn = em.zk(cfg.id, udp=udp, timeout=10).connect()
    try:
        started = time.monotonic()
        records = conn.get_attendance()
        elapsed = time.monotonic() - started
    finally:
        conn.disconnect()
    assert len(records) == 2000
    assert [(a.user_id, a.timestamp, a.status, a.punch) for a in records] == expected
    assert elapsed >= dataset_bytes / (rate_kbps * 1024.0) - 0.001


# --- UDP loss ----------------------------------------------------------------


def test_total_udp_loss_silences_udp_but_not_tcp(one_device: Emulated) -> None:
    """udp_loss 1.0: every datagram is lost (UDP connect times out); TCP is untouched.

    Setting it back to 0 (the default) makes UDP work again.
    """
    em, dev_id = one_device, "dev_test_01"
    serial = em.fleet.devices[dev_id].config.serial
    set_faults(em, dev_id, {"udp_loss": 1.0})
    with pytest.raises(ZKNetworkError, match="timed out"):
        em.zk(dev_id, udp=True, timeout=SHORT).connect()
    tcp = em.zk(dev_id, timeout=SHORT).connect()
    try:
        assert tcp.get_serialnumber() == serial
        assert len(tcp.get_attendance()) == 30
    finally:
        tcp.disconnect()

    assert set_faults(em, dev_id, {"udp_loss": 0})["faults"] == {}
    udp = em.zk(dev_id, udp=True, timeout=SHORT).connect()
    try:
        assert udp.get_serialnumber() == serial
        assert len(udp.get_attendance()) == 30
    finally:
        udp.disconnect()


# --- garbage -----------------------------------------------------------------


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_garbage_replies_fail_each_call_in_a_transport_specific_way(
    one_device: Emulated, udp: bool
) -> None:
    """garbage: every reply is random bytes of the right length.

    TCP: pyzk first checks the 8-byte TCP header magic (0x5050, 0x827d);
    random bytes don't match, so connect and every later call raise
    ZKNetworkError("TCP packet invalid").

    UDP: there is no magic to check. pyzk unpacks the random header and takes
    its first u16 as the reply code: anything but ACK_OK/PREPARE_DATA/DATA
    makes the call "fail" with ZKErrorResponse carrying the method's own
    message: "Invalid response: Can't connect" on connect, "Can't read
    frimware version" (pyzk's spelling) for get_firmware_version. (A random
    code of 2000/1500/1501, odds 3 in 65 536, would pass garbage off as data;
    the emulator's seeded RNG makes the bytes reproducible.)
    """
    em, dev_id = one_device, "dev_test_01"
    conn = em.zk(dev_id, udp=udp, timeout=SHORT).connect()
    set_faults(em, dev_id, {"garbage": True})
    if udp:
        with pytest.raises(ZKErrorResponse, match="Invalid response: Can't connect"):
            em.zk(dev_id, udp=True, timeout=SHORT).connect()
        with pytest.raises(ZKErrorResponse, match="Can't read frimware version"):
            conn.get_firmware_version()
    else:
        with pytest.raises(ZKNetworkError, match="TCP packet invalid"):
            em.zk(dev_id, timeout=SHORT).connect()
        with pytest.raises(ZKNetworkError, match="TCP packet invalid"):
            conn.get_firmware_version()
    drop(conn)

    assert_recovers(em, dev_id, udp)


# --- truncate ----------------------------------------------------------------


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_truncated_replies_break_connect_and_corrupt_results(
    one_device: Emulated, udp: bool
) -> None:
    """truncate: only the first half of each reply frame is sent.

    connect fails on both transports, with ZKNetworkError:
    * TCP: the 16-byte frame is cut to 8 bytes, no longer than the TCP
      header, so pyzk says "TCP packet invalid";
    * UDP: the 8-byte datagram is cut to 4, and unpacking the header raises
      struct.error, which pyzk wraps: "unpack requires a buffer of 8 bytes".

    Mid-session the danger is worse: a reply long enough to keep its header
    is accepted and pyzk returns a silently truncated value. The firmware
    reply (21 data bytes) is cut to 2 of them on TCP (37-byte frame → 18,
    minus 16 of headers) and to 6 on UDP (29 → 14, minus 8). get_time's
    reply is too short for a header and raises ZKNetworkError.
    """
    em, dev_id = one_device, "dev_test_01"
    conn = em.zk(dev_id, udp=udp, timeout=SHORT).connect()
    set_faults(em, dev_id, {"truncate": True})
    expected_msg = "unpack requires a buffer of 8 bytes" if udp else "TCP packet invalid"
    with pytest.raises(ZKNetworkError, match=expected_msg):
        em.zk(dev_id, udp=udp, timeout=SHORT).connect()

    assert conn.get_firmware_version() == ("Ver 6." if udp else "Ve")  # wrong, no error
    with pytest.raises(ZKNetworkError, match="unpack requires a buffer of 8 bytes"):
        conn.get_time()
    drop(conn)

    assert_recovers(em, dev_id, udp)


# --- refuse ------------------------------------------------------------------


def _port_closed_for(host: str, port: int, *, udp: bool) -> bool:
    """Whether the OS reports the port closed (connection refused) on that transport.

    For UDP this needs a *connected* socket: Linux reports an ICMP "port
    unreachable" only to connected UDP sockets.
    """
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(5)
        try:
            s.connect((host, port))
            if udp:
                s.send(b"\x00" * 8)
                s.recv(64)
        except ConnectionRefusedError:
            return True
        except TimeoutError:
            return False
    return False


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_refuse_closes_the_port_and_clearing_reopens_the_same_one(
    one_device: Emulated, udp: bool
) -> None:
    """refuse: the service is down but the host is up; the port is closed on TCP and UDP.

    TCP: the refusal comes back at once. pyzk ignores the result of its
    socket connect (connect_ex), then send() on the refused socket raises
    EPIPE: ZKNetworkError("[Errno 32] Broken pipe"), not a timeout.

    UDP: the datagram draws an ICMP "port unreachable", but pyzk's socket is
    unconnected and Linux does not report ICMP errors to unconnected UDP
    sockets. To pyzk a refused UDP port looks exactly like an offline device:
    ZKNetworkError("timed out"). A connected UDP socket does see the refusal.

    Sessions open at the time are dropped. Clearing the fault listens again on
    the very same port (pollers keep the configured port).
    """
    em, dev_id = one_device, "dev_test_01"
    dev = em.fleet.devices[dev_id]
    server = em.fleet.servers[dev_id]
    host, port = dev.config.host, dev.config.port
    conn = em.zk(dev_id, udp=udp, timeout=SHORT).connect()

    set_faults(em, dev_id, {"refuse": True})
    assert em.emu.call(lambda: server.listening) is False
    assert em.emu.call(lambda: len(server.sessions)) == 0
    assert _port_closed_for(host, port, udp=udp)
    if udp:
        with pytest.raises(ZKNetworkError, match="timed out"):
            em.zk(dev_id, udp=True, timeout=SHORT).connect()
    else:
        # a long timeout: the failure must not come from waiting it out
        with pytest.raises(ZKNetworkError, match=r"Broken pipe|refused|reset"):
            em.zk(dev_id, timeout=30).connect()
    with pytest.raises(ZKNetworkError):  # the open session is gone
        conn.get_serialnumber()
    drop(conn)

    clear_faults(em, dev_id)
    assert em.emu.call(lambda: (server.listening, server.port, dev.config.port)) == (
        True, port, port
    )
    assert not _port_closed_for(host, port, udp=udp)
    fresh = ZK(host, port=port, timeout=SHORT, force_udp=udp, ommit_ping=True).connect()
    try:
        assert fresh.get_serialnumber() == dev.config.serial
    finally:
        fresh.disconnect()


# --- buffer full ---------------------------------------------------------------


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_full_buffer_shows_in_read_sizes_and_rejects_punches(
    one_device: Emulated, udp: bool
) -> None:
    """buffer_full: capacity equals the record count (none free); new punches are refused.

    Clearing the fault restores the real capacity and punches are stored again.
    """
    em, dev_id = one_device, "dev_test_01"
    dev: Device = em.fleet.devices[dev_id]
    set_faults(em, dev_id, {"buffer_full": True})
    conn = em.zk(dev_id, udp=udp, timeout=SHORT).connect()
    try:
        assert conn.read_sizes() is True
        assert (conn.records, conn.rec_cap, conn.rec_av) == (30, 30, 0)
        before = em.emu.call(lambda: dev.rejected_punches)
        assert em.emu.call(dev.punch, "1001") is None
        assert em.emu.call(dev.punch, "1002") is None
        assert em.emu.call(lambda: dev.rejected_punches) == before + 2
        assert len(conn.get_attendance()) == 30  # the stored log is intact

        clear_faults(em, dev_id)
        stored = em.emu.call(dev.punch, "1003", datetime(2026, 3, 28, 8, 0, 0))
        assert stored is not None
        conn.read_sizes()
        assert (conn.records, conn.rec_cap, conn.rec_av) == (31, 100_000, 99_969)
        last = conn.get_attendance()[-1]
        assert (last.user_id, last.timestamp) == ("1003", datetime(2026, 3, 28, 8, 0, 0))
    finally:
        conn.disconnect()


# --- clock faults --------------------------------------------------------------


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_clock_offset_shows_in_get_time_and_set_time_fixes_it(
    emulate: Callable[..., Emulated], udp: bool
) -> None:
    """clock_offset_s: get_time is off by exactly the offset; pyzk's set_time corrects it.

    A frozen wall clock makes the device time exact to the second.
    """
    cfg = device_config()
    em = emulate([cfg], clock=FakeClock(), wall_clock=fixed_wall)
    local = true_local(cfg.timezone)
    assert set_faults(em, cfg.id, {"clock_offset_s": -5400})["clock_offset_s"] == -5400
    conn = em.zk(cfg.id, udp=udp, timeout=SHORT).connect()
    try:
        assert conn.get_time() == local - timedelta(minutes=90)
        assert conn.set_time(local) is True
        assert conn.get_time() == local
    finally:
        conn.disconnect()
    assert summary(em, cfg.id)["clock_offset_s"] == 0


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_clock_drift_accumulates_per_day_and_set_time_restarts_it(
    emulate: Callable[..., Emulated], udp: bool
) -> None:
    """clock_drift_s_per_day: after one (fake) day the clock is off by the drift.

    pyzk's set_time brings it back to true time; the drift keeps going from
    there, as a real crystal's would.
    """
    clock = FakeClock()
    cfg = device_config()
    em = emulate([cfg], clock=clock, wall_clock=fixed_wall)
    local = true_local(cfg.timezone)
    set_faults(em, cfg.id, {"clock_drift_s_per_day": 120})

    def device_time() -> datetime:
        conn = em.zk(cfg.id, udp=udp, timeout=SHORT).connect()
        try:
            return conn.get_time()
        finally:
            conn.disconnect()

    assert device_time() == local  # no time has passed: no drift yet
    clock.advance(86_400)
    assert device_time() == local + timedelta(seconds=120)

    conn = em.zk(cfg.id, udp=udp, timeout=SHORT).connect()
    try:
        assert conn.set_time(local) is True
        assert conn.get_time() == local
    finally:
        conn.disconnect()
    clock.advance(43_200)  # half a day later: half the drift again
    assert device_time() == local + timedelta(seconds=60)
    assert summary(em, cfg.id)["clock_offset_s"] == 60


# --- invalid updates -------------------------------------------------------------


INVALID_UPDATES = [
    pytest.param({"bogus": True}, "unknown fault 'bogus'", id="unknown-key"),
    pytest.param({"offline": 1}, "offline: expected true or false", id="bool-as-int"),
    pytest.param({"latency_ms": "300"}, "latency_ms: expected a number", id="string-number"),
    pytest.param({"reply_delay_ms": True}, "reply_delay_ms: expected a number", id="bool-number"),
    pytest.param({"udp_loss": 1.5}, "udp_loss: expected a number from 0 to 1", id="loss>1"),
    pytest.param({"latency_ms": -1}, "latency_ms: expected a number from 0", id="negative"),
    pytest.param({"clock_offset_s": "1h"}, "clock_offset_s: expected a number", id="clock-str"),
    pytest.param({"flap": {"up_s": 20}}, "flap: missing down_s", id="flap-no-down"),
    pytest.param({"flap": {"up_s": 0, "down_s": 10}}, "flap.up_s", id="flap-zero-up"),
    pytest.param({"flap": {"up_s": 20, "down_s": 10, "jitter": 1}}, "flap: expected",
                 id="flap-extra-key"),
    pytest.param({"flap": [20, 10]}, "flap: expected", id="flap-list"),
    # a valid fault next to an invalid one: the valid one is not applied either
    pytest.param({"offline": True, "garbage": "yes"}, "garbage: expected true or false",
                 id="valid-then-invalid"),
    pytest.param({}, "no fault given", id="empty"),
    pytest.param(["offline"], "must be a JSON object", id="not-an-object"),
]


@pytest.mark.parametrize(("body", "message"), INVALID_UPDATES)
def test_invalid_fault_update_raises_fault_error_and_changes_nothing(
    emulate: Callable[..., Emulated], body: Any, message: str
) -> None:
    """An invalid update raises FaultError naming the offending key; the device is untouched.

    The device's whole summary (faults, clock, reachability, counters) is
    compared before and after, and it still answers pyzk.
    """
    cfg = device_config()
    em = emulate([cfg], clock=FakeClock(), wall_clock=fixed_wall)
    set_faults(em, cfg.id, {"latency_ms": 1})  # a fault already in force stays as it is
    before = summary(em, cfg.id)
    with pytest.raises(FaultError, match=message):
        set_faults(em, cfg.id, body)
    assert summary(em, cfg.id) == before
    assert em.emu.call(lambda: em.fleet.servers[cfg.id].listening) is True
    conn = em.zk(cfg.id, timeout=SHORT).connect()
    try:
        assert conn.get_serialnumber() == cfg.serial
    finally:
        conn.disconnect()


def test_fault_update_for_an_unknown_device_is_refused(one_device: Emulated) -> None:
    """Faults for a device id the fleet doesn't have raise UnknownDevice (a KeyError)."""
    with pytest.raises(UnknownDevice):
        set_faults(one_device, "dev_nope", {"offline": True})
    with pytest.raises(UnknownDevice):
        clear_faults(one_device, "dev_nope")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"clock_offset_s": float("nan")}, id="offset-nan"),
        pytest.param({"clock_offset_s": float("inf")}, id="offset-inf"),
        pytest.param({"clock_offset_s": 1e12}, id="offset-1e12"),
        pytest.param({"clock_drift_s_per_day": float("nan")}, id="drift-nan"),
    ],
)
def test_absurd_clock_fault_is_refused_and_changes_nothing(
    emulate: Callable[..., Emulated], body: dict[str, float]
) -> None:
    """A clock offset or drift no device clock can show is refused like any bad value.

    JSON bodies can carry these (Python's json accepts NaN and Infinity, and
    1e12 is plain JSON).
    """
    cfg = device_config()
    em = emulate([cfg], clock=FakeClock(), wall_clock=fixed_wall)
    before = summary(em, cfg.id)
    key = next(iter(body))
    with pytest.raises(FaultError, match=key):
        set_faults(em, cfg.id, body)
    assert summary(em, cfg.id) == before


# --- isolation -------------------------------------------------------------------


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_a_faulty_device_does_not_affect_its_neighbour(
    emulate: Callable[..., Emulated], udp: bool
) -> None:
    """Two devices in one fleet: one offline, the other answers normally."""
    sick, well = device_config("dev_sick_01"), device_config("dev_well_01")
    em = emulate([sick, well], users={well.id: sample_users(4)})
    set_faults(em, sick.id, {"offline": True, "latency_ms": 50})
    with pytest.raises(ZKNetworkError, match="timed out"):
        em.zk(sick.id, udp=udp, timeout=SHORT).connect()
    conn = em.zk(well.id, udp=udp, timeout=SHORT).connect()
    try:
        assert conn.get_serialnumber() == well.serial
        assert len(conn.get_users()) == 4
    finally:
        conn.disconnect()
    assert summary(em, well.id)["faults"] == {}
    assert summary(em, well.id)["reachable"] is True
