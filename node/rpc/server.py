"""The JSON-RPC server: one ASGI app answering HTTP POST and WebSocket on one port (Substrate
style, default 9944), who may use it (methods, origins, Host), its connection and subscription
bookkeeping, and `RpcServer`, which serves it with hypercorn's trio worker.

HTTP: `POST /` with `Content-Type: application/json` carries one request or a batch; the reply is
200 with the response, or 204 when only notifications were sent. The content type is required
(415 otherwise) because a browser page may send `text/plain` or form posts without a CORS
preflight, while `application/json` always needs one, which is granted only to allowed origins.
`GET /health` answers 200 `{"status":"ok"}` for load balancers, `GET /ui` the dashboard
(`node.rpc.dashboard`); other methods on `/` get 405.
Refusals (403 forbidden origin or host, 408 body too slow, 413 too large, 503 busy, 4xx) carry a
JSON-RPC error body with id null.

WebSocket on `/`: each text (or UTF-8 binary) message is a request or batch, answered on the same
socket. A socket's messages are handled one at a time in arrival order, so calls that depend on
each other (nonces) keep their order; subscription notifications flow in between.

Who may connect: a request or handshake whose Origin the CORS policy does not allow is refused
with 403 (requests without Origin are not a browser's and are allowed); while the server listens
on loopback, so is one whose Host is not localhost, 127.0.0.1 or [::1] (DNS rebinding).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from node.rpc.client_address import client_group, is_local
from node.rpc.dashboard import is_dashboard_path, serve_dashboard
from node.rpc.errors import INVALID_REQUEST, OVERSIZED_REQUEST, SERVER_IS_BUSY, RpcError
from node.rpc.exposure import RpcMethods, is_loopback
from node.rpc.jsonrpc import error_text, handle_payload
from node.rpc.limits import RpcLimits
from node.rpc.origins import CorsPolicy, loopback_host_allowed
from node.rpc.outbox import Close, Outbox
from node.rpc.registry import Registry
from node.rpc.serving import (
    AsgiMessage,
    AsgiReceive,
    AsgiScope,
    AsgiSend,
    ServerAddress,
    serve_asgi,
)
from node.rpc.subscriptions import ConnectionSubscriptions, SubscriptionBudget

if TYPE_CHECKING:
    from trio_typing import TaskStatus

logger = logging.getLogger(__name__)

# WebSocket close codes (RFC 6455 and the IANA registry).
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013

# Hypercorn refuses larger WebSocket messages by itself (close 1009 without a word); up to this
# much above the limit the server reads the message and answers with a JSON-RPC error first.
_WEBSOCKET_SLACK = 1024 * 1024
# A body that arrives this soon after its headers (every ordinary call's, even from a client
# starved of CPU that writes its headers and body apart) never needs a place among the bodies in
# progress.
_BODY_GRACE_SECONDS = 1.0
# How long a browser may cache a granted preflight.
_PREFLIGHT_MAX_AGE = b"600"

_HEALTHY = b'{"status":"ok"}'
_GET_HINT = (
    "use POST with Content-Type: application/json for JSON-RPC calls, or open a WebSocket "
    "on this address"
)

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class RpcStatistics:
    open_connections: int
    """HTTP calls being answered plus open WebSockets: what `max_connections` bounds."""
    open_websockets: int
    subscriptions: int
    """Live subscriptions over all WebSockets."""
    requests_served: int
    """JSON-RPC calls handled (each call of a batch and each notification counts)."""
    connections_refused: int
    """HTTP requests and WebSockets turned away at the connection limits (global, per IP), and
    requests turned away because too many bodies were still arriving."""
    receiving_bodies: int
    """HTTP requests whose body is late (past the grace period) and still arriving: bounded
    like connections, but not counted among them."""
    forbidden: int
    """HTTP requests and WebSockets refused for their Origin or Host."""
    body_timeouts: int
    """HTTP requests cut off because their body did not arrive in time."""


class RpcApp:
    """The ASGI application. Serve it with `RpcServer` (or `serve_asgi`).

    `allow_unsafe` serves the unsafe methods too; `cors` says which Origins may call;
    `loopback_only_hosts` refuses Host headers that do not name this machine."""

    def __init__(
        self,
        registry: Registry,
        limits: RpcLimits | None = None,
        *,
        allow_unsafe: bool = True,
        cors: CorsPolicy | None = None,
        loopback_only_hosts: bool = False,
    ) -> None:
        self._registry = registry.exposed(allow_unsafe=allow_unsafe)
        self._limits = limits or RpcLimits()
        self._cors = cors or CorsPolicy.default()
        self._loopback_only_hosts = loopback_only_hosts
        self._open_http = 0
        self._open_websockets = 0
        limits = self._limits
        self._slots = _Slots(
            "connections",
            limits.max_connections,
            limits.max_connections_per_ip,
            limits.reserved_for_local,
        )
        self._bodies = _Slots(
            "requests still sending their body",
            limits.max_connections,
            limits.max_connections_per_ip,
            limits.reserved_for_local,
        )
        self._requests_served = 0
        self._forbidden = 0
        self._body_timeouts = 0
        self._budget = SubscriptionBudget(self._limits.max_subscriptions)
        unclassified = registry.unclassified()
        if unclassified and not allow_unsafe:
            logger.warning(
                "not serving methods that do not say whether they are unsafe: %s",
                ", ".join(unclassified),
            )

    @property
    def limits(self) -> RpcLimits:
        return self._limits

    @property
    def registry(self) -> Registry:
        """What this server serves."""
        return self._registry

    def statistics(self) -> RpcStatistics:
        return RpcStatistics(
            open_connections=self._open_http + self._open_websockets,
            open_websockets=self._open_websockets,
            subscriptions=self._budget.used,
            requests_served=self._requests_served,
            connections_refused=self._slots.refused + self._bodies.refused,
            receiving_bodies=len(self._bodies),
            forbidden=self._forbidden,
            body_timeouts=self._body_timeouts,
        )

    async def __call__(self, scope: AsgiScope, receive: AsgiReceive, send: AsgiSend) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    # Who may connect

    def _forbidden_reason(self, scope: AsgiScope) -> str | None:
        """Why this request or handshake may not be served (403), if it may not."""
        origin = _text_header(scope, b"origin")
        if not self._cors.allows(origin):
            return (
                f"origin not allowed: {origin} (the node's --rpc-cors allows "
                f"{self._cors.describe()})"
            )
        if self._loopback_only_hosts:
            host = _text_header(scope, b"host")
            if not loopback_host_allowed(host):
                return (
                    f"host not allowed: {host}; a node listening on loopback answers only "
                    "localhost, 127.0.0.1 and [::1]"
                )
        return None

    # HTTP

    async def _http(self, scope: AsgiScope, receive: AsgiReceive, send: AsgiSend) -> None:
        forbidden = self._forbidden_reason(scope)
        if forbidden is not None:
            self._forbidden += 1
            await self._refuse(receive, send, 403, RpcError(INVALID_REQUEST, forbidden))
            return
        origin = _text_header(scope, b"origin")
        if origin is not None:
            send = _adding_headers(send, _cors_headers(origin))
        if scope["method"] == "OPTIONS":
            await _preflight(send, origin)
            return
        if not await self._route(scope, receive, send):
            return
        ip = _client_ip(scope)
        body = await self._read_body(scope, receive, send, ip)
        if body is None:
            return
        busy = self._slots.admit(ip)
        if busy is not None:
            error = RpcError(SERVER_IS_BUSY, f"server is busy: {busy}, try again later")
            await _respond(send, 503, error_text(None, error).encode(), [(b"retry-after", b"1")])
            return
        self._open_http += 1
        try:
            reply = await handle_payload(body, self._registry, self._limits, None)
        finally:
            self._open_http -= 1
            self._slots.release(ip)
        self._requests_served += reply.calls
        if reply.body is None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await _respond(send, 200, reply.body.encode())

    async def _route(self, scope: AsgiScope, receive: AsgiReceive, send: AsgiSend) -> bool:
        """Whether this is a JSON-RPC call; anything else is answered here."""
        path, method = scope["path"], scope["method"]
        if path == "/health":
            if method in ("GET", "HEAD"):
                await _respond(send, 200, _HEALTHY)
            else:
                error = RpcError(INVALID_REQUEST, "/health answers GET and HEAD only")
                await self._refuse(receive, send, 405, error, [(b"allow", b"GET, HEAD")])
            return False
        if is_dashboard_path(path):
            await serve_dashboard(send, method, path, _text_header(scope, b"host"))
            return False
        if path != "/":
            error = RpcError(INVALID_REQUEST, f"not found: {path}; JSON-RPC is served on /")
            await self._refuse(receive, send, 404, error)
            return False
        if method != "POST":
            error = RpcError(INVALID_REQUEST, _GET_HINT)
            await self._refuse(receive, send, 405, error, [(b"allow", b"POST, OPTIONS")])
            return False
        if not _is_json(scope):
            error = RpcError(
                INVALID_REQUEST,
                "unsupported content type: JSON-RPC calls need Content-Type: application/json",
            )
            await self._refuse(receive, send, 415, error)
            return False
        return True

    async def _read_body(
        self, scope: AsgiScope, receive: AsgiReceive, send: AsgiSend, ip: str
    ) -> bytes | None:
        """The whole body, or None once the client is gone or has been answered.

        A body that has not arrived within `_BODY_GRACE_SECONDS` of the headers takes a place
        among the bodies in progress (bounded like connections, in a pool of their own, so
        stalled bodies never take the slots of calls being answered); without a free place it is
        answered 503, and one still incomplete after `request_body_timeout` is answered 408.
        Both are disconnected."""
        limit = self._limits.max_request_bytes
        if (_content_length(scope) or 0) > limit:
            await self._refuse(receive, send, 413, self._too_large())
            return None
        body = _Body(receive, limit)
        deadline = trio.current_time() + self._limits.request_body_timeout
        with trio.move_on_after(_BODY_GRACE_SECONDS):
            await body.read()
        if body.outcome is None:
            busy = self._bodies.admit(ip)
            if busy is not None:
                error = RpcError(SERVER_IS_BUSY, f"server is busy: {busy}, try again later")
                await _respond(
                    send,
                    503,
                    error_text(None, error).encode(),
                    [(b"retry-after", b"1"), (b"connection", b"close")],
                )
                return None
            try:
                with trio.move_on_at(deadline):
                    await body.read()
            finally:
                self._bodies.release(ip)
        if body.outcome is None:
            self._body_timeouts += 1
            await _respond(send, 408, self._body_timeout_error(), [(b"connection", b"close")])
            return None
        if body.outcome == "too large":
            await self._refuse(receive, send, 413, self._too_large(), drain=body.more)
            return None
        if body.outcome == "gone":
            return None
        return b"".join(body.chunks)

    def _too_large(self) -> RpcError:
        limit = self._limits.max_request_bytes
        return RpcError(OVERSIZED_REQUEST, f"request too large: the body exceeds {limit} bytes")

    def _body_timeout_error(self) -> bytes:
        seconds = f"{self._limits.request_body_timeout:g}"
        error = RpcError(
            INVALID_REQUEST, f"request timeout: the body did not arrive within {seconds} s"
        )
        return error_text(None, error).encode()

    async def _refuse(
        self,
        receive: AsgiReceive,
        send: AsgiSend,
        status: int,
        error: RpcError,
        headers: Headers | None = None,
        *,
        drain: bool = True,
    ) -> None:
        # Read and drop the body first: a server that answers and closes with unread data makes
        # the client's kernel see a reset instead of the answer. Bounded (twice the request
        # limit, and the body timeout), so a slightly oversize body still gets its answer but
        # an endless or stalled one does not keep the server reading.
        extra = list(headers or [])
        if drain:
            with trio.move_on_after(self._limits.request_body_timeout) as waiting:
                if not await _discard_body(receive, 2 * self._limits.max_request_bytes):
                    return
            if waiting.cancelled_caught:
                extra.append((b"connection", b"close"))
        await _respond(send, status, error_text(None, error).encode(), extra)

    # WebSocket

    async def _websocket(self, scope: AsgiScope, receive: AsgiReceive, send: AsgiSend) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if scope["path"] != "/":
            await _refuse_handshake(scope, send, 404, f"not found: {scope['path']}")
            return
        forbidden = self._forbidden_reason(scope)
        if forbidden is not None:
            self._forbidden += 1
            await _refuse_handshake(scope, send, 403, forbidden)
            return
        ip = _client_ip(scope)
        busy = self._slots.admit(ip)
        if busy is not None:
            # Accepted only to be closed with a code that tells the client to come back later.
            await send({"type": "websocket.accept"})
            reason = f"server is busy: {busy}"
            await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER, "reason": reason})
            return
        self._open_websockets += 1
        try:
            await send({"type": "websocket.accept"})
            await self._converse(receive, send)
        finally:
            self._open_websockets -= 1
            self._slots.release(ip)

    async def _converse(self, receive: AsgiReceive, send: AsgiSend) -> None:
        limits = self._limits
        outbox = Outbox(limits.max_queued_bytes_per_connection, limits.subscription_buffer)
        async with trio.open_nursery() as nursery:
            subscriptions = ConnectionSubscriptions(nursery, outbox, limits, self._budget)
            try:
                nursery.start_soon(_write, outbox, send, nursery.cancel_scope)
                await self._read(receive, outbox, subscriptions)
                nursery.cancel_scope.cancel()
            finally:
                subscriptions.close_all()

    async def _read(
        self, receive: AsgiReceive, outbox: Outbox, subscriptions: ConnectionSubscriptions
    ) -> None:
        limit = self._limits.max_request_bytes
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] != "websocket.receive":
                continue
            text: str | None = message.get("text")
            payload: str | bytes = text if text is not None else message.get("bytes") or b""
            if _size(payload) > limit:
                error = RpcError(
                    OVERSIZED_REQUEST, f"request too large: the message exceeds {limit} bytes"
                )
                await outbox.put(error_text(None, error))
                outbox.append(Close(CLOSE_MESSAGE_TOO_BIG, "message too big"))
                # The writer closes the socket after the error, then cancels this connection.
                await trio.sleep_forever()
            reply = await handle_payload(payload, self._registry, self._limits, subscriptions)
            self._requests_served += reply.calls
            try:
                if reply.body is not None:
                    await outbox.put(reply.body)
            finally:
                subscriptions.start_pending()


async def _write(outbox: Outbox, send: AsgiSend, connection: trio.CancelScope) -> None:
    """The socket's only writer: texts leave in the order they were queued (a subscribe answer
    before its first notification), and a slow socket holds back only what is queued for it."""
    while True:
        item = await outbox.get()
        if isinstance(item, Close):
            await send({"type": "websocket.close", "code": item.code, "reason": item.reason})
            connection.cancel()
            return
        await send({"type": "websocket.send", "text": item})


class _Body:
    """A request body read in steps (reading may be cancelled between messages and resumed):
    `outcome` is None until it is complete ("done"), over the limit ("too large") or the client
    is gone ("gone")."""

    def __init__(self, receive: AsgiReceive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.more = False
        """Whether the client was still sending when the body went over the limit."""
        self.outcome: str | None = None

    async def read(self) -> None:
        while self.outcome is None:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.outcome = "gone"
                return
            chunk: bytes = message.get("body", b"")
            self.size += len(chunk)
            self.more = bool(message.get("more_body", False))
            if self.size > self._limit:
                self.chunks.clear()
                self.outcome = "too large"
                return
            self.chunks.append(chunk)
            if not self.more:
                self.outcome = "done"


class _Slots:
    """Places of one kind (connections, bodies in progress) counted overall, per client (an
    address, an IPv6 /64) and for clients other than this machine's 127.0.0.1 and ::1, which
    may never take the last `reserved` places: those are kept for the operator's own tools."""

    def __init__(self, what: str, total: int, per_ip: int, reserved: int) -> None:
        self._what = what
        self._total = total
        self._per_ip = per_ip
        self._not_local = total - reserved
        self._used = 0
        self._used_not_local = 0
        self._by_client: dict[str, int] = {}
        self.refused = 0

    def __len__(self) -> int:
        return self._used

    def admit(self, ip: str) -> str | None:
        """Take a place for a client at `ip`, or say which limit is reached."""
        client, local = client_group(ip), is_local(ip)
        if self._used >= self._total:
            self.refused += 1
            return f"the limit of {self._total} {self._what} is reached"
        if not local and self._used_not_local >= self._not_local:
            self.refused += 1
            return (
                f"the limit of {self._not_local} {self._what} from addresses other than "
                "127.0.0.1 and ::1 is reached"
            )
        if self._by_client.get(client, 0) >= self._per_ip:
            self.refused += 1
            return f"the limit of {self._per_ip} {self._what} from one address is reached"
        self._used += 1
        if not local:
            self._used_not_local += 1
        self._by_client[client] = self._by_client.get(client, 0) + 1
        return None

    def release(self, ip: str) -> None:
        client = client_group(ip)
        self._used -= 1
        if not is_local(ip):
            self._used_not_local -= 1
        left = self._by_client[client] - 1
        if left:
            self._by_client[client] = left
        else:
            del self._by_client[client]


async def _preflight(send: AsgiSend, origin: str | None) -> None:
    """Answer a CORS preflight (the Origin was already checked against the policy)."""
    headers: Headers = [(b"allow", b"POST, OPTIONS")]
    if origin is not None:
        headers += [
            (b"access-control-allow-methods", b"POST, OPTIONS"),
            (b"access-control-allow-headers", b"content-type"),
            (b"access-control-max-age", _PREFLIGHT_MAX_AGE),
        ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _cors_headers(origin: str) -> Headers:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"vary", b"origin"),
    ]


def _adding_headers(send: AsgiSend, extra: Headers) -> AsgiSend:
    """`send` with `extra` headers on the response start."""

    async def sending(message: AsgiMessage) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending


def _client_ip(scope: AsgiScope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


async def _refuse_handshake(scope: AsgiScope, send: AsgiSend, status: int, reason: str) -> None:
    if "websocket.http.response" in scope.get("extensions", {}):
        body = error_text(None, RpcError(INVALID_REQUEST, reason)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": reason})


async def _respond(
    send: AsgiSend, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _discard_body(receive: AsgiReceive, budget: int) -> bool:
    """Read the rest of the request body, giving up past `budget` bytes; False if the client
    has gone."""
    read = 0
    while read <= budget:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return True


def _header(scope: AsgiScope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


def _text_header(scope: AsgiScope, name: bytes) -> str | None:
    value = _header(scope, name)
    return None if value is None else value.decode("latin-1")


def _is_json(scope: AsgiScope) -> bool:
    value = _header(scope, b"content-type")
    if value is None:
        return False
    return value.split(b";", 1)[0].strip().lower() == b"application/json"


def _content_length(scope: AsgiScope) -> int | None:
    value = _header(scope, b"content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _size(payload: str | bytes) -> int:
    if isinstance(payload, bytes):
        return len(payload)
    # isascii() is O(1) on CPython strings; only non-ASCII text needs encoding to be measured.
    return len(payload) if payload.isascii() else len(payload.encode())


class RpcServer:
    """The node's JSON-RPC service: `run` serves until cancelled.

    `methods` decides whether the unsafe methods are served (`auto`: only while `host` is a
    loopback address); while `host` is one, Host headers must name this machine."""

    def __init__(
        self,
        registry: Registry,
        *,
        host: str = "127.0.0.1",
        port: int = 9944,
        limits: RpcLimits | None = None,
        methods: RpcMethods = RpcMethods.AUTO,
        cors: CorsPolicy | None = None,
    ) -> None:
        self._app = RpcApp(
            registry,
            limits,
            allow_unsafe=methods.allows_unsafe(host),
            cors=cors,
            loopback_only_hosts=is_loopback(host),
        )
        self._host = host
        self._port = port

    @property
    def app(self) -> RpcApp:
        return self._app

    def statistics(self) -> RpcStatistics:
        return self._app.statistics()

    async def run(
        self, *, task_status: TaskStatus[ServerAddress] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, report the bound address (the real port when 0 was asked), serve until
        cancelled; cancellation closes every connection and subscription."""
        await serve_asgi(
            self._app,
            self._host,
            self._port,
            max_websocket_message=self._app.limits.max_request_bytes + _WEBSOCKET_SLACK,
            task_status=task_status,
        )
