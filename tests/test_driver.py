"""The pyzk driver against emulated devices: async, classified failures, fast parsing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest

from fleettui.devices import zk_wire
from fleettui.devices.base import DeviceFailure, Endpoint, Sizes
from fleettui.devices.zk import (
    ZkDriver,
    exit_packet,
    parse_attendance,
    read_sizes_checked,
)
from fleettui.domain import FailureKind
from fleettui.emulator.device import Device, Profile, Punch
from fleettui.emulator.protocol import build_packet, parse_packet, wrap_tcp
from tests.conftest import Emulated, device_config, sample_users


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    p = ThreadPoolExecutor(max_workers=4)
    yield p
    p.shutdown(wait=True)


def _driver(em: Emulated, device_id: str, pool: ThreadPoolExecutor, *, udp: bool = False,
            serial: str | None = None, key: int | None = None, timeout: float = 2.0) -> ZkDriver:
    cfg = em.fleet.devices[device_id].config
    ep = Endpoint(device_id, cfg.host, cfg.port, "udp" if udp else "tcp",
                  serial or cfg.serial, comm_key=cfg.comm_key if key is None else key)
    return ZkDriver(ep, pool, timeout_s=timeout, bulk_timeout_s=10)


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
async def test_check_reads_identity_and_sizes(one_device: Emulated, pool: ThreadPoolExecutor,
                                              udp: bool) -> None:
    drv = _driver(one_device, "dev_test_01", pool, udp=udp)
    sizes = await drv.check()
    assert (sizes.users, sizes.records, sizes.records_cap) == (20, 30, 100_000)
    assert drv.identity is not None
    assert (drv.identity.model, drv.identity.firmware) == ("F18/ID", "Ver 6.60 Apr 26 2016")
    sizes = await drv.check()  # the session persists
    assert one_device.fleet.devices["dev_test_01"].stats["sessions"] == 1
    await drv.close()


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
async def test_attendance_matches_the_device_record_for_record(
    emulate: Callable[..., Emulated], pool: ThreadPoolExecutor, udp: bool
) -> None:
    cfg = device_config()
    em = emulate([cfg], users={cfg.id: sample_users(50)})
    dev = em.fleet.devices[cfg.id]

    def fill() -> list[tuple[str, datetime, int, int]]:
        start = datetime(2025, 6, 1, 6, 0)
        for i in range(20_000):
            dev.punch(str(1001 + i % 50), start + timedelta(seconds=61 * i), state=i % 2,
                      verify=(1, 2, 15)[i % 3], notify=False)
        return [(p.user_id, p.at, p.state, p.verify) for p in dev.log.records()]

    expected = em.emu.call(fill)
    drv = _driver(em, cfg.id, pool, udp=udp)
    dump = await drv.read_attendance()
    assert [(r.user_id, r.local_time, r.state, r.verify) for r in dump.records] == expected
    assert len(set(dump.fingerprints)) == 20_000
    await drv.close()


async def test_black_and_white_16_byte_records(emulate: Callable[..., Emulated],
                                               pool: ThreadPoolExecutor) -> None:
    cfg = device_config(profile=Profile(user_format=28, record_format=16, face_version=None))
    em = emulate([cfg], users={cfg.id: sample_users(5)})
    em.emu.call(em.fleet.devices[cfg.id].punch, "1003", datetime(2026, 1, 2, 7, 58), state=1,
                verify=2)
    dump = await _driver(em, cfg.id, pool, udp=True).read_attendance()
    assert dump.record_size == 16
    r = dump.records[0]
    assert (r.user_id, r.local_time, r.state, r.verify) == ("1003", datetime(2026, 1, 2, 7, 58),
                                                            1, 2)


async def test_a_record_with_an_impossible_date_is_skipped_not_fatal(
    one_device: Emulated, pool: ThreadPoolExecutor
) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    # 31 February 2026, as a device with a badly set clock can hold
    bad_time = ((26 * 12 * 31) + 1 * 31 + 30) * 86400 + 8 * 3600
    one_device.emu.call(dev.log.append_encoded, Punch("1001", datetime(2026, 1, 1)), bad_time)
    dump = await _driver(one_device, dev.id, pool).read_attendance()
    assert (len(dump.records), dump.bad_records) == (30, 1)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ({"offline": True}, FailureKind.UNREACHABLE),
        ({"refuse": True}, FailureKind.REFUSED),
        ({"garbage": True}, FailureKind.PROTOCOL),
        ({"truncate": True}, FailureKind.PROTOCOL),
    ],
)
async def test_failures_are_classified(one_device: Emulated, pool: ThreadPoolExecutor,
                                       fault: dict[str, bool], kind: FailureKind) -> None:
    one_device.emu.run(one_device.fleet.set_faults("dev_test_01", fault))
    drv = _driver(one_device, "dev_test_01", pool, timeout=0.3)
    with pytest.raises(DeviceFailure) as info:
        await drv.check()
    assert info.value.kind is kind
    one_device.emu.run(one_device.fleet.clear_faults("dev_test_01"))
    sizes = await drv.check()  # a fresh session after the error
    assert sizes.records == 30
    await drv.close()


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
async def test_a_sizes_reply_cut_short_mid_session_is_a_bad_reply(
    one_device: Emulated, pool: ThreadPoolExecutor, udp: bool
) -> None:
    """pyzk keeps the previous counts when the sizes reply is short; the driver refuses it,
    and says the same of the reconnect's CONNECT reply, cut short as well."""
    drv = _driver(one_device, "dev_test_01", pool, udp=udp, timeout=0.3)
    assert (await drv.check()).records == 30  # a session is open
    one_device.emu.run(one_device.fleet.set_faults("dev_test_01", {"truncate": True}))
    for _ in range(2):  # mid-session, then on reconnecting
        with pytest.raises(DeviceFailure) as info:
            await drv.check()
        assert (info.value.kind, str(info.value)) == (FailureKind.PROTOCOL,
                                                      "bad reply: truncated")
    one_device.emu.run(one_device.fleet.clear_faults("dev_test_01"))
    assert (await drv.check()).records == 30
    await drv.close()


def test_a_sizes_reply_to_an_earlier_request_is_refused_as_stale(one_device: Emulated) -> None:
    """pyzk matches no reply to its request: with an earlier question's answer still on its
    way, read_sizes takes that answer for its own. Its reply id gives it away."""
    conn = one_device.zk("dev_test_01", timeout=2).connect()
    try:
        earlier = build_packet(50, conn._ZK__session_id, 4242)  # GET_FREE_SIZES, reply id 4242
        conn._ZK__sock.send(wrap_tcp(earlier))
        with pytest.raises(DeviceFailure, match=r"^bad reply: stale \(the answer to another"):
            read_sizes_checked(conn)
    finally:
        conn._ZK__sock.close()


def test_impossible_counters_are_named() -> None:
    assert zk_wire.sizes_inconsistency(Sizes(3, 5000, 58, 100_000)) is None
    assert zk_wire.sizes_inconsistency(Sizes(3, 5000, 120, 100)) == "records 120 above capacity 100"
    assert zk_wire.sizes_inconsistency(Sizes(-1, 5000, 0, 100)) == "users -1 of 5000"


async def test_wrong_comm_key_is_an_auth_failure(emulate: Callable[..., Emulated],
                                                 pool: ThreadPoolExecutor) -> None:
    cfg = device_config(comm_key=4242)
    em = emulate([cfg])
    with pytest.raises(DeviceFailure) as info:
        await _driver(em, cfg.id, pool, key=1111).check()
    assert info.value.kind is FailureKind.AUTH
    assert "4242" not in str(info.value) and "1111" not in str(info.value)
    assert (await _driver(em, cfg.id, pool).check()).users == 0


async def test_a_different_device_at_the_address_is_an_identity_failure(
    one_device: Emulated, pool: ThreadPoolExecutor
) -> None:
    with pytest.raises(DeviceFailure) as info:
        await _driver(one_device, "dev_test_01", pool, serial="OTHER123").check()
    assert info.value.kind is FailureKind.IDENTITY
    assert "OTHER123" in str(info.value)


async def test_operations_on_one_device_never_overlap(one_device: Emulated,
                                                      pool: ThreadPoolExecutor) -> None:
    drv = _driver(one_device, "dev_test_01", pool)
    results = await asyncio.gather(*(drv.check() for _ in range(10)), drv.read_time(),
                                   drv.read_attendance())
    assert all(r.records == 30 for r in results[:10])  # type: ignore[union-attr]
    assert len(results[-1].records) == 30  # type: ignore[union-attr]
    assert one_device.fleet.devices["dev_test_01"].stats["sessions"] == 1
    await drv.close()


def test_parser_rejects_data_that_fits_no_record_size() -> None:
    with pytest.raises(DeviceFailure) as info:
        parse_attendance(b"\x07\x00\x00\x00" + b"x" * 7, 1)
    assert info.value.kind is FailureKind.PROTOCOL
    with pytest.raises(DeviceFailure):
        parse_attendance(b"\x50\x00\x00\x00" + b"x" * 10, 2)  # cut short


async def test_a_late_reply_from_an_outage_is_never_read_as_the_next_answer(
    one_device: Emulated, pool: ThreadPoolExecutor
) -> None:
    """The stale-reply hazard (test_faults.py shows pyzk falling for it) meets the driver.

    An outage on an open TCP session holds the driver's request; the link returns and
    the device answers it late, saying 30 records. Punches land after that, so an
    answer read from the old session would say 30 records, not 35.
    """
    em, dev_id = one_device, "dev_test_01"
    dev = em.fleet.devices[dev_id]
    drv = _driver(em, dev_id, pool, timeout=0.3)
    assert (await drv.check()).records == 30  # a session is open
    em.emu.run(em.fleet.set_faults(dev_id, {"offline": True}))
    with pytest.raises(DeviceFailure) as info:
        await drv.check()
    assert info.value.kind is FailureKind.UNREACHABLE
    handled = em.emu.call(lambda: dev.stats["commands"])
    em.emu.run(em.fleet.clear_faults(dev_id))
    deadline = asyncio.get_running_loop().time() + 10
    while em.emu.call(lambda: dev.stats["commands"]) == handled:  # the late answer goes out
        assert asyncio.get_running_loop().time() < deadline, "the held request was not served"
        await asyncio.sleep(0.01)
    em.emu.call(em.fleet.generate_punches, dev_id, 5)
    for _ in range(3):
        sizes = await drv.check()
        assert sizes.records == 35
        assert drv.identity is not None and drv.identity.serial == em.fleet.devices[
            dev_id].config.serial
    await drv.close()


def test_the_goodbye_to_a_stale_session_is_a_well_formed_exit() -> None:
    """The CMD_EXIT said to sessions a killed poller left carries the protocol's checksum
    (the emulator checks it as a strict terminal would)."""
    for session_id, reply_id in ((0x1234, 0), (1, 65534), (0xFFFF, 7)):
        pkt = parse_packet(exit_packet(session_id, reply_id))
        assert (pkt.code, pkt.session_id, pkt.reply_id, pkt.data) == (1001, session_id,
                                                                      reply_id, b"")
        assert pkt.checksum_ok


def test_the_shared_wire_module_speaks_what_the_emulator_speaks() -> None:
    """fleettui's own wire module (zk_wire) and the emulator's protocol are written apart
    (the emulator imports nothing of fleettui): the notes' checksum vectors and each
    other's packets hold them together."""
    assert zk_wire.checksum(bytes.fromhex("0b00f38d03005a4b4661636556657273696f6e00")) == 0x175A
    assert zk_wire.checksum(bytes.fromhex("d0070000f38d0a0009")) == 0x6A29
    for code, session, reply, data in ((50, 0x8DF3, 3, b""), (1000, 0, 65534, b"x"),
                                       (2000, 7, 0, bytes(range(91)))):
        ours = zk_wire.packet(code, session, reply, data)
        assert ours == build_packet(code, session, reply, data)
        assert zk_wire.tcp_frame(ours) == wrap_tcp(ours)
        assert zk_wire.tcp_length(wrap_tcp(ours)[:8]) == len(ours)
        assert zk_wire.header(ours) == (code, parse_packet(ours).checksum, session, reply)
    assert zk_wire.tcp_length(b"\0" * 8) is None
    device = Device(device_config())
    device.users.update({u.uid: u for u in sample_users()})
    sizes = zk_wire.parse_sizes(device.free_sizes())
    assert (sizes.users, sizes.records_cap) == (20, device.profile.records_cap)
    assert zk_wire.sizes_inconsistency(sizes) is None
