"""The DNS server over TCP (RFC 7766), on the same port as over UDP and with the same query size
limit: each message behind a 2-byte length, several queries per connection answered in order.

No client can hold the server: at most `MAX_CONNECTIONS` are open, and a new one closes the one
quiet the longest; a connection is closed after `IDLE_SECONDS` without a query, when a query's
bytes take longer than `MESSAGE_SECONDS` to arrive once it has begun, when its answer cannot be
sent within `SEND_SECONDS`, and at once for a length beyond `MAX_QUERY_BYTES` or a message that
gets no answer."""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass, field

import trio
from trio.socket import SocketType

from orchestrator.dns import MAX_QUERY_BYTES, ZoneServer, bind_udp
from orchestrator.errors import OrchestratorError

log = logging.getLogger("statemesh.dns")

MAX_CONNECTIONS = 64
IDLE_SECONDS = 10.0
"""RFC 7766 section 6.2.3 asks for seconds, not minutes, when connections are many."""
MESSAGE_SECONDS = 5.0
SEND_SECONDS = 5.0
RECEIVE_CHUNK = 4096
"""Bytes read at a time: what a connection buffers is at most this beyond one query."""
ACCEPT_RETRY_SECONDS = 0.1
"""The pause after a failed accept (out of descriptors), so the loop does not spin."""
BACKLOG = 64
BIND_ATTEMPTS = 16
"""For port 0: the UDP port the kernel chose may be taken over TCP; another is tried."""


@dataclass(slots=True)
class TcpStatistics:
    accepted: int = 0
    evicted: int = 0
    """Connections closed to make room for a new one."""
    timed_out: int = 0
    """Idle, slow to send a query, or slow to read an answer."""
    refused_length: int = 0
    """Connections closed for announcing a message of 0 or more than MAX_QUERY_BYTES bytes."""


@dataclass(slots=True, eq=False)
class _Connection:
    scope: trio.CancelScope
    last_active: float


@dataclass(slots=True)
class DnsTcpServer:
    """Serves `zone` on a TCP listener."""

    zone: ZoneServer
    max_connections: int = MAX_CONNECTIONS
    idle_seconds: float = IDLE_SECONDS
    message_seconds: float = MESSAGE_SECONDS
    send_seconds: float = SEND_SECONDS
    statistics: TcpStatistics = field(default_factory=TcpStatistics)
    _open: list[_Connection] = field(default_factory=list)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def serve(self, listener: trio.SocketListener) -> None:
        """Accept and answer connections on `listener` until cancelled."""
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    log.debug("dns: accepting a TCP connection failed: %s", exc)
                    await trio.sleep(ACCEPT_RETRY_SECONDS)
                    continue
                self.statistics.accepted += 1
                if len(self._open) >= self.max_connections:
                    quietest = min(self._open, key=lambda c: c.last_active)
                    self._open.remove(quietest)
                    quietest.scope.cancel()
                    self.statistics.evicted += 1
                connection = _Connection(trio.CancelScope(), trio.current_time())
                self._open.append(connection)
                nursery.start_soon(self._serve_connection, stream, connection)

    async def _serve_connection(self, stream: trio.SocketStream, connection: _Connection) -> None:
        try:
            with connection.scope:
                async with stream:
                    await self._exchange(stream, connection)
        except trio.BrokenResourceError as exc:
            log.debug("dns: a TCP connection broke: %s", exc)  # the client went away
        finally:
            if connection in self._open:
                self._open.remove(connection)

    async def _exchange(self, stream: trio.SocketStream, connection: _Connection) -> None:
        """Answer the connection's queries in order until it ends or breaks a limit."""
        buffer = bytearray()
        while True:
            with trio.move_on_after(self.idle_seconds) as idle:
                still_open = await _fill(stream, buffer, 1)
            if idle.cancelled_caught:
                self.statistics.timed_out += 1
                return
            if not still_open:
                return
            with trio.move_on_after(self.message_seconds) as waiting:
                whole = await _fill(stream, buffer, 2)
                length = int.from_bytes(buffer[:2], "big") if whole else 0
                if whole and not 0 < length <= MAX_QUERY_BYTES:
                    self.statistics.refused_length += 1
                    return
                whole = whole and await _fill(stream, buffer, 2 + length)
            if waiting.cancelled_caught:
                self.statistics.timed_out += 1
                return
            if not whole:
                return  # closed in the middle of a message
            query = bytes(buffer[2 : 2 + length])
            del buffer[: 2 + length]
            reply = self.zone.reply_to(query, tcp=True)
            if reply is None:
                return
            with trio.move_on_after(self.send_seconds) as sending:
                await stream.send_all(len(reply).to_bytes(2, "big") + reply)
            if sending.cancelled_caught:
                self.statistics.timed_out += 1
                return
            connection.last_active = trio.current_time()


async def _fill(stream: trio.SocketStream, buffer: bytearray, size: int) -> bool:
    """Read from `stream` until `buffer` holds `size` bytes; False if the stream ended first."""
    while len(buffer) < size:
        try:
            data = await stream.receive_some(RECEIVE_CHUNK)
        except trio.BrokenResourceError:
            return False
        if not data:
            return False
        buffer += data
    return True


@dataclass(frozen=True, slots=True)
class DnsSockets:
    udp: SocketType
    tcp: trio.SocketListener

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.udp.getsockname()[:2]
        return host, port

    def close(self) -> None:
        self.udp.close()
        self.tcp.socket.close()


class DnsPortUnavailable(OrchestratorError):
    """The DNS port cannot be bound over `transport` ("udp" or "tcp")."""

    def __init__(self, transport: str, strerror: str) -> None:
        super().__init__(f"{transport}: {strerror}")
        self.transport = transport
        self.strerror = strerror


async def bind_dns(host: str, port: int) -> DnsSockets:
    """A UDP socket and a TCP listener bound to the same host:port (0: any port free for both).
    Raises `DnsPortUnavailable` naming the transport that could not be bound."""
    attempt = 1
    while True:
        try:
            udp = await bind_udp(host, port)
        except OSError as exc:
            raise DnsPortUnavailable("udp", exc.strerror or str(exc)) from None
        try:
            tcp = await _bind_tcp(host, udp.getsockname()[1])
        except OSError as exc:
            udp.close()
            if port == 0 and exc.errno == errno.EADDRINUSE and attempt < BIND_ATTEMPTS:
                attempt += 1
                continue
            raise DnsPortUnavailable("tcp", exc.strerror or str(exc)) from None
        return DnsSockets(udp, tcp)


async def _bind_tcp(host: str, port: int) -> trio.SocketListener:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        # A restarted node takes its port back while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind((host, port))
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)
