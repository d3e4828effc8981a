"""ZK binary protocol devices through pyzk, made safe for an asyncio engine.

pyzk is blocking and fragile (see shared/reference/zk-protocol-notes.md §4):
- every call runs in a bounded thread pool, never on the event loop, and at
  most one operation at a time per device (one pyzk instance per thread of
  use; instances are not thread-safe); the one exception is the liveness
  check on a session already open, sent and read on the loop with
  non-blocking calls on pyzk's socket (``zk_check.py``), under the same lock;
- pyzk does not match replies to requests, so after ANY error the socket is
  closed and the next operation reconnects: a late reply can never be read
  as the answer to the next question;
- exceptions are not uniform (ZKNetworkError, ZKErrorResponse, raw timeouts,
  struct.error, ValueError...): they are classified into FailureKind;
- ``ommit_ping`` always (pyzk would shell out to ping), and pyzk's TCP probe,
  which has a hard-coded 10 s timeout, uses the configured timeout instead;
- attendance is read with pyzk's buffered read and parsed here: pyzk's own
  parser is quadratic (about 5 s for 100,000 records) and fails the whole
  download on one impossible date.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from zk import ZK
from zk.exception import ZKErrorConnection, ZKErrorResponse, ZKNetworkError

from fleettui.devices import zk_wire
from fleettui.devices.base import (
    AttendanceDump,
    DeviceFailure,
    DeviceUser,
    Endpoint,
    Identity,
    LiveCallback,
    SessionLedger,
    Sizes,
)
from fleettui.devices.zk_check import check_open_session
from fleettui.devices.zk_wire import (
    CMD_EXIT,
    REPLY_ID_WRAP,
    SIZES_REPLY_BYTES,
    TCP_MAGIC,
    bad_reply,
    sizes_reply,
)
from fleettui.domain import FailureKind, RawPunch

log = logging.getLogger(__name__)
T = TypeVar("T")

#: the attendance log read command (CMD_ATTLOG_RRQ) for pyzk's buffered read
_ATTLOG_RRQ = 13
_OPTIONS_WRQ = 12
#: stale UDP sessions remembered for a goodbye (a terminal holds a handful at most)
MAX_STALE = 8
_REFRESHOPTION = 1014
_REC40 = struct.Struct("<H24sB4sB8s")
_REC16 = struct.Struct("<I4sBB2sI")
_REFUSED = {errno.ECONNREFUSED, errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.EHOSTDOWN}


def decode_time(v: int) -> datetime:
    """The device's packed u32 time (every month 31 days) as a naive datetime."""
    second = v % 60
    v //= 60
    minute = v % 60
    v //= 60
    hour = v % 24
    v //= 24
    day = v % 31 + 1
    v //= 31
    month = v % 12 + 1
    v //= 12
    return datetime(v + 2000, month, day, hour, minute, second)


def parse_attendance(data: bytes, expected: int) -> AttendanceDump:
    """Parse a buffered attendance read: u32 length, then fixed-size records.

    The record size is inferred from the length and the count read just
    before (``expected``); a punch landing between the two makes the count
    off by a few, so the size whose record count is nearest wins. Records with
    impossible dates are counted in ``bad_records`` and skipped, not fatal.
    """
    if len(data) < 4:
        raise DeviceFailure(FailureKind.PROTOCOL, f"attendance data of {len(data)} bytes")
    total = struct.unpack_from("<I", data)[0]
    body = data[4 : 4 + total]
    if len(body) < total:
        raise DeviceFailure(
            FailureKind.PROTOCOL, f"attendance data cut short: {len(body)} of {total} bytes"
        )
    if total == 0:
        return AttendanceDump([], [])
    sizes = [s for s in (40, 16, 49) if total % s == 0]
    if not sizes:
        raise DeviceFailure(
            FailureKind.PROTOCOL, f"attendance data of {total} bytes fits no known record size"
        )
    size = min(sizes, key=lambda s: (abs(total // s - expected), -s))
    records: list[RawPunch] = []
    prints: list[str] = []
    bad = 0
    for off in range(0, total, size):
        raw = body[off : off + size]
        try:
            if size == 16:
                user_num, t, state, verify, _r, _wc = _REC16.unpack(raw)
                punch = RawPunch(str(user_num), decode_time(struct.unpack("<I", t)[0]),
                                 state, verify)
            else:  # 40 and 49 share the first 40 bytes
                _uid, user_id, verify, t, state, _rest = _REC40.unpack_from(raw)
                uid_text = user_id.split(b"\x00", 1)[0].decode("utf-8", errors="replace")
                punch = RawPunch(uid_text, decode_time(struct.unpack("<I", t)[0]), state, verify)
        except ValueError:
            bad += 1
            continue
        records.append(punch)
        prints.append(raw.hex())
    return AttendanceDump(records, prints, bad, size)


def frame_defect(conn: Any) -> str | None:
    """What is wrong with the last reply frame pyzk received, if it is visibly cut short.

    pyzk keeps the raw reply in private attributes: over TCP the whole frame
    (8-byte wrapper, then the packet it announces), over UDP the datagram. A
    frame shorter than its 8-byte header, or a TCP frame shorter than the
    length its wrapper announces, was truncated on the way.
    """
    if conn is None:
        return None
    if conn.tcp:
        raw = getattr(conn, "_ZK__tcp_data_recv", None)
        if not isinstance(raw, bytes | bytearray):
            return None
        if len(raw) < 16:
            return "truncated" if TCP_MAGIC.startswith(bytes(raw[:4])) else None
        if bytes(raw[:4]) == TCP_MAGIC and len(raw) - 8 < struct.unpack_from("<I", raw, 4)[0]:
            return "truncated"
        return None
    raw = getattr(conn, "_ZK__data_recv", None)
    if isinstance(raw, bytes | bytearray) and len(raw) < 8:
        return "truncated"
    return None


def read_sizes_checked(conn: Any) -> Sizes:
    """GET_FREE_SIZES through pyzk, with the checks pyzk leaves out.

    pyzk's ``read_sizes`` ignores a reply shorter than 80 data bytes and keeps
    the previous counts, so a device whose replies are cut short looks idle
    for ever. Here the reply must be whole (the length its TCP wrapper
    announces, at least 80 data bytes), answer this request (the reply id
    pyzk sent, this session's id) and make sense (no negative count, no count
    above its capacity); otherwise the device answered wrongly.
    """
    sent = (conn._ZK__reply_id + 1) % REPLY_ID_WRAP
    conn.read_sizes()
    defect = frame_defect(conn)
    if defect is not None:
        log.info("sizes reply of %d data bytes (a full one has %d): %s",
                 len(conn._ZK__data_recv) - 8, SIZES_REPLY_BYTES, defect)
        raise bad_reply(defect)
    return sizes_reply(conn._ZK__data_recv, sent, conn._ZK__session_id)


def exit_packet(session_id: int, reply_id: int) -> bytes:
    """A CMD_EXIT packet for a UDP session, with the protocol's checksum."""
    return zk_wire.packet(CMD_EXIT, session_id, reply_id)


def say_goodbye(endpoint: Endpoint, sessions: Sequence[tuple[int, int]]) -> None:
    """Send CMD_EXIT for each (session id, reply id), without waiting for an answer.

    A UDP session is keyed by its id alone, so any socket may end it; a goodbye that is
    lost is said again at the next connect, until one connect succeeds.
    """
    if not sessions:
        return
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            for session_id, reply_id in sessions:
                sock.sendto(exit_packet(session_id, reply_id), (endpoint.host, endpoint.port))
    except OSError as e:
        log.debug("goodbye to stale sessions of %s: %s", endpoint.device_id, e)


def _next_reply_id(conn: Any) -> int:
    return (int(getattr(conn, "_ZK__reply_id", 0)) + 1) % REPLY_ID_WRAP


def classify(exc: BaseException) -> DeviceFailure:
    """Turn whatever pyzk raised into a DeviceFailure with a kind and a plain reason."""
    if isinstance(exc, DeviceFailure):
        return exc
    text = str(exc)
    if isinstance(exc, TimeoutError | socket.timeout) or "timed out" in text:
        return DeviceFailure(FailureKind.UNREACHABLE, "no answer")
    if isinstance(exc, OSError) and exc.errno in _REFUSED:
        return DeviceFailure(FailureKind.REFUSED, "connection refused")
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
        return DeviceFailure(FailureKind.UNREACHABLE, f"unreachable ({exc.strerror})")
    if isinstance(exc, ZKNetworkError):
        lowered = text.lower()
        if any(w in lowered for w in ("refused", "broken pipe", "reset", "errno 32", "errno 111")):
            return DeviceFailure(FailureKind.REFUSED, "connection refused")
        if "unreachable" in lowered or "no route" in lowered:
            return DeviceFailure(FailureKind.UNREACHABLE, "unreachable")
        return DeviceFailure(FailureKind.PROTOCOL, f"bad reply ({text})")
    if isinstance(exc, ZKErrorResponse):
        if "Unauthenticated" in text:
            return DeviceFailure(FailureKind.AUTH, "comm key rejected")
        return DeviceFailure(FailureKind.PROTOCOL, f"device refused a command ({text})")
    if isinstance(exc, ZKErrorConnection):
        return DeviceFailure(FailureKind.PROTOCOL, "session lost")
    return DeviceFailure(FailureKind.PROTOCOL, f"bad reply ({type(exc).__name__}: {text})")


class ZkDriver:
    """One ZK device through pyzk: a persistent session, reopened after any error."""

    def __init__(
        self,
        endpoint: Endpoint,
        pool: ThreadPoolExecutor,
        *,
        timeout_s: float = 2.0,
        bulk_timeout_s: float = 30.0,
        sessions: SessionLedger | None = None,
    ) -> None:
        self.endpoint = endpoint
        #: where UDP sessions are written down (so a killed poller's are ended at start)
        self.sessions = sessions
        self._leftovers_loaded = False
        self.identity: Identity | None = None
        #: attendance record size found by the last download (live events carry their own)
        self.record_size = 40
        #: 72 (TFT) or 28 (black and white: names cut to 8 bytes, passwords to 5)
        self.user_record_size = 72 if endpoint.transport == "tcp" else 28
        self._pool = pool
        self._timeout = timeout_s
        self._bulk_timeout = bulk_timeout_s
        self._lock = asyncio.Lock()
        self._conn: Any = None
        #: (session id, reply id) of UDP sessions dropped without CMD_EXIT (see _drop)
        self._stale: list[tuple[int, int]] = []
        self._live: _LiveCapture | None = None

    # --- plumbing -------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the pool, alone for this device; reset the session on error."""
        async with self._lock:
            return await self._in_pool(fn)

    async def _in_pool(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the pool (the lock held); reset the session on error."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn)
        except Exception as e:
            failure = classify(e)
            if failure.kind is FailureKind.PROTOCOL and not isinstance(e, DeviceFailure):
                defect = frame_defect(self._conn)
                if defect is not None:
                    failure = bad_reply(defect)
            await loop.run_in_executor(self._pool, self._drop)
            raise failure from e

    def _new_zk(self) -> ZK:
        ep = self.endpoint
        zk = ZK(ep.host, port=ep.port, timeout=self._timeout, password=ep.comm_key,
                force_udp=ep.transport == "udp", ommit_ping=True)
        _close_socket(zk)  # pyzk opens a UDP socket in __init__ and replaces it on connect
        address = (ep.host, ep.port)
        timeout = self._timeout

        def probe() -> int:  # pyzk's TCP probe, with our timeout instead of its 10 s
            try:
                with socket.create_connection(address, timeout=timeout):
                    return 0
            except OSError as e:
                return e.errno or 1

        zk.helper.test_tcp = probe
        return zk

    def _connect(self) -> Any:
        if self._conn is not None:
            return self._conn
        if not self._leftovers_loaded and self.endpoint.transport == "udp":
            # sessions an earlier run (killed, say) left open: they hold slots until said
            # goodbye to, and a terminal has only a few
            leftover = self._ledger("leftover")
            self._stale = [*((sid, 0) for sid in leftover or []), *self._stale][-MAX_STALE:]
        self._leftovers_loaded = True
        self._end_stale_sessions()
        zk = self._new_zk()
        try:
            conn = zk.connect()
        except Exception as e:
            _close_socket(zk)  # pyzk leaves it open after a failed connect
            defect = frame_defect(zk)
            if defect is not None:
                raise bad_reply(defect) from e
            raise
        self._end_stale_sessions()
        ended, self._stale = self._stale, []  # the link works: the goodbyes got through
        if ended:
            self._ledger("closed", [sid for sid, _reply in ended])
        if not conn.tcp:
            self._ledger("opened", conn._ZK__session_id)
        try:
            identity = Identity(
                serial=conn.get_serialnumber(),
                firmware=conn.get_firmware_version(),
                platform=conn.get_platform(),
                model=conn.get_device_name(),
                mac=conn.get_mac(),
            )
        except BaseException:
            _close_socket(conn)
            raise
        if identity.serial != self.endpoint.serial:
            _close_socket(conn)
            raise DeviceFailure(
                FailureKind.IDENTITY,
                f"serial {identity.serial!r} answers, not {self.endpoint.serial!r}",
            )
        self.identity = identity
        self._conn = conn
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            _close_socket(conn)
            session_id: int = getattr(conn, "_ZK__session_id", 0)
            if not conn.tcp and session_id:
                # a UDP session has no teardown but CMD_EXIT: unsaid, it holds one of the
                # terminal's few session slots until the terminal times it out
                stale = (conn._ZK__session_id, _next_reply_id(conn))
                self._stale = [*self._stale[-(MAX_STALE - 1):], stale]

    def _end_stale_sessions(self) -> None:
        """Say CMD_EXIT, without waiting for an answer, for UDP sessions dropped after an
        error (or left by an earlier run); see :func:`say_goodbye`."""
        say_goodbye(self.endpoint, self._stale)

    def _ledger(self, method: str, *args: Any) -> Any:
        """Call the session ledger, if any; never fails a device operation."""
        if self.sessions is None:
            return None
        try:
            return getattr(self.sessions, method)(*args)
        except Exception as e:
            log.warning("%s: could not note its UDP sessions (%s): %s",
                        self.endpoint.device_id, method, e)
            return None

    # --- operations -----------------------------------------------------

    async def check(self) -> Sizes:
        """Connect if needed (reading the identity), then read the counters.

        On an open session the counters are asked on the event loop
        (``zk_check.py``: no thread hop); opening one is pyzk's, in the pool.
        """

        def do() -> Sizes:
            return read_sizes_checked(self._connect())

        async with self._lock:
            conn = self._conn
            if conn is None:
                return await self._in_pool(do)
            try:
                return await check_open_session(conn, self._timeout)
            except BaseException as e:  # a cancel too: the session is mid-exchange
                self._drop()  # closing a socket does not block
                if isinstance(e, Exception):
                    raise classify(e) from e
                raise

    async def read_time(self) -> datetime:
        """The device clock: naive local time."""
        return await self._run(lambda: self._connect().get_time())

    async def read_attendance(self) -> AttendanceDump:
        """Every record, read with pyzk's buffered read and parsed here."""

        def do() -> AttendanceDump:
            conn = self._connect()
            if read_sizes_checked(conn).records == 0:
                return AttendanceDump([], [])
            sock = conn._ZK__sock  # pyzk keeps its socket private; bulk reads need a longer wait
            sock.settimeout(self._bulk_timeout)
            try:
                data, _size = conn.read_with_buffer(_ATTLOG_RRQ)
            finally:
                sock.settimeout(self._timeout)
            dump = parse_attendance(data, conn.records)
            self.record_size = dump.record_size
            return dump

        return await self._run(do)

    async def close(self) -> None:
        """Say goodbye and close; never raises. A live session says its own goodbye
        (unregister, CMD_EXIT) at its next tick: it is waited for, briefly."""
        live = self._live
        self.stop_live()

        def do() -> None:
            if live is not None:  # (every device's live thread was told at once: they end
                live.join(_LiveCapture.TICK_S + 3 * self._timeout)  # together, in a tick)
            self._end_stale_sessions()
            said = [sid for sid, _reply in self._stale]
            self._stale.clear()
            conn, self._conn = self._conn, None
            if conn is not None:
                session_id = conn._ZK__session_id
                try:
                    conn.disconnect()
                    if not conn.tcp:
                        said.append(session_id)
                except Exception:
                    if not conn.tcp:  # no answer to EXIT: once more, unanswered
                        say_goodbye(self.endpoint, [(session_id, _next_reply_id(conn))])
                _close_socket(conn)
            if said:
                self._ledger("closed", said)

        async with self._lock:
            await asyncio.get_running_loop().run_in_executor(self._pool, do)

    # --- commands -------------------------------------------------------

    async def restart(self) -> None:
        """Reboot the device; a timeout counts as done (some firmware does not ack)."""

        def do() -> None:
            conn = self._connect()
            try:
                conn.restart()
            except ZKNetworkError as e:
                if "timed out" not in str(e):
                    raise
            self._drop()

        await self._run(do)

    async def set_time(self, local: datetime) -> None:
        """Set the device clock."""
        await self._run(lambda: self._connect().set_time(local))

    async def set_enabled(self, enabled: bool) -> None:
        """Enable or disable the device."""

        def do() -> None:
            conn = self._connect()
            conn.enable_device() if enabled else conn.disable_device()

        await self._run(do)

    async def unlock(self, seconds: int) -> None:
        """Open the door relay for ``seconds``."""
        await self._run(lambda: self._connect().unlock(seconds))

    async def users(self) -> list[DeviceUser]:
        """Every enrolled user."""

        def do() -> list[DeviceUser]:
            conn = self._connect()
            users = [
                DeviceUser(u.uid, str(u.user_id), u.name, int(u.card), int(u.privilege),
                           u.password)
                for u in conn.get_users()
            ]
            if users:  # pyzk learns the record size from the user download
                self.user_record_size = 28 if conn.user_packet_size == 28 else 72
            return users

        return await self._run(do)

    async def put_user(self, user: DeviceUser) -> None:
        """Create or update a user by uid."""

        def do() -> None:
            self._connect().set_user(
                uid=user.uid, name=user.name, privilege=user.privilege,
                password=user.password, group_id="", user_id=user.user_id, card=user.card,
            )

        await self._run(do)

    async def delete_user(self, uid: int) -> None:
        """Delete a user by uid."""
        await self._run(lambda: self._connect().delete_user(uid=uid))

    async def set_option(self, key: str, value: str) -> None:
        """OPTIONS_WRQ ``key=value`` then REFRESHOPTION.

        pyzk 0.9 has no public call for it (only ``set_sdk_build_1``), so this
        uses its private command sender; pyzk is pinned, and a test covers it.
        """

        def do() -> None:
            conn = self._connect()
            send = conn._ZK__send_command
            reply = send(_OPTIONS_WRQ, f"{key}={value}".encode("ascii"))
            if not reply.get("status"):
                raise ZKErrorResponse(f"option {key} refused")
            send(_REFRESHOPTION)

        await self._run(do)

    async def clear_attendance(self) -> None:
        """Delete every attendance record (the engine checks they are stored first)."""
        await self._run(lambda: self._connect().clear_attendance())

    # --- live capture ---------------------------------------------------

    def start_live(self, on_punch: LiveCallback, on_error: Callable[[str], None],
                   on_registered: Callable[[], None] | None = None) -> None:
        """Deliver real-time punches through ``on_punch`` (on the calling loop);
        ``on_registered`` is called each time a live session has registered for events
        (at start and after every reconnect), before any punch it delivers."""
        if self._live is None:
            self._live = _LiveCapture(self, asyncio.get_running_loop(), on_punch, on_error,
                                      on_registered)
            self._live.start()

    def stop_live(self) -> None:
        """Stop real-time punches (the thread ends at its next tick)."""
        if self._live is not None:
            self._live.stop()
            self._live = None


class _LiveCapture(threading.Thread):
    """pyzk's live_capture on a second session, in its own thread, reconnecting on error."""

    TICK_S = 1.0

    def __init__(
        self,
        driver: ZkDriver,
        loop: asyncio.AbstractEventLoop,
        on_punch: LiveCallback,
        on_error: Callable[[str], None],
        on_registered: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name=f"live-{driver.endpoint.device_id}", daemon=True)
        self.driver = driver
        self.loop = loop
        self.on_punch = on_punch
        self.on_error = on_error
        self.on_registered = on_registered
        self._stop_flag = threading.Event()

    def stop(self) -> None:
        """Ask the thread to finish."""
        self._stop_flag.set()

    def run(self) -> None:
        backoff = 1.0
        driver = self.driver
        #: UDP sessions of this thread dropped after an error (see ZkDriver._drop)
        stale: list[tuple[int, int]] = []
        while not self._stop_flag.is_set():
            zk: Any = None
            conn: Any = None
            try:
                say_goodbye(driver.endpoint, stale)
                zk = driver._new_zk()
                conn = zk.connect()
                if stale:  # the link works: the goodbyes got through
                    say_goodbye(driver.endpoint, stale)
                    driver._ledger("closed", [sid for sid, _reply in stale])
                    stale.clear()
                if not conn.tcp:
                    driver._ledger("opened", conn._ZK__session_id)
                backoff = 1.0
                sock = _RecordingSocket(conn._ZK__sock)
                conn._ZK__sock = sock
                header = 16 if conn.tcp else 8  # TCP wrapper and packet header, or the header
                self._tell_registration(conn)
                for att in conn.live_capture(new_timeout=self.TICK_S):
                    if self._stop_flag.is_set():
                        conn.end_live_capture = True
                        continue
                    if att is None:
                        continue
                    raw = event_punch(att, sock.last_len - header)
                    self.loop.call_soon_threadsafe(self.on_punch, raw)
                session_id = conn._ZK__session_id
                try:
                    conn.disconnect()
                    if not conn.tcp:
                        driver._ledger("closed", [session_id])
                except Exception:
                    if not conn.tcp:  # unanswered: once more, and it stays written down
                        say_goodbye(driver.endpoint, [(session_id, _next_reply_id(conn))])
                conn = None
            except Exception as e:
                if conn is not None and not conn.tcp and conn._ZK__session_id:
                    stale = [*stale[-(MAX_STALE - 1):], (conn._ZK__session_id,
                                                         _next_reply_id(conn))]
                if not self._stop_flag.is_set():
                    with contextlib.suppress(RuntimeError):
                        self.loop.call_soon_threadsafe(self.on_error, classify(e).args[0])
                self._stop_flag.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                if zk is not None:
                    _close_socket(zk)
        say_goodbye(driver.endpoint, stale)  # stopping: they stay written down


    def _tell_registration(self, conn: Any) -> None:
        """Call ``on_registered`` as soon as the device has accepted the session's
        REG_EVENT: from then on every punch comes as an event, those before it only in
        the log. pyzk registers inside its generator, so its ``reg_event`` is wrapped."""
        register = conn.reg_event

        def reg_event(flags: int) -> None:
            register(flags)  # raises unless the device said ACK_OK
            if flags and self.on_registered is not None:
                self.loop.call_soon_threadsafe(self.on_registered)

        conn.reg_event = reg_event


#: EF_ATTLOG payload lengths of black-and-white terminals (numeric user id, then state
#: and verify type, as in their 16-byte records); TFT events (32, 36, 37, 52+ bytes) carry
#: a 24-byte user id, then verify type and state, as in their 40-byte records
BW_EVENT_LENGTHS = frozenset({10, 12, 14})


def event_punch(att: Any, payload_len: int) -> RawPunch:
    """A live event as a punch, its two code bytes read in the event's own layout.

    pyzk names the two bytes after the user id ``status`` and ``punch``
    whatever the layout, and the layout is told by the payload's length
    alone (pyzk chooses its parse by it): what the device sent says what the
    device is, so no event waits on a download to learn the record size.
    """
    if payload_len in BW_EVENT_LENGTHS:
        state, verify = att.status, att.punch
    else:
        state, verify = att.punch, att.status
    return RawPunch(str(att.user_id), att.timestamp, int(state), int(verify))


class _RecordingSocket:
    """A live session's socket as pyzk uses it, remembering the length of the last packet
    received (pyzk reads one event per ``recv`` and keeps no trace of its length)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.last_len = 0

    def recv(self, bufsize: int) -> bytes:
        """Receive, noting the length."""
        data = self._sock.recv(bufsize)
        self.last_len = len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _close_socket(conn: Any) -> None:
    """Close pyzk's socket whatever state the instance is in (pyzk leaks it on errors)."""
    sock = getattr(conn, "_ZK__sock", None)
    if sock is not None:
        with contextlib.suppress(Exception):
            sock.close()
    conn.is_connect = False
