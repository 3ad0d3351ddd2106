"""The Prometheus exporter: `GET /metrics` on its own port (Substrate's 9615), served by
hypercorn's trio worker like the RPC. Nothing else is answered, no request body is read, and
scrapes beyond a few at once are turned away rather than queued.

An answer is built on a worker thread: at a thousand apps it takes a large part of a second of
pure Python, which on the node's loop would hold up authoring, import and the RPC. The
collectors only read (counters, sizes, the store), and a read that meets a dict changing under
it is simply taken again."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client import CollectorRegistry, generate_latest

from node.errors import NodeError
from node.metrics import NodeMetrics
from node.rpc.serving import (
    AsgiReceive,
    AsgiScope,
    AsgiSend,
    ServerAddress,
    send_plain,
    serve_asgi,
)

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("statemesh.metrics")

DEFAULT_PROMETHEUS_PORT = 9615
METRICS_PATH = "/metrics"
MAX_CONCURRENT_SCRAPES = 2
"""Scrapes answered at once; more get 503 at once (each takes a worker thread and CPU)."""
BUILD_ATTEMPTS = 3
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
"""The text format every Prometheus reads (our names and labels need nothing newer)."""
KEEP_ALIVE_SECONDS = 10.0
"""Prometheus keeps its connection between scrapes (every 15 s by default it reconnects)."""


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    host: str = "127.0.0.1"
    """127.0.0.1, or 0.0.0.0 with `--prometheus-external`."""
    port: int = DEFAULT_PROMETHEUS_PORT
    """0 picks a free port."""


class MetricsApp:
    """The ASGI app of the exporter."""

    def __init__(self, metrics: NodeMetrics, *, max_concurrent: int = MAX_CONCURRENT_SCRAPES):
        self._metrics = metrics
        self._slots = trio.Semaphore(max_concurrent)
        self.scrapes = 0
        self.refused = 0

    async def __call__(self, scope: AsgiScope, receive: AsgiReceive, send: AsgiSend) -> None:
        if scope["type"] != "http":
            # A WebSocket: refused before it is accepted (hypercorn answers 403).
            await send({"type": "websocket.close", "code": 1008})
            return
        method, path = scope["method"], scope["path"]
        if path != METRICS_PATH:
            await send_plain(send, 404, f"not found: metrics are served on {METRICS_PATH}\n")
            return
        if method not in ("GET", "HEAD"):
            await send_plain(send, 405, "GET only\n", [(b"allow", b"GET, HEAD")])
            return
        if _has_body(scope["headers"]):
            # Never read: a client that announces a body would make the exporter wait for it.
            await send_plain(send, 413, "a scrape carries no body\n")
            return
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            self.refused += 1
            await send_plain(send, 503, "too many scrapes at once\n", [(b"retry-after", b"1")])
            return
        try:
            self._metrics.read_on_loop()
            body = await trio.to_thread.run_sync(_build, self._metrics.registry)
            self.scrapes += 1
        finally:
            self._slots.release()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", CONTENT_TYPE),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


def _build(registry: CollectorRegistry) -> bytes:
    """The exposition text, read again if a collector met a dict that the node's loop changed
    while it was read."""
    for _ in range(BUILD_ATTEMPTS - 1):
        with contextlib.suppress(RuntimeError):
            return generate_latest(registry)
    return generate_latest(registry)


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            return True
        if lowered == b"content-length" and value.strip() not in (b"", b"0"):
            return True
    return False


class MetricsServer:
    """The exporter as a service of the node's nursery."""

    def __init__(self, metrics: NodeMetrics, config: PrometheusConfig) -> None:
        self.metrics = metrics
        self.config = config
        self.app = MetricsApp(metrics)
        self.address: ServerAddress | None = None
        """Where it listens, once it does."""

    async def run(
        self, *, task_status: TaskStatus[ServerAddress] | Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, report the bound address, serve until cancelled. Raises MetricsUnavailable
        when the port cannot be bound."""
        host, port = self.config.host, self.config.port
        async with trio.open_nursery() as nursery:
            try:
                address = await nursery.start(
                    partial(serve_asgi, self.app, host, port, keep_alive_timeout=KEEP_ALIVE_SECONDS)
                )
            except* OSError as group:
                raise MetricsUnavailable(
                    f"cannot serve Prometheus metrics on {host}:{port} (--prometheus-port): "
                    f"{_first_strerror(group)}"
                ) from None
            self.address = address
            task_status.started(address)


class MetricsUnavailable(NodeError):
    """The exporter's port cannot be bound."""


def _first_strerror(group: BaseExceptionGroup[OSError]) -> str:
    first: OSError | BaseExceptionGroup[OSError] = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first.strerror or str(first)
