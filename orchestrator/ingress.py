"""The ingress proxy: an HTTP request for an application's host goes to one of its ready
replicas, on whichever node runs it.

A replica on this node is dialled at its pod's address; a replica on another node is reached
through that node's own proxy (marked with `RELAY_HEADER`, so that it serves the request from
its own pods and a request crosses at most one node). Pods are reachable only from their node:
no port of a replica is ever published on a host address, so a tenant never picks a host port.

Routing follows a Kubernetes Ingress with `pathType: Prefix`: a rule's path matches a request
path element by element (`/api` matches `/api` and `/api/v1`, not `/apis`), the longest match
wins, and `/` matches everything. The path is routed and forwarded with its dot segments
resolved, so `..` cannot step around a rule. Backends of a route are tried in turn (round
robin); one that refuses the connection is skipped, which is safe because nothing was sent to it
yet, and an idempotent request is sent once more when a kept-alive connection turns out closed.
Request bodies are buffered, within limits per request and for the whole proxy, so that a retry
can send them again; responses are streamed, and a long one is abandoned if its client leaves.
Only what the client sent is forwarded, less hop-by-hop headers and any forwarding headers of
its own, plus `X-Forwarded-For/-Host/-Proto` and `Forwarded` (RFC 7239) set from the connection:
a client cannot make a replica believe it comes from another address.

The answers of the proxy itself are plain text and say what happened: 400 for a target that is
not a path, 404 when no application serves the host or the path, 408 for a body that does not
arrive in time, 413 for a body over the limit, 503 when the application has no ready replica or
the proxy is busy (with Retry-After), 502 when no ready replica accepted the connection or one
failed, 504 when the replica did not answer in time. A response the replica breaks off reaches
the client cut short, never as a complete message. Upgrades (WebSocket) are not proxied."""

from __future__ import annotations

import ipaddress
import itertools
import logging
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from chain.clock import Clock, SystemClock
from orchestrator.errors import OrchestratorError
from orchestrator.ingress_metrics import IngressMetrics

log = logging.getLogger("statemesh.ingress")

AsgiScope = dict[str, Any]
AsgiReceive = Callable[[], Any]
AsgiSend = Callable[[dict[str, Any]], Any]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
"""Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1)."""


FORWARDING_HEADERS = frozenset(
    {
        b"forwarded",
        b"forwarded-for",
        b"x-forwarded",
        b"x-real-ip",
        b"true-client-ip",
        b"client-ip",
        b"x-client-ip",
        b"x-cluster-client-ip",
        b"cf-connecting-ip",
        b"cf-pseudo-ipv4",
        b"fastly-client-ip",
        b"x-appengine-user-ip",
    }
)
"""Client-supplied claims about the client (with every `X-Forwarded-*` header), never passed on:
the proxy states the peer's address itself. Each is read as the client's address by some
common framework or library (Rails reads `Client-IP`; Node's request-ip, all the others)
when the application sits behind the proxy or CDN that would set it."""


RELAY_HEADER = b"x-statemesh-relay"
"""Set on a request one node's proxy passes to another's: the receiving proxy serves it from
its own replicas only, so a request crosses at most one node. A client that sets it itself only
narrows its own request to the replicas of the node it asked."""


@dataclass(frozen=True, slots=True, order=True)
class Backend:
    """Where a ready replica is reached: the address and port of a pod on this node, or (with
    `relay`) the ingress proxy of the node that runs it."""

    address: str
    port: int
    node: str = ""
    """The address of the node that runs the replica (what DNS answers); `address` if empty."""
    relay: bool = False

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    @property
    def node_address(self) -> str:
        return self.node or self.address


@dataclass(frozen=True, slots=True)
class Route:
    app: str
    path: str
    """The rule's path prefix, without a trailing slash ("/" stays "/")."""
    backends: tuple[Backend, ...]


def path_matches(prefix: str, path: str) -> bool:
    """Kubernetes' Prefix match: `prefix` is a whole number of path elements of `path`."""
    if prefix == "/":
        return True
    return path == prefix or path.startswith(prefix + "/")


def normalize_host(header: str) -> str:
    """The host name of a Host header: lower case, without the port or a trailing dot."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    host = host.rsplit(":", 1)[0] if ":" in host else host
    return host.rstrip(".")


class RouteTable:
    """Routes per host, longest prefix first. Immutable: a new table replaces the old one."""

    def __init__(self, hosts: Mapping[str, Sequence[Route]] | None = None) -> None:
        self._hosts = {
            host: tuple(sorted(routes, key=lambda r: (-len(r.path), r.path)))
            for host, routes in (hosts or {}).items()
        }

    @property
    def hosts(self) -> Mapping[str, tuple[Route, ...]]:
        return self._hosts

    def lookup(self, host: str, path: str) -> tuple[bool, Route | None]:
        """(whether any application serves `host`, the route for `path` on it)."""
        routes = self._hosts.get(host)
        if routes is None:
            return False, None
        for route in routes:
            if path_matches(route.path, path):
                return True, route
        return True, None

    def addresses(self, host: str) -> tuple[str, ...]:
        """The distinct addresses of the ready backends of `host`, for DNS: IPv4 first."""
        found = {
            ipaddress.ip_address(b.node_address)
            for r in self._hosts.get(host, ())
            for b in r.backends
        }
        return tuple(str(a) for a in sorted(found, key=lambda a: (a.version, a)))

    def has_below(self, name: str) -> bool:
        """Whether some host lies below `name` (DNS: then `name` exists, without records)."""
        suffix = "." + name
        return any(host.endswith(suffix) for host in self._hosts)


@dataclass(frozen=True, slots=True)
class ProxyLimits:
    max_body_bytes: int = 16 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    """Longest wait for the replica's response head or for the next piece of its body."""
    max_connections: int = 512
    """Open connections to replicas, all backends together."""
    max_in_flight: int = 1024
    """Requests being proxied at once; more are answered 503 at once."""
    max_buffered_bytes: int = 256 * 1024 * 1024
    """Request bodies held at once, all requests together."""
    body_timeout: float = 30.0
    """Longest time to receive a request body (408 after it)."""


@dataclass(slots=True)
class ProxyStatistics:
    requests: int = 0
    proxied: int = 0
    no_route: int = 0
    unavailable: int = 0
    bad_gateway: int = 0
    timeouts: int = 0
    too_large: int = 0
    retries: int = 0
    busy: int = 0
    bad_requests: int = 0
    too_slow: int = 0


@dataclass(slots=True)
class _Answer:
    """What one request is counted as: the application it was routed to ("" when no
    application serves its host) and the status sent (0 while none is)."""

    app: str = ""
    status: int = 0


class _BodyTooLarge(OrchestratorError):
    pass


class _ClientGone(OrchestratorError):
    pass


@dataclass(slots=True)
class IngressProxy:
    """The ASGI application of the ingress proxy. `routes` is called on every request and must
    be cheap (the node memoizes its table). Close with `aclose` when done serving."""

    routes: Callable[[], RouteTable]
    limits: ProxyLimits = field(default_factory=ProxyLimits)
    may_dial: Callable[[Backend], bool] = lambda _backend: True
    """Defence in depth: a backend the node does not know as a pod of its own or as a peer's
    proxy is never dialled, whatever the route table says."""
    transport: httpx.AsyncBaseTransport | None = None
    """For tests; by default a pooled HTTP/1.1 client."""
    statistics: ProxyStatistics = field(default_factory=ProxyStatistics)
    metrics: IngressMetrics = field(default_factory=IngressMetrics)
    """Requests by application and status, and their latency (on the node's registry)."""
    clock: Clock = field(default_factory=SystemClock)
    """Times each request, from its arrival to the end of its answer."""
    _client: httpx.AsyncClient | None = None
    _counted_table: RouteTable | None = None
    """The route table whose applications the metrics were last trimmed to."""
    _turns: dict[tuple[str, str], itertools.count[int]] = field(default_factory=dict)
    _in_flight: int = 0
    _buffered: int = 0

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = self.limits
            self._client = httpx.AsyncClient(
                transport=self.transport,
                timeout=httpx.Timeout(
                    connect=limits.connect_timeout,
                    read=limits.read_timeout,
                    write=limits.read_timeout,
                    pool=limits.connect_timeout,
                ),
                limits=httpx.Limits(
                    max_connections=limits.max_connections, max_keepalive_connections=64
                ),
                follow_redirects=False,
                trust_env=False,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __call__(self, scope: AsgiScope, receive: AsgiReceive, send: AsgiSend) -> None:
        kind = scope["type"]
        if kind == "http":
            started = self.clock.monotonic()
            answer = _Answer()

            async def counted(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    answer.status = message["status"]
                await send(message)

            try:
                if self._in_flight >= self.limits.max_in_flight:
                    self.statistics.busy += 1
                    await _reply(
                        counted, 503, "the ingress proxy is busy", extra=[(b"retry-after", b"1")]
                    )
                    return
                self._in_flight += 1
                try:
                    await self._http_request(scope, receive, counted, answer)
                finally:
                    self._in_flight -= 1
            finally:
                if answer.status:  # a client that left before any answer is not counted
                    elapsed = self.clock.monotonic() - started
                    self.metrics.observe(answer.app, answer.status, elapsed)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _http_request(
        self, scope: AsgiScope, receive: AsgiReceive, send: AsgiSend, answer: _Answer
    ) -> None:
        self.statistics.requests += 1
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        host_header = next((v for k, v in headers if k == b"host"), b"").decode("latin-1")
        host = normalize_host(host_header)
        path = request_path(scope["path"])
        if path is None:
            self.statistics.bad_requests += 1
            await _reply(send, 400, "the request target must be a plain path starting with /")
            return
        table = self.routes()
        if table is not self._counted_table:
            self._counted_table = table
            self.metrics.keep_only({r.app for routes in table.hosts.values() for r in routes})
        known, route = table.lookup(host, path)
        if route is not None:
            answer.app = route.app
        elif known:
            answer.app = table.hosts[host][0].app  # a host of an application, not one of its paths
        if route is None:
            self.statistics.no_route += 1
            what = f"path {path}" if known else "host"
            await _reply(send, 404, f"no application serves this {what} ({host or 'no host'})")
            return
        if any(k == RELAY_HEADER for k, _ in headers):
            route = Route(route.app, route.path, tuple(b for b in route.backends if not b.relay))
        if not route.backends:
            self.statistics.unavailable += 1
            await _reply(
                send,
                503,
                f"application {route.app} has no ready replica",
                extra=[(b"retry-after", b"5")],
            )
            return
        declared = _content_length(headers)
        if declared is not None and declared > self.limits.max_body_bytes:
            self.statistics.too_large += 1
            await _reply(send, 413, f"request body over {self.limits.max_body_bytes} bytes")
            return
        held = [0]
        try:
            try:
                with trio.fail_after(self.limits.body_timeout):
                    body = await self._read_body(receive, held)
            except _BodyTooLarge:
                self.statistics.too_large += 1
                await _reply(send, 413, f"request body over {self.limits.max_body_bytes} bytes")
                return
            except _ClientGone:
                return
            except trio.TooSlowError:
                self.statistics.too_slow += 1
                timeout = self.limits.body_timeout
                await _reply(send, 408, f"request body not received in {timeout:g} s")
                return
            if path != scope["path"]:
                target = urllib.parse.quote(path, safe="/:@!$&'()*+,;=-._~").encode()
            else:
                target = scope.get("raw_path") or path.encode()
            if scope.get("query_string"):
                target += b"?" + scope["query_string"]
            await self._forward(scope, receive, send, route, host_header, target, body)
        finally:
            self._buffered -= held[0]

    async def _read_body(self, receive: AsgiReceive, held: list[int]) -> bytes:
        """The whole request body within the per-request and the proxy-wide buffer limits;
        `held[0]` counts its bytes in the proxy-wide total until the caller releases them."""
        parts: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk: bytes = message.get("body", b"")
            held[0] += len(chunk)
            self._buffered += len(chunk)
            if held[0] > self.limits.max_body_bytes:
                raise _BodyTooLarge
            if self._buffered > self.limits.max_buffered_bytes:
                raise _BodyTooLarge
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    def _order(self, host: str, route: Route) -> list[Backend]:
        turn = self._turns.setdefault((host, route.path), itertools.count())
        start = next(turn) % len(route.backends)
        return [*route.backends[start:], *route.backends[:start]]

    async def _forward(
        self,
        scope: AsgiScope,
        receive: AsgiReceive,
        send: AsgiSend,
        route: Route,
        host: str,
        target: bytes,
        body: bytes,
    ) -> None:
        client = scope.get("client")
        outgoing = forwarded_headers(
            scope["headers"], client[0] if client else "", host, scope.get("scheme", "http")
        )
        method: str = scope["method"]
        refused: list[str] = []
        for backend in self._order(normalize_host(host), route):
            if not self.may_dial(backend):
                log.warning("not dialling %s for %s: not a known pod or peer proxy", backend, host)
                refused.append(f"{backend}: not a known replica address")
                continue
            url = httpx.URL(scheme="http", host=backend.address, port=backend.port, raw_path=target)
            headers = [*outgoing, (RELAY_HEADER, b"1")] if backend.relay else outgoing
            # Built directly: the client's default headers (user agent, accept-encoding) would
            # otherwise be added to what the user sent.
            request = httpx.Request(method, url, headers=headers, content=body)
            try:
                response = await self._send(request, method)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                refused.append(f"{backend}: {type(exc).__name__}")
                self.statistics.retries += 1
                continue
            except httpx.PoolTimeout:
                self.statistics.busy += 1
                await _reply(send, 503, "the ingress proxy is busy", extra=[(b"retry-after", b"1")])
                return
            except httpx.TimeoutException:
                self.statistics.timeouts += 1
                await _reply(send, 504, f"replica of {route.app} at {backend} did not answer")
                return
            except httpx.HTTPError as exc:
                self.statistics.bad_gateway += 1
                await _reply(send, 502, f"replica of {route.app} at {backend} failed: {exc}")
                return
            try:
                if await _relay(response, receive, send):
                    self.statistics.proxied += 1
            finally:
                await response.aclose()
            return
        self.statistics.bad_gateway += 1
        log.info("no ready replica of %s accepted a connection: %s", route.app, "; ".join(refused))
        await _reply(
            send,
            502,
            f"no ready replica of {route.app} accepted the connection "
            f"(tried {len(refused)}: {'; '.join(refused)})",
        )

    async def _send(self, request: httpx.Request, method: str) -> httpx.Response:
        """Send, once more on a fresh connection when a kept-alive one turns out closed before
        any response (only for idempotent methods, which may be repeated: RFC 9110 9.2.2)."""
        try:
            return await self._http().send(request, stream=True)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            if method not in IDEMPOTENT:
                raise
            self.statistics.retries += 1
            return await self._http().send(request, stream=True)


WATCH_AFTER_SECONDS = 1.0
"""A response still streaming after this long is abandoned when its client leaves."""
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, for an absolute path."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def request_path(path: str) -> str | None:
    """The path a request is routed and forwarded by: its dot segments resolved, so that a rule
    cannot be stepped around with `..`; None for a target that is not an absolute path
    (asterisk-form, absolute-form, or with a fragment), or that holds what some servers read as
    a dot segment or a separator although it is none: a backslash, or a dot segment with
    parameters (`..;`, which Tomcat and Spring resolve as `..`)."""
    if not path.startswith("/") or "#" in path or "\\" in path:
        return None
    if any(";" in s and s.split(";", 1)[0] in (".", "..") for s in path.split("/")):
        return None
    return remove_dot_segments(path)


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _connection_tokens(headers: Sequence[tuple[bytes, bytes]]) -> set[bytes]:
    tokens: set[bytes] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    return tokens - {b"host"}


def forwarded_headers(
    headers: Sequence[tuple[bytes, bytes]], client: str, host: str, scheme: str = "http"
) -> list[tuple[bytes, bytes]]:
    """What a replica receives: the client's headers less hop-by-hop ones and every forwarding
    header it sent (it could claim any address), plus ours, from the connection itself. A
    request relayed by another node's proxy names that node: nothing authenticates the relaying
    proxy's own claims to this one."""
    drop = (
        HOP_BY_HOP
        | _connection_tokens(headers)
        | FORWARDING_HEADERS
        | {b"content-length", RELAY_HEADER}
    )
    # Names are compared as application servers read them: CGI and WSGI read `_` and `-` alike,
    # so X_Forwarded_For would reach a replica as X-Forwarded-For.
    kept = [
        (k, v)
        for k, v in headers
        if (name := k.replace(b"_", b"-")) not in drop and not name.startswith(b"x-forwarded-")
    ]
    host_value = host.encode("latin-1")
    if client:
        kept.append((b"x-forwarded-for", client.encode()))
    kept.append((b"x-forwarded-host", host_value))
    kept.append((b"x-forwarded-proto", scheme.encode()))
    node = f'"[{client}]"' if ":" in client else client or "unknown"
    forwarded = f"for={node};host={_forwarded_value(host)};proto={scheme}"
    kept.append((b"forwarded", forwarded.encode("latin-1")))
    return kept


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _forwarded_value(value: str) -> str:
    """A `Forwarded` parameter value: a token as it is, anything else as a quoted string
    (RFC 7239 section 4; a host with a port has a colon, which a token may not)."""
    if value and all(c in _TCHAR for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _relay(response: httpx.Response, receive: AsgiReceive, send: AsgiSend) -> bool:
    """Stream the replica's response to the client. True if it arrived whole; when the replica
    breaks off, the client's connection is closed without ending the message, so the client
    sees it cut short; when the client leaves, the replica's response is abandoned."""
    raw = [(k.lower(), v) for k, v in response.headers.raw]
    drop = HOP_BY_HOP | _connection_tokens(raw) | {b"date"}
    complete = False
    async with trio.open_nursery() as nursery:

        async def client_gone() -> None:
            # Only a response that takes a while is watched: once the app reads from the
            # client, hypercorn holds a `Connection: close` connection open a few seconds more.
            await trio.sleep(WATCH_AFTER_SECONDS)
            while (await receive())["type"] != "http.disconnect":
                pass
            nursery.cancel_scope.cancel()

        nursery.start_soon(client_gone)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(k, v) for k, v in raw if k not in drop],
            }
        )
        try:
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError as exc:
            log.info("a replica's response broke off: %s", exc)
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            complete = True
        nursery.cancel_scope.cancel()
    return complete


async def _reply(
    send: AsgiSend, status: int, text: str, *, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
