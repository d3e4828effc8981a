"""The liveness check on the event loop: one GET_FREE_SIZES on pyzk's open session.

At 2,000 devices checked every 4 s the engine makes 500 checks a second.
Through the thread pool each costs a hop out and back and a fight for the
GIL among the pool's workers; the profile showed that, not the wire, to be
most of the engine's CPU. So a check on a session that is already open is
sent and read here, on the loop, with the packets of ``zk_wire`` and the
same trust rules as pyzk's path (:func:`zk_wire.sizes_reply`).

pyzk still owns the session: it opens it (connect, comm key, identity) and
does everything else on it. This borrows its socket between pyzk's calls,
under the driver's per-device lock (one operation at a time per device),
and gives it back as pyzk would have left it: blocking with its timeout,
the reply id advanced. After any error the driver drops the session, as
after one of pyzk's.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from fleettui.devices.base import Sizes
from fleettui.devices.zk_wire import (
    CMD_GET_FREE_SIZES,
    REPLY_ID_WRAP,
    bad_reply,
    packet,
    sizes_reply,
    tcp_frame,
    tcp_length,
)

#: the largest TCP frame a sizes reply may announce (pyzk reads at most 1,024 data bytes)
MAX_INNER = 1024 + 8
#: a UDP datagram is read whole or not at all: room for more than any reply to this
UDP_READ = 2048


async def check_open_session(conn: Any, timeout_s: float) -> Sizes:
    """The device's counters, asked on pyzk's open session ``conn`` without a thread.

    Raises DeviceFailure for a reply that cannot be trusted (a frame cut
    short is ``truncated`` once the timeout has passed without the rest),
    TimeoutError when nothing came, OSError when the link broke.
    """
    sock: socket.socket = conn._ZK__sock
    session_id: int = conn._ZK__session_id
    sent = (conn._ZK__reply_id + 1) % REPLY_ID_WRAP
    request = packet(CMD_GET_FREE_SIZES, session_id, sent)
    loop = asyncio.get_running_loop()
    pyzk_timeout = sock.gettimeout()
    sock.settimeout(0)  # the loop's selector waits, never the socket
    try:
        if conn.tcp:
            reply = await _tcp_exchange(loop, sock, tcp_frame(request), timeout_s)
        else:
            async with asyncio.timeout(timeout_s):
                await loop.sock_sendto(sock, request, conn._ZK__address)
                reply = await loop.sock_recv(sock, UDP_READ)
    finally:
        sock.settimeout(pyzk_timeout)
    sizes = sizes_reply(reply, sent, session_id)
    conn._ZK__reply_id = sent  # what pyzk takes from the reply it accepted
    return sizes


async def _tcp_exchange(loop: asyncio.AbstractEventLoop, sock: socket.socket, frame: bytes,
                        timeout_s: float) -> bytes:
    """Send one framed request and read the whole framed reply; its inner packet.

    A stream may bring a frame in pieces, so this reads until the length the
    wrapper announces has come; what is still missing at the timeout makes
    the reply ``truncated`` (nothing at all is a timeout).
    """
    got = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            await loop.sock_sendall(sock, frame)
            while True:
                chunk = await loop.sock_recv(sock, MAX_INNER + 8 - len(got))
                if not chunk:
                    raise ConnectionResetError("the device closed the session")
                got += chunk
                if len(got) < 8:
                    continue
                length = tcp_length(bytes(got[:8]))
                if length is None:
                    raise bad_reply("not a ZK frame (no TCP magic)")
                if length > MAX_INNER:
                    raise bad_reply(f"oversized frame ({length} bytes announced)")
                if len(got) - 8 > length:
                    raise bad_reply("stale (the answer to another request came first)")
                if len(got) - 8 == length:
                    return bytes(got[8:])
    except TimeoutError:
        if got:
            raise bad_reply("truncated") from None
        raise
