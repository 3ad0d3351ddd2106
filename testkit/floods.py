"""Hostile RPC clients on raw sockets, for the abuse tests and the flood benchmark: WebSockets that
subscribe and never read, HTTP requests that announce a body and never send it, handshakes with
a chosen Origin or Host. Raw sockets, because well-behaved client libraries read what they get."""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import statistics
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from testkit.nodes import NodeProcess

CONNECT_TIMEOUT = 5.0


def connect(
    port: int, *, source: str = "127.0.0.1", receive_buffer: int | None = None
) -> socket.socket:
    """A TCP connection to the node on 127.0.0.1 from `source` (any 127.0.0.0/8 address is
    loopback on Linux, so one machine can play several client addresses). A small
    `receive_buffer`, set before connecting, keeps the kernel from absorbing what a client that
    never reads is sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(CONNECT_TIMEOUT)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        sock.close()
        raise
    return sock


def read_response_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and whatever body bytes came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def websocket_handshake(
    port: int,
    *,
    origin: str | None = None,
    host: str | None = None,
    source: str = "127.0.0.1",
    receive_buffer: int | None = None,
) -> tuple[socket.socket, int]:
    """Open a WebSocket on `/`; returns the socket and the handshake's HTTP status (101 when
    accepted)."""
    sock = connect(port, source=source, receive_buffer=receive_buffer)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET / HTTP/1.1",
        f"Host: {host or f'127.0.0.1:{port}'}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    # Byte by byte: the frames that follow an accepted handshake stay in the socket.
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise ConnectionError(f"closed before a response head: {head!r}")
        head += byte
    return sock, int(head.split(b" ", 2)[1])


def send_text(sock: socket.socket, text: str) -> None:
    """One masked text frame (clients must mask)."""
    payload = text.encode()
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(header + mask + masked)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One frame from the server (unmasked): its opcode and payload."""
    first, second = _read_exactly(sock, 2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", _read_exactly(sock, 2))
    elif size == 127:
        (size,) = struct.unpack("!Q", _read_exactly(sock, 8))
    return first & 0x0F, _read_exactly(sock, size)


def read_close_code(sock: socket.socket) -> tuple[int, str]:
    """Skip to the server's close frame: its code and reason."""
    while True:
        opcode, payload = read_frame(sock)
        if opcode == 0x8:
            (code,) = struct.unpack("!H", payload[:2])
            return code, payload[2:].decode(errors="replace")


def read_texts(sock: socket.socket, seconds: float) -> Iterator[dict[str, Any]]:
    """The JSON messages the server sends in the next `seconds`."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            opcode, payload = read_frame(sock)
        except (TimeoutError, ConnectionError):
            return
        if opcode == 0x1:
            message = json.loads(payload)
            yield from message if isinstance(message, list) else [message]


def subscribe_batch(count: int) -> str:
    calls = [
        {"jsonrpc": "2.0", "id": i, "method": "chain_subscribeNewHeads", "params": []}
        for i in range(count)
    ]
    return json.dumps(calls)


@contextmanager
def unread_subscriptions(
    port: int, *, sockets: int = 20, per_socket: int = 1000, source: str = "127.0.0.1"
) -> Iterator[list[socket.socket]]:
    """`sockets` WebSockets with `per_socket` head subscriptions each, whose clients never read
    a byte after the handshake (their receive buffers are kept small so that the server feels
    it at once)."""
    opened: list[socket.socket] = []
    try:
        for _ in range(sockets):
            sock, status = websocket_handshake(port, source=source, receive_buffer=4096)
            opened.append(sock)
            if status != 101:
                raise AssertionError(f"the WebSocket handshake was answered {status}")
            send_text(sock, subscribe_batch(per_socket))
        yield opened
    finally:
        for sock in opened:
            sock.close()


@contextmanager
def slow_bodies(
    port: int, *, count: int = 100, source: str = "127.0.0.2", declared: int = 100_000
) -> Iterator[list[socket.socket]]:
    """`count` HTTP requests that declare a `declared`-byte body and send none of it."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = connect(port, source=source)
            opened.append(sock)
            sock.sendall(
                (
                    "POST / HTTP/1.1\r\n"
                    f"Host: 127.0.0.1:{port}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {declared}\r\n\r\n"
                ).encode()
            )
        yield opened
    finally:
        for sock in opened:
            sock.close()


def http_request(
    port: int,
    method: str = "POST",
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    source: str = "127.0.0.1",
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: status, headers, body."""
    all_headers = {"Host": f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    if body or method == "POST":
        all_headers["Content-Length"] = str(len(body))
    head = f"{method} / HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items())
    with connect(port, source=source) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        status, response_headers, rest = read_response_head(sock)
        length = int(response_headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return status, response_headers, rest


def rpc_call(
    port: int, *, headers: dict[str, str] | None = None, source: str = "127.0.0.1"
) -> tuple[int, dict[str, str], bytes]:
    """`system_name` over HTTP on a fresh connection, with extra `headers`: status, headers,
    body."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return http_request(port, headers=all_headers, body=rpc_body("system_name"), source=source)


def rpc_body(method: str, *params: object) -> bytes:
    call = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    return json.dumps(call).encode()


@dataclass(frozen=True, slots=True)
class Intervals:
    """Gaps between consecutive blocks' timestamps (ms), as the chain recorded them."""

    gaps_ms: tuple[int, ...]
    first: int = 0
    """The number of the block the first gap starts at."""

    @property
    def median(self) -> float:
        return float(statistics.median(self.gaps_ms))

    @property
    def p95(self) -> float:
        ordered = sorted(self.gaps_ms)
        return float(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))])


def block_timestamps(node: NodeProcess, first: int, last: int) -> list[int]:
    stamps = []
    for number in range(first, last + 1):
        block_hash = node.call("chain_getBlockHash", number)
        stamps.append(int(node.call("chain_getHeader", block_hash)["timestamp"]))
    return stamps


def authoring_intervals(node: NodeProcess, seconds: float) -> Intervals:
    """The intervals of the blocks the node authors during the next `seconds`."""
    first = max(1, node.best_number())
    time.sleep(seconds)
    last = node.best_number()
    stamps = block_timestamps(node, first, last)
    return Intervals(tuple(b - a for a, b in itertools.pairwise(stamps)), first)
