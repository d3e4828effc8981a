"""Unmodified pyzk, over TCP and UDP, calls every method the emulator serves.

Everything here crosses real loopback sockets: the emulator runs in its own
event loop thread, pyzk blocks in the test thread, as it would against a
terminal on the LAN.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from zk import ZK
from zk.exception import ZKErrorResponse, ZKNetworkError
from zk.finger import Finger

from fleettui.emulator.device import Profile
from tests.conftest import Emulated, FakeClock, device_config, sample_users

TRANSPORTS = [pytest.param(False, id="tcp"), pytest.param(True, id="udp")]


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_identity_and_options_reads(one_device: Emulated, udp: bool) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    conn = one_device.zk(dev.id, udp=udp).connect()
    try:
        assert conn.get_firmware_version() == "Ver 6.60 Apr 26 2016"
        assert conn.get_serialnumber() == dev.config.serial
        assert conn.get_platform() == "ZMM210_TFT"
        assert conn.get_device_name() == "F18/ID"
        assert conn.get_mac() == dev.config.mac
        assert conn.get_face_version() == 7
        assert conn.get_fp_version() == 10
        # no ExtendFmt on an F18: pyzk sends its four "clear error" probes, which
        # the device must answer, or the session falls out of step
        assert conn.get_extend_fmt() is None
        assert conn.get_user_extend_fmt() == 1
        assert conn.get_face_fun_on() == 0
        assert conn.get_compat_old_firmware() == 0
        assert conn.get_network_params() == {
            "ip": dev.config.host, "mask": "255.255.255.0", "gateway": "0.0.0.0"
        }
        assert conn.get_pin_width() == 9
        assert conn.set_sdk_build_1() is True
        # the session is still in step after all of that
        assert conn.get_serialnumber() == dev.config.serial
    finally:
        conn.disconnect()


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_read_sizes(one_device: Emulated, udp: bool) -> None:
    conn = one_device.zk("dev_test_01", udp=udp).connect()
    try:
        assert conn.read_sizes() is True
        assert (conn.users, conn.users_cap, conn.users_av) == (20, 5000, 4980)
        assert (conn.records, conn.rec_cap, conn.rec_av) == (30, 100_000, 99_970)
        assert (conn.fingers, conn.fingers_cap, conn.fingers_av) == (0, 3000, 3000)
        assert (conn.faces, conn.faces_cap) == (0, 0)
    finally:
        conn.disconnect()


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_get_and_set_time_on_the_device_clock(one_device: Emulated, udp: bool) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    conn = one_device.zk(dev.id, udp=udp).connect()
    try:
        # the device keeps naive local time in its site's zone
        before = one_device.emu.call(dev.local_time)
        got = conn.get_time()
        assert got.tzinfo is None
        assert abs((got - before).total_seconds()) <= 2
        conn.set_time(datetime(2026, 3, 29, 1, 59, 30))
        got = conn.get_time()
        assert datetime(2026, 3, 29, 1, 59, 30) <= got <= datetime(2026, 3, 29, 1, 59, 33)
    finally:
        conn.disconnect()


def test_clock_offset_fault_shows_in_get_time(one_device: Emulated) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    one_device.emu.run(one_device.fleet.set_faults(dev.id, {"clock_offset_s": 3600}))
    conn = one_device.zk(dev.id).connect()
    try:
        true_local = one_device.emu.call(
            lambda: dev.wall_clock().astimezone(dev.tz).replace(tzinfo=None)
        )
        drift = (conn.get_time() - true_local).total_seconds()
        assert 3598 <= drift <= 3602
    finally:
        conn.disconnect()


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_users_get_set_delete(one_device: Emulated, udp: bool) -> None:
    conn = one_device.zk("dev_test_01", udp=udp).connect()
    try:
        users = conn.get_users()
        assert [u.user_id for u in users] == [str(1000 + i) for i in range(1, 21)]
        assert users[0].name == "Worker 1"
        assert users[0].card == 5000001
        conn.set_user(uid=50, name="Amina Benali", privilege=14, password="4321",
                      group_id="2", user_id="77001", card=123456789)
        conn.set_user(uid=3, name="Renamed", user_id="1003", card=42)  # update by uid
        users = {u.uid: u for u in conn.get_users()}
        new = users[50]
        assert (new.name, new.user_id, new.card, new.privilege, new.password, new.group_id) == (
            "Amina Benali", "77001", 123456789, 14, "4321", "2"
        )
        assert (users[3].name, users[3].card) == ("Renamed", 42)
        conn.delete_user(uid=50)
        conn.delete_user(user_id="1004")
        remaining = {u.user_id for u in conn.get_users()}
        assert "77001" not in remaining and "1004" not in remaining
        assert len(remaining) == 19
        with pytest.raises(ZKErrorResponse):
            conn.delete_user(uid=999)  # no such user: the device refuses
    finally:
        conn.disconnect()


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_black_and_white_terminal_uses_28_byte_users_and_16_byte_records(
    emulate: Callable[..., Emulated], udp: bool
) -> None:
    profile = Profile(
        firmware="Ver 6.60 Mar 18 2013", platform="ZEM560", device_name="MA300",
        face_version=None, user_format=28, record_format=16, users_cap=3000,
        records_cap=50_000,
    )
    cfg = device_config("dev_bw_01", profile=profile)
    em = emulate([cfg], users={cfg.id: sample_users(5)})
    em.emu.call(em.fleet.generate_punches, cfg.id, 12)
    conn = em.zk(cfg.id, udp=udp).connect()
    try:
        assert conn.get_face_version() is None
        users = conn.get_users()
        assert conn.user_packet_size == 28
        assert [u.user_id for u in users] == ["1001", "1002", "1003", "1004", "1005"]
        conn.set_user(uid=9, name="Jose", user_id="2009", card=7)
        assert "2009" in {u.user_id for u in conn.get_users()}
        records = conn.get_attendance()
        stored = em.emu.call(em.fleet.devices[cfg.id].log.records)
        assert [(a.user_id, a.timestamp, a.status, a.punch) for a in records] == [
            (p.user_id, p.at, p.state, p.verify) for p in stored
        ]
    finally:
        conn.disconnect()


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_attendance_download_and_clear(one_device: Emulated, udp: bool) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    one_device.emu.call(dev.punch, "1005", datetime(2026, 3, 28, 8, 1, 0), state=0, verify=2)
    conn = one_device.zk(dev.id, udp=udp).connect()
    try:
        records = conn.get_attendance()
        assert len(records) == 31
        last = records[-1]
        # 40-byte TFT records: pyzk's "status" is the verify type, "punch" the state
        assert (last.user_id, last.timestamp, last.status, last.punch, last.uid) == (
            "1005", datetime(2026, 3, 28, 8, 1, 0), 2, 0, 5
        )
        stamps = [a.timestamp for a in records[:30]]
        assert stamps == sorted(stamps)
        assert conn.clear_attendance() is True
        assert conn.get_attendance() == []
        conn.read_sizes()
        assert conn.records == 0
    finally:
        conn.disconnect()


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_comm_key_right_wrong_and_missing(emulate: Callable[..., Emulated], udp: bool) -> None:
    cfg = device_config("dev_locked_01", comm_key=123456)
    em = emulate([cfg], users={cfg.id: sample_users(3)})
    conn = em.zk(cfg.id, udp=udp, password=123456).connect()
    try:
        assert conn.get_serialnumber() == cfg.serial
        assert len(conn.get_users()) == 3
    finally:
        conn.disconnect()
    for wrong in (654321, 0):
        zk = em.zk(cfg.id, udp=udp, password=wrong)
        with pytest.raises(ZKErrorResponse, match="Unauthenticated"):
            zk.connect()


def test_commands_before_connect_are_unauthorised(one_device: Emulated) -> None:
    # a client that skips CONNECT gets ACK_UNAUTH, not data
    import socket
    import struct

    from fleettui.emulator.protocol import build_packet, wrap_tcp

    dev = one_device.fleet.devices["dev_test_01"]
    with socket.create_connection((dev.config.host, dev.config.port), timeout=5) as s:
        s.sendall(wrap_tcp(build_packet(50, 0, 1)))  # GET_FREE_SIZES, no session
        reply = s.recv(64)
    assert struct.unpack_from("<H", reply, 8)[0] == 2005


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_device_control_commands(one_device: Emulated, udp: bool) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    conn = one_device.zk(dev.id, udp=udp).connect()
    try:
        assert conn.disable_device() is True
        assert one_device.emu.call(lambda: dev.enabled) is False
        # a disabled terminal shows "Working..." and takes no punches
        assert one_device.emu.call(dev.punch, "1001") is None
        assert conn.enable_device() is True
        assert one_device.emu.call(dev.punch, "1001") is not None
        assert conn.test_voice(0) is True
        assert conn.test_voice(99) is False
        assert one_device.emu.call(lambda: list(dev.voices)) == [0]
        assert conn.unlock(5) is True
        assert one_device.emu.call(lambda: (dev.door_unlocks, dev.door_open())) == (1, True)
        assert conn.refresh_data() is True
        assert conn.cancel_capture() is True
        assert conn.verify_user() is True
    finally:
        conn.disconnect()


def test_device_left_disabled_reenables_when_the_session_closes(one_device: Emulated) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    conn = one_device.zk(dev.id).connect()
    conn.disable_device()
    conn.disconnect()
    assert one_device.emu.call(lambda: dev.enabled) is True


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_restart_takes_the_device_away_for_its_reboot_time(
    emulate: Callable[..., Emulated], udp: bool
) -> None:
    clock = FakeClock()
    cfg = device_config(profile=Profile(reboot_s=30))
    em = emulate([cfg], users={cfg.id: sample_users(3)}, clock=clock)
    conn = em.zk(cfg.id, udp=udp).connect()
    assert conn.restart() is True
    assert em.emu.call(lambda: em.fleet.devices[cfg.id].power) == "rebooting"
    with pytest.raises(ZKNetworkError):
        em.zk(cfg.id, udp=udp, timeout=0.3).connect()  # gone: no answer at all
    clock.advance(31)
    conn = em.zk(cfg.id, udp=udp).connect()
    try:
        assert conn.read_sizes() and conn.users == 3
    finally:
        conn.disconnect()


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_poweroff_stays_off_until_powered_on(emulate: Callable[..., Emulated], udp: bool) -> None:
    cfg = device_config()
    em = emulate([cfg])
    conn = em.zk(cfg.id, udp=udp).connect()
    assert conn.poweroff() is True
    with pytest.raises(ZKNetworkError):
        em.zk(cfg.id, udp=udp, timeout=0.3).connect()
    em.emu.call(em.fleet.devices[cfg.id].power_on)
    conn = em.zk(cfg.id, udp=udp).connect()
    assert conn.get_serialnumber() == cfg.serial
    conn.disconnect()


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_live_capture_receives_punches_as_they_happen(one_device: Emulated, udp: bool) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    conn = one_device.zk(dev.id, udp=udp).connect()
    got = []
    punched = False
    try:
        for event in conn.live_capture(new_timeout=0.2):
            if not punched:
                # registered (the first timeout tick proves the loop is listening):
                # three people punch one after the other
                for uid in ("1007", "1008", "1009"):
                    one_device.emu.call(dev.punch, uid, None, state=1, verify=1)
                punched = True
            if event is None:
                continue
            got.append(event)
            if len(got) == 3:
                conn.end_live_capture = True
        assert [a.user_id for a in got] == ["1007", "1008", "1009"]
        assert {(a.status, a.punch) for a in got} == {(1, 1)}
        assert [a.uid for a in got] == [7, 8, 9]
        # after live capture the same session carries on with ordinary commands
        assert conn.get_serialnumber() == dev.config.serial
    finally:
        conn.disconnect()


def test_events_go_only_to_sessions_that_registered(one_device: Emulated) -> None:
    dev = one_device.fleet.devices["dev_test_01"]
    plain = one_device.zk(dev.id).connect()
    listener = one_device.zk(dev.id, udp=True).connect()
    try:
        stream = listener.live_capture(new_timeout=0.2)
        assert next(stream) is None  # registered and waiting
        one_device.emu.call(dev.punch, "1002")
        event = next(e for e in stream if e is not None)
        assert event.user_id == "1002"
        listener.end_live_capture = True
        for _ in stream:
            pass
        # the plain session got no event: its next reply is still in step
        assert plain.get_serialnumber() == dev.config.serial
        assert plain.read_sizes() and plain.records == 31
    finally:
        plain.disconnect()
        listener.disconnect()


def test_concurrent_sessions_up_to_the_limit(emulate: Callable[..., Emulated]) -> None:
    cfg = device_config(profile=Profile(max_sessions=2))
    em = emulate([cfg], users={cfg.id: sample_users(4)})
    a = em.zk(cfg.id).connect()
    b = em.zk(cfg.id, udp=True).connect()
    try:
        # two sessions at once, interleaved, each in step
        assert len(a.get_users()) == 4
        assert len(b.get_users()) == 4
        assert a.get_serialnumber() == b.get_serialnumber() == cfg.serial
        with pytest.raises(ZKErrorResponse, match="Can't connect"):
            em.zk(cfg.id).connect()  # a third is turned away
    finally:
        a.disconnect()
    c = em.zk(cfg.id).connect()  # a slot is free again
    c.disconnect()
    b.disconnect()


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_fingerprint_templates_round_trip(one_device: Emulated, udp: bool) -> None:
    conn = one_device.zk("dev_test_01", udp=udp).connect()
    try:
        users = conn.get_users()
        user = users[0]
        template = bytes(range(256)) * 2
        conn.save_user_template(user, [Finger(user.uid, 0, 1, template),
                                       Finger(user.uid, 6, 1, template[::-1])])
        fingers = conn.get_templates()
        assert {(f.uid, f.fid) for f in fingers} == {(user.uid, 0), (user.uid, 6)}
        one = conn.get_user_template(uid=user.uid, temp_id=6)
        assert one.template == template[::-1]
        assert conn.delete_user_template(uid=user.uid, temp_id=6) is True
        conn.read_sizes()
        assert conn.fingers == 1
        conn.delete_user(uid=user.uid)  # deleting a user takes their templates
        assert conn.get_templates() == []
    finally:
        conn.disconnect()


def test_full_record_buffer_rejects_punches(emulate: Callable[..., Emulated]) -> None:
    cfg = device_config(profile=Profile(records_cap=50))
    em = emulate([cfg], users={cfg.id: sample_users(3)})
    stored, rejected = em.emu.call(em.fleet.generate_punches, cfg.id, 60)
    assert (stored, rejected) == (50, 10)
    conn = em.zk(cfg.id).connect()
    try:
        conn.read_sizes()
        assert (conn.records, conn.rec_cap, conn.rec_av) == (50, 50, 0)
        assert len(conn.get_attendance()) == 50
    finally:
        conn.disconnect()


def test_overwriting_terminal_drops_its_oldest_records_when_full(
    emulate: Callable[..., Emulated],
) -> None:
    cfg = device_config(profile=Profile(records_cap=10, when_full="overwrite"))
    em = emulate([cfg], users={cfg.id: sample_users(3)})
    dev = em.fleet.devices[cfg.id]
    for minute in range(15):
        em.emu.call(dev.punch, "1001", datetime(2026, 1, 5, 8, minute))
    conn = em.zk(cfg.id).connect()
    try:
        minutes = [a.timestamp.minute for a in conn.get_attendance()]
        assert minutes == list(range(5, 15))
    finally:
        conn.disconnect()


@pytest.mark.parametrize(("udp", "count"), [pytest.param(False, 100_000, id="tcp-100k"),
                                            pytest.param(True, 20_000, id="udp-20k")])
def test_a_full_buffer_download_is_correct_record_for_record(
    emulate: Callable[..., Emulated], udp: bool, count: int
) -> None:
    """A full 100,000-record buffer over TCP; over UDP 20,000 records (800 KB, ~50
    chunks of datagrams) prove the same reassembly at a fifth of the time: pyzk's own
    record parser is quadratic, so 100,000 cost ~15 s on each transport."""
    cfg = device_config()
    em = emulate([cfg], users={cfg.id: sample_users(300)})
    dev = em.fleet.devices[cfg.id]

    def fill() -> list[tuple[str, datetime, int, int]]:
        start = datetime(2025, 1, 1, 6, 0, 0)
        from datetime import timedelta

        for i in range(count):
            dev.punch(str(1001 + i % 300), start + timedelta(seconds=97 * i),
                      state=i % 6, verify=(1, 2, 15)[i % 3], notify=False)
        return [(p.user_id, p.at, p.verify, p.state) for p in dev.log.records()]

    expected = em.emu.call(fill)
    assert len(expected) == count
    conn = em.zk(cfg.id, udp=udp, timeout=30).connect()
    try:
        records = conn.get_attendance()
    finally:
        conn.disconnect()
    assert [(a.user_id, a.timestamp, a.status, a.punch) for a in records] == expected


def test_500_devices_in_one_emulator_process_answer(emulate: Callable[..., Emulated]) -> None:
    configs = [device_config(f"dev_{i:03d}") for i in range(500)]
    emulate(configs)
    serials = []
    for cfg in configs:
        conn = ZK(cfg.host, port=cfg.port, timeout=5, ommit_ping=True).connect()
        conn.read_sizes()
        serials.append(conn.get_serialnumber())
        conn.disconnect()
    assert serials == [c.serial for c in configs]
