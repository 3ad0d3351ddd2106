"""Serving any ASGI app with hypercorn's trio worker on one address, the way the RPC server is
served (so a benchmark can put a bare app on exactly the same stack), plus the ASGI lifespan."""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio import serve

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework

    # trio-typing's stubs (a libp2p dependency) shadow trio's own types and keep TaskStatus here.
    from trio_typing import TaskStatus

AsgiScope = dict[str, Any]
AsgiMessage = dict[str, Any]
AsgiReceive = Callable[[], Awaitable[AsgiMessage]]
AsgiSend = Callable[[AsgiMessage], Awaitable[None]]
AsgiApp = Callable[[AsgiScope, AsgiReceive, AsgiSend], Awaitable[None]]

# Idle HTTP keep-alive connections are closed after this; WebSockets are never idle-closed
# (hypercorn stops the idle timer once a socket is upgraded).
KEEP_ALIVE_SECONDS = 30.0
# Quiet connections are probed by the kernel (TCP keep-alive) rather than with WebSocket
# pings: the probes keep NAT mappings alive and close a connection whose peer vanished
# (about IDLE + INTERVAL * COUNT seconds), which hypercorn's pings never do. hypercorn also
# sends its first ping the moment a socket is accepted, and a client that closes right after
# its first answer (trio-websocket, for one) then fails answering that ping while closing.
TCP_KEEPALIVE_IDLE_SECONDS = 30
TCP_KEEPALIVE_INTERVAL_SECONDS = 10
TCP_KEEPALIVE_COUNT = 3
DEFAULT_MAX_WEBSOCKET_MESSAGE = 16 * 1024 * 1024


class ServerAddress(NamedTuple):
    """Where a server listens, as bound (port 0 asks the system for a free one); unpacks as
    `host, port` like a socket address."""

    host: str
    port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.netloc}/"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.netloc}/"


def hypercorn_config(
    host: str,
    port: int,
    *,
    max_websocket_message: int = DEFAULT_MAX_WEBSOCKET_MESSAGE,
    keep_alive_timeout: float = KEEP_ALIVE_SECONDS,
) -> Config:
    config = _KeepAliveConfig()
    config.bind = [ServerAddress(host, port).netloc]
    config.accesslog = None  # one line per request is noise at RPC rates
    config.errorlog = logging.getLogger("node.rpc.hypercorn")
    config.keep_alive_timeout = keep_alive_timeout
    # hypercorn closes a keep-alive connection after 1,000 requests by default; clients that
    # keep one connection open (wallets, indexers, benchmarks) should not pay a reconnect,
    # and that close path races with the response being sent in the trio worker.
    config.keep_alive_max_requests = 1_000_000
    config.websocket_ping_interval = None
    config.websocket_max_message_size = max_websocket_message
    config.include_server_header = False
    return config


class _KeepAliveConfig(Config):
    """hypercorn's configuration whose listening sockets carry TCP keep-alive; Linux passes
    the options on to every socket they accept."""

    def create_sockets(self) -> Sockets:
        sockets = super().create_sockets()
        for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                _set_keepalive(sock)
        return sockets


def _set_keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, TCP_KEEPALIVE_IDLE_SECONDS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, TCP_KEEPALIVE_INTERVAL_SECONDS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, TCP_KEEPALIVE_COUNT)


def _parse_bind(bind: str) -> ServerAddress:
    # hypercorn reports binds as "http://127.0.0.1:9944" or "http://[::1]:9944".
    netloc = bind.split("://", 1)[-1]
    host, _, port = netloc.rpartition(":")
    return ServerAddress(host.strip("[]"), int(port))


async def serve_asgi(
    app: AsgiApp,
    host: str,
    port: int,
    *,
    max_websocket_message: int = DEFAULT_MAX_WEBSOCKET_MESSAGE,
    keep_alive_timeout: float = KEEP_ALIVE_SECONDS,
    task_status: TaskStatus[ServerAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on host:port until cancelled; `task_status` gets the bound address. The
    ASGI lifespan is answered here: apps see only `http` and `websocket` scopes.

    WebSocket messages above `max_websocket_message` are refused by hypercorn itself (close
    1009, nothing else), so an app that wants to answer oversize messages sets it above its own
    limit."""
    config = hypercorn_config(
        host,
        port,
        max_websocket_message=max_websocket_message,
        keep_alive_timeout=keep_alive_timeout,
    )
    async with trio.open_nursery() as nursery:
        # The same callable; hypercorn merely types its messages more narrowly.
        framework = cast("ASGIFramework", partial(_without_lifespan, app))
        binds: list[str] = await nursery.start(partial(serve, framework, config, mode="asgi"))
        task_status.started(_parse_bind(binds[0]))


async def _without_lifespan(
    app: AsgiApp, scope: AsgiScope, receive: AsgiReceive, send: AsgiSend
) -> None:
    if scope["type"] == "lifespan":
        await _serve_lifespan(receive, send)
    else:
        await app(scope, receive, send)


async def _serve_lifespan(receive: AsgiReceive, send: AsgiSend) -> None:
    """Answer hypercorn's lifespan protocol: nothing to set up or tear down at this level."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def send_plain(
    send: AsgiSend, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A short plain-text answer (an error, mostly), never sniffed as anything else."""
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
