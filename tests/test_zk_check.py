"""The liveness check on the event loop, on pyzk's open session, over real sockets.

The emulated device answers on loopback; a frame split across reads is made
with a real socket pair (the emulator always sends a frame whole).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from fleettui.devices import zk_wire
from fleettui.devices.base import DeviceFailure, Endpoint
from fleettui.devices.zk import ZkDriver
from fleettui.devices.zk_check import _tcp_exchange
from fleettui.domain import FailureKind
from fleettui.emulator.protocol import build_packet, wrap_tcp
from tests.conftest import Emulated

DEV = "dev_test_01"


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    p = ThreadPoolExecutor(max_workers=2)
    yield p
    p.shutdown(wait=True)


def _driver(em: Emulated, pool: ThreadPoolExecutor, udp: bool, timeout: float = 2.0
            ) -> ZkDriver:
    cfg = em.fleet.devices[DEV].config
    ep = Endpoint(DEV, cfg.host, cfg.port, "udp" if udp else "tcp", cfg.serial,
                  comm_key=cfg.comm_key)
    return ZkDriver(ep, pool, timeout_s=timeout, bulk_timeout_s=10)


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
async def test_checks_on_an_open_session_need_no_thread_and_pyzk_carries_on(
    one_device: Emulated, udp: bool
) -> None:
    """Once the session is open, checks run with the pool shut down (no thread hop),
    on the same session, and pyzk's own calls on it afterwards still get their answers
    (the reply id advanced as pyzk would have)."""
    pool = ThreadPoolExecutor(max_workers=1)
    drv = _driver(one_device, pool, udp)
    assert (await drv.check()).records == 30  # connect + identity: pyzk, in the pool
    session = drv._conn._ZK__session_id
    pool.shutdown(wait=True)  # from here a hop to the pool would raise
    em, dev = one_device.emu, one_device.fleet.devices[DEV]
    for n in range(1, 4):
        em.call(dev.punch, str(1000 + n))
        assert (await drv.check()).records == 30 + n
    assert drv._conn._ZK__session_id == session
    assert dev.stats["sessions"] == 1
    drv._pool = ThreadPoolExecutor(max_workers=1)
    try:
        assert (await drv.read_time()).year >= 2020  # pyzk, on the session the loop used
        assert (await drv.check()).records == 33
        assert dev.stats["sessions"] == 1
    finally:
        await drv.close()
        drv._pool.shutdown(wait=True)


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
async def test_a_late_answer_waiting_on_the_session_is_refused_as_stale(
    one_device: Emulated, pool: ThreadPoolExecutor, udp: bool
) -> None:
    """An answer to an earlier question, waiting on the socket, is not taken for this
    check's; the session is dropped, and the next check opens a fresh one."""
    drv = _driver(one_device, pool, udp)
    await drv.check()
    conn = drv._conn
    earlier = build_packet(zk_wire.CMD_GET_FREE_SIZES, conn._ZK__session_id, 4242)
    if udp:
        conn._ZK__sock.sendto(earlier, conn._ZK__address)
    else:
        conn._ZK__sock.send(wrap_tcp(earlier))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not _readable(conn._ZK__sock):  # the earlier answer is there to be misread
        assert loop.time() < deadline, "the device never answered the earlier question"
        await asyncio.sleep(0.01)
    with pytest.raises(DeviceFailure, match=r"^bad reply: stale \(the answer to another"):
        await drv.check()
    assert drv._conn is None
    assert (await drv.check()).records == 30
    assert one_device.fleet.devices[DEV].stats["sessions"] == 2
    await drv.close()


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
async def test_a_check_cancelled_mid_exchange_drops_the_session(
    one_device: Emulated, pool: ThreadPoolExecutor, udp: bool
) -> None:
    """Cancelled while the device has not answered yet (the engine stopping), the check
    leaves no half-read session behind: its late answer can never be read as the next
    check's."""
    drv = _driver(one_device, pool, udp)
    await drv.check()
    one_device.emu.run(one_device.fleet.set_faults(DEV, {"reply_delay_ms": 60_000}))
    task = asyncio.get_running_loop().create_task(drv.check())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not drv._lock.locked():
        assert loop.time() < deadline
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert drv._conn is None
    one_device.emu.run(one_device.fleet.clear_faults(DEV))
    assert (await drv.check()).records == 30
    await drv.close()


async def test_no_answer_is_a_timeout_and_unreachable(
    one_device: Emulated, pool: ThreadPoolExecutor
) -> None:
    drv = _driver(one_device, pool, udp=False, timeout=0.3)
    await drv.check()
    one_device.emu.run(one_device.fleet.set_faults(DEV, {"offline": True}))
    with pytest.raises(DeviceFailure) as info:
        await drv.check()
    assert (info.value.kind, str(info.value)) == (FailureKind.UNREACHABLE, "no answer")
    assert drv._conn is None
    one_device.emu.run(one_device.fleet.clear_faults(DEV))
    assert (await drv.check()).records == 30
    await drv.close()


def _readable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


def _sizes_frame(session_id: int, reply_id: int) -> bytes:
    counts = [0] * 23
    counts[4], counts[8], counts[15], counts[16] = 3, 58, 5000, 100_000
    data = b"".join(c.to_bytes(4, "little", signed=True) for c in counts)
    return wrap_tcp(build_packet(zk_wire.CMD_ACK_OK, session_id, reply_id, data))


async def test_a_frame_that_comes_in_pieces_is_read_whole() -> None:
    """TCP may deliver a frame in several reads: the reply is the whole frame."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)  # the device's end is read on the loop as well
    loop = asyncio.get_running_loop()
    frame = _sizes_frame(7, 1)
    try:
        exchange = loop.create_task(_tcp_exchange(loop, ours, b"request", 30))
        assert await loop.sock_recv(theirs, 64) == b"request"
        theirs.send(frame[:5])  # not even the whole wrapper
        theirs.send(frame[5:40])
        await asyncio.sleep(0)  # (lets the exchange read the pieces it can)
        assert not exchange.done()
        theirs.send(frame[40:])
        inner = await asyncio.wait_for(exchange, 30)
        assert zk_wire.sizes_reply(inner, 1, 7).records == 58
    finally:
        ours.close()
        theirs.close()


async def test_a_frame_cut_short_is_truncated_once_the_timeout_passes() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        theirs.send(_sizes_frame(7, 1)[:50])
        with pytest.raises(DeviceFailure, match=r"^bad reply: truncated$"):
            await _tcp_exchange(asyncio.get_running_loop(), ours, b"request", 0.2)
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize(("frame", "what"), [
    (b"\x00" * 16, "not a ZK frame"),
    (zk_wire.TCP_MAGIC + (70_000).to_bytes(4, "little") + b"\x00" * 8, "oversized frame"),
    (_sizes_frame(7, 0) + _sizes_frame(7, 1), "stale"),
])
async def test_frames_that_cannot_be_a_sizes_reply_are_bad_replies(frame: bytes,
                                                                   what: str) -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        theirs.send(frame)
        with pytest.raises(DeviceFailure, match=f"^bad reply: {what}"):
            await _tcp_exchange(asyncio.get_running_loop(), ours, b"request", 30)
    finally:
        ours.close()
        theirs.close()
