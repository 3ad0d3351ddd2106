"""A small HTTP/1.1 keep-alive load client for benchmarks: C connections, each sending the same
POST body and reading the whole response before the next, for a fixed time. Loopback only."""

from __future__ import annotations

import socket
import threading
import time


def _read_response(sock: socket.socket, pending: bytes) -> bytes:
    """Read one response (headers + Content-Length body); return bytes left over."""
    buffer = pending
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"unexpected response: {head.splitlines()[0]!r}")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        rest += chunk
    return rest[length:]


def requests_per_second(
    port: int,
    body: bytes,
    *,
    seconds: float = 3.0,
    connections: int = 4,
    path: str = "/",
    host: str | None = None,
) -> float:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    counts = [0] * connections
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        # hypercorn closes a keep-alive connection after a number of requests: reconnect then.
        while time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                pending = b""
                try:
                    while time.monotonic() < deadline:
                        sock.sendall(request)
                        pending = _read_response(sock, pending)
                        counts[index] += 1
                except (ConnectionError, BrokenPipeError):
                    continue

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - start)
