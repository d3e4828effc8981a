"""The network side of one emulated terminal: a TCP listener and a UDP socket on one port.

Like a real terminal, a ``DeviceServer`` answers on TCP and UDP at the same
address and port (4370 by default). It frames and unframes packets, keeps one
session per TCP connection or per UDP session id, pushes real-time events to
the sessions that registered for them, and applies the device's faults to
everything that crosses the wire.

Second and further sessions: a real terminal serves several clients at once
(the 2006 protocol manual sends events "to all connections" that registered
them). The emulator does the same, up to ``Profile.max_sessions`` sessions;
a CONNECT beyond that is answered ACK_ERROR and, on TCP, the connection is
closed. Commands from different sessions are handled one at a time (the
firmware is single-threaded), and device state such as disabled/enabled is
shared by every session. A UDP session that neither exits nor sends anything
for ``udp_idle_s`` is forgotten, as terminals time idle UDP clients out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from abc import ABC, abstractmethod

from fleettui.emulator.device import Device, Punch
from fleettui.emulator.protocol import (
    TCP_MAX_DATA,
    UDP_MAX_DATA,
    Cmd,
    EventFlag,
    FramingError,
    Reply,
    TcpDeframer,
    build_packet,
    parse_packet,
    wrap_tcp,
)
from fleettui.emulator.session import After, Session

log = logging.getLogger(__name__)

#: how long the device waits for a client's ACK of a real-time event
EVENT_ACK_TIMEOUT_S = 1.0
#: how often a stalled TCP connection looks whether the link is back
LINK_POLL_S = 0.05
#: event loop turns a refused CONNECT waits for woken connections to finish
SETTLE_YIELDS = 50


class Link(ABC):
    """One client's path to the device: a TCP connection or a UDP session's address."""

    udp: bool = False
    max_data: int = TCP_MAX_DATA

    def __init__(self, server: DeviceServer) -> None:
        self.server = server
        self.session: Session | None = None
        self.send_lock = asyncio.Lock()
        self.event_ack = asyncio.Event()
        self.events: asyncio.Queue[bytes] = asyncio.Queue()
        self._event_task: asyncio.Task[None] | None = None
        self.closed = False

    @abstractmethod
    async def send(self, inner: bytes) -> None:
        """Send one inner packet as one frame or datagram, faults applied."""

    @abstractmethod
    def close(self) -> None:
        """End this link (the session goes with it)."""

    def _mangle(self, frame: bytes) -> bytes | None:
        """Apply the garbage/truncate faults to an outgoing frame."""
        faults = self.server.device.faults
        if faults.garbage:
            return self.server.rng.randbytes(len(frame))
        if faults.truncate:
            return frame[: max(1, len(frame) // 2)]
        return frame

    def start_events(self) -> None:
        """Start pushing real-time events to this link (once registered)."""
        if self._event_task is None:
            self._event_task = asyncio.get_running_loop().create_task(self._push_events())

    def stop_events(self) -> None:
        """Stop the event pusher."""
        if self._event_task is not None:
            self._event_task.cancel()
            self._event_task = None

    async def _push_events(self) -> None:
        device = self.server.device
        while not self.closed:
            payload = await self.events.get()
            if not device.reachable() or self.session is None:
                continue  # the event is lost; the record stays in the log
            if device.faults.latency_ms:
                await asyncio.sleep(device.faults.latency_ms / 1000.0)
            async with self.send_lock:
                self.event_ack.clear()
                # one event per frame: pyzk parses one recv() as one event
                await self.send(build_packet(Cmd.REG_EVENT, EventFlag.ATTLOG, 0, payload))
                with contextlib.suppress(TimeoutError):  # (wait_for may swallow a cancel)
                    async with asyncio.timeout(EVENT_ACK_TIMEOUT_S):
                        await self.event_ack.wait()


class TcpLink(Link):
    """A TCP connection; the session lives as long as the connection."""

    def __init__(self, server: DeviceServer, writer: asyncio.StreamWriter) -> None:
        super().__init__(server)
        self.writer = writer

    async def send(self, inner: bytes) -> None:
        frame = self._mangle(wrap_tcp(inner))
        if frame is None or self.closed or self.writer.is_closing():
            return
        self.server.device.stats["bytes_out"] += len(frame)
        self.writer.write(frame)
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    def close(self) -> None:
        self.closed = True
        self.stop_events()
        with contextlib.suppress(Exception):
            self.writer.close()

    def abort(self) -> None:
        """Drop the connection without a goodbye (reboot, power cut)."""
        self.closed = True
        self.stop_events()
        transport = self.writer.transport
        with contextlib.suppress(Exception):
            transport.abort()


class UdpLink(Link):
    """A UDP session: replies go to the address the client last wrote from."""

    udp = True
    max_data = UDP_MAX_DATA

    def __init__(self, server: DeviceServer, addr: tuple[str, int]) -> None:
        super().__init__(server)
        self.addr = addr
        self.last_seen = server.device.clock()
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        while not self.closed:
            inner = await self.queue.get()
            await self.server.serve(self, inner)

    async def send(self, inner: bytes) -> None:
        srv = self.server
        if srv.udp_transport is None or self.closed:
            return
        if srv.device.faults.udp_loss and srv.rng.random() < srv.device.faults.udp_loss:
            return
        frame = self._mangle(inner)
        if frame is not None:
            srv.device.stats["bytes_out"] += len(frame)
            srv.udp_transport.sendto(frame, self.addr)

    def close(self) -> None:
        self.closed = True
        self.stop_events()
        self.task.cancel()
        if self.session is not None:
            self.server.forget(self.session)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DeviceServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP errors from a gone client
        log.debug("udp error on %s: %s", self.server.device.id, exc)


class DeviceServer:
    """Serves one Device on TCP and UDP at ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self,
        device: Device,
        *,
        rng: random.Random | None = None,
        udp_idle_s: float = 120.0,
        strict_checksums: bool = False,
    ) -> None:
        self.device = device
        self.host = device.config.host
        self.port = device.config.port
        self.rng = rng or random.Random()
        self.udp_idle_s = udp_idle_s
        self.strict_checksums = strict_checksums
        self.sessions: dict[int, Session] = {}
        self.links: set[Link] = set()
        self.udp_links: dict[int, UdpLink] = {}
        self.udp_transport: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._stalled = 0
        self._wake = asyncio.Event()
        device.punch_listeners.append(self._on_punch)
        device.drop_listeners.append(self._drop_all)

    # --- lifecycle ------------------------------------------------------

    @property
    def listening(self) -> bool:
        """Whether the TCP and UDP sockets are open (False while refusing)."""
        return self._tcp_server is not None

    async def start(self) -> None:
        """Open the sockets; with port 0, both share one free port."""
        # (decided before the first try: a try writes the port it got into the config,
        # which made the retry below think a fixed port had been asked for, and a UDP
        # twin already taken failed the test that started it, once in a few CI runs)
        any_port = self.device.config.port == 0
        for _attempt in range(20):
            try:
                await self._open()
                return
            except OSError:
                if not any_port or self.port == 0:
                    raise
                await self._close_listeners()
                self.port = self.device.config.port = 0  # the UDP twin was taken: another
        raise OSError(f"no free TCP+UDP port pair on {self.host}")

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self._tcp_server = await asyncio.start_server(
            self._on_tcp, self.host, self.port, reuse_address=True, backlog=256
        )
        sock = self._tcp_server.sockets[0]
        self.port = sock.getsockname()[1]
        self.device.config.port = self.port
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(self.host, self.port)
        )
        self.udp_transport = transport

    async def _close_listeners(self) -> None:
        if self._tcp_server is not None:
            self._tcp_server.close()
            self._tcp_server = None
        if self.udp_transport is not None:
            self.udp_transport.close()
            self.udp_transport = None

    async def stop(self) -> None:
        """Close the sockets and drop every client."""
        self._drop_all()
        await self._close_listeners()

    async def sync_listeners(self) -> None:
        """Close or reopen the sockets to match the ``refuse`` fault."""
        if self.device.faults.refuse and self.listening:
            self._drop_all()
            await self._close_listeners()
        elif not self.device.faults.refuse and not self.listening:
            await self._open()

    def _drop_all(self) -> None:
        for link in list(self.links):
            if isinstance(link, TcpLink):
                link.abort()
            else:
                link.close()
        self.links.clear()
        self.udp_links.clear()
        self.sessions.clear()

    # --- sessions -------------------------------------------------------

    def _new_session(self, link: Link) -> Session | None:
        self._reap_idle_udp()
        if len(self.sessions) >= self.device.profile.max_sessions:
            return None
        while True:
            sid = self.rng.randint(1, 0xFFFF)
            if sid not in self.sessions:
                break
        session = Session(self.device, sid, max_data=link.max_data, udp=link.udp)
        self.sessions[sid] = session
        self.device.stats["sessions"] += 1
        link.session = session
        return session

    def forget(self, session: Session) -> None:
        """A session ended: free its slot; re-enable a device left disabled."""
        self.sessions.pop(session.session_id, None)
        self.udp_links.pop(session.session_id, None)
        if (
            not self.sessions
            and not self.device.enabled
            and self.device.profile.reenable_on_close
        ):
            self.device.enabled = True

    def _reap_idle_udp(self) -> None:
        now = self.device.clock()
        for sid, link in list(self.udp_links.items()):
            if now - link.last_seen > self.udp_idle_s:
                link.close()
                self.links.discard(link)
                self.udp_links.pop(sid, None)

    # --- serving --------------------------------------------------------

    async def wait_reachable(self, link: Link) -> None:
        """Return once the device is reachable again (power on, link up), or ``link`` closed.

        Used for TCP, where a connection outlives a short outage: the client's
        stack retransmits, so bytes sent while the link is down arrive (and are
        answered) late rather than never. Datagrams are simply lost instead.
        """
        self._stalled += 1
        try:
            while not self.device.reachable() and not link.closed:
                wake = self._wake
                with contextlib.suppress(TimeoutError):  # (wait_for may swallow a cancel)
                    async with asyncio.timeout(LINK_POLL_S):
                        await wake.wait()
        finally:
            self._stalled -= 1

    def _poke(self) -> None:
        """Traffic got through: wake every stalled connection to look at the link now.

        Without this a stalled connection would only notice the link is back at its
        next poll, and could hold a session slot meanwhile.
        """
        if self._stalled:
            self._wake.set()
            self._wake = asyncio.Event()

    async def _settle(self) -> None:
        """Let woken connections deliver what they held (and their goodbyes) first."""
        for _ in range(SETTLE_YIELDS):
            if not self._stalled:
                return
            await asyncio.sleep(0)

    async def serve(self, link: Link, inner: bytes) -> None:
        """Handle one request packet that arrived on ``link``."""
        device = self.device
        if not device.reachable():
            if link.udp:
                return
            await self.wait_reachable(link)
            if link.closed:
                return
        try:
            pkt = parse_packet(inner)
        except FramingError:
            return
        if not pkt.checksum_ok:
            device.stats["bad_checksums"] += 1
            if self.strict_checksums:
                return
        if pkt.code == Reply.ACK_OK:
            link.event_ack.set()
            return
        session = link.session
        if session is None:
            if pkt.code != Cmd.CONNECT:
                await link.send(build_packet(Reply.ACK_UNAUTH, 0, pkt.reply_id))
                return
            if len(self.sessions) >= device.profile.max_sessions and self._stalled:
                # sessions of clients that left during an outage free their slots as soon
                # as their held bytes (and goodbyes) are read: let that happen first
                self._poke()
                await self._settle()
            session = self._new_session(link)
            if session is None:  # too many sessions: refuse this one
                await link.send(build_packet(Reply.ACK_ERROR, 0, pkt.reply_id))
                link.close()
                self.links.discard(link)
                return
            if isinstance(link, UdpLink):
                self.udp_links[session.session_id] = link
        outcome = session.handle(pkt)
        if outcome is None:
            return
        faults = device.faults
        delay = (faults.reply_delay_ms + faults.latency_ms) / 1000.0
        if delay:
            await asyncio.sleep(delay)
        async with link.send_lock:
            for code, data in outcome.packets:
                if not device.reachable():
                    if link.udp:
                        return  # the link went down in the middle of the reply
                    await self.wait_reachable(link)
                    if link.closed:
                        return
                await link.send(build_packet(code, session.session_id, pkt.reply_id, data))
                if code == Cmd.DATA and faults.throughput_kbps:
                    await asyncio.sleep(len(data) / (faults.throughput_kbps * 1024.0))
        if pkt.code == Cmd.REG_EVENT and session.event_flags:
            link.start_events()
        if outcome.after is After.CLOSE:
            link.close()
            self.links.discard(link)
            self.forget(session)
        elif outcome.after is After.RESTART:
            device.restart()
        elif outcome.after is After.POWEROFF:
            device.power_off()

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = TcpLink(self, writer)
        self.links.add(link)
        if self.device.reachable():
            self._poke()
        else:
            # On a real network the SYN of a connection made while the link is down never
            # reaches the device; only loopback completes the handshake. Such a connection
            # must not surface later as a session: drop it once the link is back.
            with contextlib.suppress(asyncio.CancelledError):  # shutting down meanwhile
                await self.wait_reachable(link)
            link.abort()
            self.links.discard(link)
            return
        await self._serve_tcp(link, reader)

    async def _serve_tcp(self, link: TcpLink, reader: asyncio.StreamReader) -> None:
        """Read and answer a TCP connection's requests until it ends.

        A cancelled handler ends quietly: on Python 3.11 the stream server's done
        callback calls ``exception()`` on a cancelled handler task, which raises, and
        asyncio logs "Exception in callback ... CancelledError" at every shutdown
        that found a connection waiting (as Ctrl+C on ``fleettui emulate`` did).
        """
        deframer = TcpDeframer()
        try:
            while not link.closed:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                self.device.stats["bytes_in"] += len(chunk)
                if not self.device.reachable():
                    await self.wait_reachable(link)  # in flight until the link is back
                    if link.closed:
                        break
                else:
                    self._poke()
                try:
                    packets = deframer.feed(chunk)
                except FramingError as e:
                    log.debug("%s: dropping connection: %s", self.device.id, e)
                    break
                for inner in packets:
                    await self.serve(link, inner)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # shutting down: end the handler quietly (asyncio logs cancelled handlers)
        finally:
            link.close()
            self.links.discard(link)
            if link.session is not None:
                self.forget(link.session)

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """Route one incoming UDP datagram to its session."""
        device = self.device
        if not device.reachable():
            return
        if device.faults.udp_loss and self.rng.random() < device.faults.udp_loss:
            return
        if len(data) < 8:
            return
        self._poke()
        device.stats["bytes_in"] += len(data)
        code, _chk, sid, reply_id = struct.unpack_from("<4H", data)
        if code == Cmd.CONNECT:
            link = UdpLink(self, addr)
            self.links.add(link)
        else:
            found = self.udp_links.get(sid)
            if found is None:
                if code != Reply.ACK_OK and self.udp_transport is not None:
                    # no such session (expired, or the device rebooted): not connected
                    reply = build_packet(Reply.ACK_UNAUTH, 0, reply_id)
                    self.udp_transport.sendto(reply, addr)
                return
            link = found
        link.addr = addr
        link.last_seen = device.clock()
        link.queue.put_nowait(bytes(data))

    # --- events ---------------------------------------------------------

    def _on_punch(self, punch: Punch) -> None:
        payload = self.device.realtime_payload(punch)
        for link in self.links:
            if link.session is not None and link.session.wants(EventFlag.ATTLOG):
                link.events.put_nowait(payload)

