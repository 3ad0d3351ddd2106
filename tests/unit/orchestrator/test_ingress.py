"""The ingress proxy end to end: real hypercorn servers on 127.0.0.1 as the replicas and as the
proxy, httpx as the client. Routing (hosts, element-wise path prefixes, longest match), round
robin, skipping a replica that refuses connections, and the proxy's own answers."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from node.rpc.serving import serve_asgi
from orchestrator.ingress import (
    Backend,
    IngressProxy,
    ProxyLimits,
    Route,
    RouteTable,
    forwarded_headers,
    normalize_host,
    path_matches,
)


def run(scenario: Callable[[], Awaitable[None]], timeout: float = 20.0) -> None:
    async def main() -> None:
        with trio.fail_after(timeout):
            await scenario()

    trio.run(main)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ENTERED: dict[str, trio.Event] = {}
"""Set when the replica of that name receives a request."""


def replica_app(name: str, *, delay: float = 0.0) -> Any:
    """A replica that answers with its name and what it received."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        ENTERED.setdefault(name, trio.Event()).set()
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await trio.sleep(delay)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        text = "|".join(
            [
                name,
                scope["method"],
                scope["raw_path"].decode() + "?" + scope["query_string"].decode(),
                headers.get("host", ""),
                headers.get("x-forwarded-for", ""),
                headers.get("x-forwarded-host", ""),
                str(len(body)),
                "connection-token" if "x-secret-hop" in headers else "",
            ]
        )
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"x-replica", name.encode()), (b"keep-alive", b"timeout=5")],
            }
        )
        await send({"type": "http.response.body", "body": text.encode()})

    return app


@asynccontextmanager
async def replicas(*specs: tuple[str, float]) -> AsyncIterator[list[Backend]]:
    async with trio.open_nursery() as nursery:
        backends = []
        for name, delay in specs:
            address = await nursery.start(
                partial(serve_asgi, replica_app(name, delay=delay), "127.0.0.1", 0)
            )
            backends.append(Backend("127.0.0.1", address[1]))
        yield backends
        nursery.cancel_scope.cancel()


async def relayed_between_two_nodes(
    port_a: int, only_through_b: Callable[[], Awaitable[None]]
) -> None:
    """What a plane must do with a route whose replicas are on two nodes, from node A's plane at
    `port_a`: A's route for `web.x` holds replica `a` and B's plane, B's holds `b` and A's plane.
    `only_through_b` then leaves A's route with B's plane alone."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_a}") as client:
        seen = [
            (await client.get("/", headers={"Host": "web.x"})).headers["x-replica"]
            for _ in range(4)
        ]
        assert sorted(seen) == ["a", "a", "b", "b"]
        # A relayed request is served by the node's own pods only, and the replica never sees
        # the mark; a client that sets it narrows its own request.
        response = await client.get("/", headers={"Host": "web.x", "X-StateMesh-Relay": "1"})
        assert response.headers["x-replica"] == "a"
    await only_through_b()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_a}") as client:
        response = await client.get("/", headers={"Host": "web.x", "X-StateMesh-Relay": "1"})
        assert response.status_code == 503
        response = await client.get("/", headers={"Host": "web.x"})
        assert response.headers["x-replica"] == "b"


@asynccontextmanager
async def proxy(
    hosts: Mapping[str, Sequence[Route]],
    limits: ProxyLimits | None = None,
    may_dial: Callable[[Backend], bool] = lambda _: True,
) -> AsyncIterator[tuple[httpx.AsyncClient, IngressProxy]]:
    table = RouteTable(hosts)
    app = IngressProxy(lambda: table, limits or ProxyLimits(), may_dial)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(partial(serve_asgi, app, "127.0.0.1", 0))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{address[1]}") as client:
            yield client, app
        await app.aclose()
        nursery.cancel_scope.cancel()


def test_path_prefixes_match_whole_elements() -> None:
    assert path_matches("/", "/anything")
    assert path_matches("/api", "/api") and path_matches("/api", "/api/v1")
    assert not path_matches("/api", "/apis") and not path_matches("/api/v1", "/api")
    table = RouteTable(
        {
            "web.statemesh.internal": [
                Route("web", "/", ()),
                Route("web", "/api", ()),
                Route("web", "/api/v2", ()),
            ]
        }
    )
    assert table.lookup("web.statemesh.internal", "/api/v2/x")[1] == Route("web", "/api/v2", ())
    assert table.lookup("web.statemesh.internal", "/api/v3")[1] == Route("web", "/api", ())
    assert table.lookup("web.statemesh.internal", "/apix")[1] == Route("web", "/", ())
    assert table.lookup("other.statemesh.internal", "/") == (False, None)


def test_host_headers_are_normalized() -> None:
    assert normalize_host("Web.StateMesh.Internal:8080") == "web.statemesh.internal"
    assert normalize_host("web.statemesh.internal.") == "web.statemesh.internal"
    assert normalize_host("[::1]:80") == "[::1]"
    assert normalize_host("") == ""


def test_requests_reach_a_replica_with_method_path_body_and_forwarding_headers() -> None:
    async def scenario() -> None:
        async with (
            replicas(("a", 0.0)) as (a,),
            proxy({"web.x": [Route("web", "/", (a,))]}) as (
                client,
                _,
            ),
        ):
            response = await client.post(
                "/p%20q/r?x=1&y=2",
                content=b"z" * 100_000,
                headers={
                    "Host": "web.x:8080",
                    "X-Forwarded-For": "10.0.0.1",
                    "Connection": "x-secret-hop",
                    "X-Secret-Hop": "1",
                },
            )
            assert response.status_code == 201
            assert response.headers["x-replica"] == "a"
            assert "keep-alive" not in response.headers
            name, method, target, host, chain, forwarded_host, size, hop = response.text.split("|")
            assert (name, method, target) == ("a", "POST", "/p%20q/r?x=1&y=2")
            assert host == forwarded_host == "web.x:8080"
            assert chain == "127.0.0.1"  # the client's own X-Forwarded-For is not passed on
            assert size == "100000" and hop == ""

    run(scenario)


def test_round_robin_and_a_replica_that_refuses_is_skipped() -> None:
    async def scenario() -> None:
        dead = Backend("127.0.0.1", closed_port())
        async with replicas(("a", 0.0), ("b", 0.0)) as (a, b):
            route = Route("web", "/", (a, b, dead))
            async with proxy({"web.x": [route]}) as (client, app):
                seen = []
                for _ in range(6):
                    response = await client.get("/", headers={"Host": "web.x"})
                    assert response.status_code == 201
                    seen.append(response.headers["x-replica"])
                # Each request starts one further along; the dead one passes to the next.
                assert seen == ["a", "b", "a", "a", "b", "a"]
                assert app.statistics.retries == 2

    run(scenario)


def test_the_proxy_says_what_went_wrong() -> None:
    async def scenario() -> None:
        dead = Backend("127.0.0.1", closed_port())
        async with replicas(("slow", 3.0)) as (slow,):
            hosts = {
                "web.x": [Route("web", "/api", ()), Route("web", "/dead", (dead,))],
                "slow.x": [Route("slow", "/", (slow,))],
            }
            limits = ProxyLimits(max_body_bytes=1000, read_timeout=0.3)
            async with proxy(hosts, limits) as (client, app):
                unknown = await client.get("/", headers={"Host": "nope.x"})
                assert unknown.status_code == 404
                assert unknown.text == "no application serves this host (nope.x)\n"
                no_path = await client.get("/other", headers={"Host": "web.x"})
                assert no_path.status_code == 404 and "path /other" in no_path.text
                unready = await client.get("/api/v1", headers={"Host": "web.x"})
                assert unready.status_code == 503 and unready.headers["retry-after"] == "5"
                assert unready.text == "application web has no ready replica\n"
                refused = await client.get("/dead", headers={"Host": "web.x"})
                assert refused.status_code == 502
                assert "no ready replica of web accepted the connection (tried 1" in refused.text
                large = await client.post("/dead", headers={"Host": "web.x"}, content=b"x" * 1001)
                assert large.status_code == 413
                late = await client.get("/", headers={"Host": "slow.x"})
                assert late.status_code == 504 and "did not answer" in late.text
                assert app.statistics.requests == 6 and app.statistics.proxied == 0

    run(scenario)


@pytest.mark.parametrize("address", ["10.1.2.3", "2001:db8::1"])
def test_backend_addresses_print_as_urls_do(address: str) -> None:
    text = str(Backend(address, 80))
    assert text == ("[2001:db8::1]:80" if ":" in address else "10.1.2.3:80")


def test_requests_over_the_in_flight_limit_are_turned_away() -> None:
    async def scenario() -> None:
        ENTERED.clear()
        async with replicas(("slow", 30.0)) as (slow,):
            limits = ProxyLimits(max_in_flight=1)
            async with proxy({"slow.x": [Route("slow", "/", (slow,))]}, limits) as (client, app):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(partial(client.get, "/", headers={"Host": "slow.x"}))
                    await ENTERED.setdefault("slow", trio.Event()).wait()
                    busy = await client.get("/", headers={"Host": "slow.x"})
                    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
                    assert busy.text == "the ingress proxy is busy\n"
                    nursery.cancel_scope.cancel()
                assert app.statistics.busy == 1

    run(scenario)


async def exchange(port: int, data: bytes, *, hang_up: bool = False) -> bytes:
    """Send raw bytes to the proxy; read until it closes (or, with `hang_up`, leave at once)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        if hang_up:
            return b""
        out = b""
        with trio.move_on_after(5):
            while chunk := await stream.receive_some(65536):
                out += chunk
        return out


async def settled(app: IngressProxy) -> None:
    """Wait until the proxy has no request in flight."""
    for _ in range(500):
        if app._in_flight == 0:
            return
        await trio.sleep(0.01)
    raise AssertionError("a request stayed in flight")


def test_dot_segments_cannot_step_around_a_rule_and_only_what_was_sent_is_forwarded() -> None:
    async def scenario() -> None:
        async with (
            replicas(("a", 0.0)) as (a,),
            proxy({"web.x": [Route("web", "/public", (a,))]}) as (client, _),
        ):
            port = client.base_url.port
            assert port is not None
            escaped = await exchange(
                port, b"GET /public/../admin HTTP/1.1\r\nHost: web.x\r\nConnection: close\r\n\r\n"
            )
            assert escaped.startswith(b"HTTP/1.1 404") and b"path /admin" in escaped
            inside = await exchange(
                port, b"GET /public/./x/../y?q HTTP/1.1\r\nHost: web.x\r\nConnection: close\r\n\r\n"
            )
            assert inside.startswith(b"HTTP/1.1 201")
            assert b"|GET|/public/y?q|web.x|" in inside
            for target in (
                b"*",
                b"http://web.x/public",
                b"/public/..;/admin",
                b"/public/.;x/admin",
                b"/public/..%5cadmin",
                b"/public/..\\admin",
            ):
                bad = await exchange(
                    port,
                    b"OPTIONS " + target + b" HTTP/1.1\r\nHost: web.x\r\nConnection: close\r\n\r\n",
                )
                assert bad.startswith(b"HTTP/1.1 400"), bad

    run(scenario)


def test_the_replica_sees_only_the_clients_headers() -> None:
    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        names = b",".join(sorted(k for k, _ in scope["headers"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": names})

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(partial(serve_asgi, echo, "127.0.0.1", 0))
            route = Route("web", "/", (Backend("127.0.0.1", address[1]),))
            async with proxy({"web.x": [route]}) as (client, _):
                port = client.base_url.port
                assert port is not None
                answer = await exchange(
                    port, b"GET / HTTP/1.1\r\nHost: web.x\r\nConnection: close, host\r\n\r\n"
                )
                names = b"\r\nforwarded,host,x-forwarded-for,x-forwarded-host,x-forwarded-proto\r\n"
                assert names in answer.split(b"\r\n\r\n", 1)[1]
            nursery.cancel_scope.cancel()

    run(scenario)


def test_the_replica_sees_the_real_peer_whatever_the_client_claims() -> None:
    """Forwarding headers a client sends (any spelling, repeated) are dropped; the replica
    learns the address the connection came from, the Host and the scheme, once each."""
    seen: list[list[tuple[bytes, bytes]]] = []

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(list(scope["headers"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(partial(serve_asgi, echo, "127.0.0.1", 0))
            route = Route("web", "/", (Backend("127.0.0.1", address[1]),))
            async with proxy({"web.x": [route]}) as (client, _):
                port = client.base_url.port
                assert port is not None
                claims = (
                    b"X-Forwarded-For: 203.0.113.7\r\n"
                    b"x-forwarded-for: 198.51.100.1, 10.0.0.1\r\n"
                    b"X-Forwarded-Host: bank.example\r\n"
                    b"X-Forwarded-Proto: https\r\n"
                    b"X-Forwarded-Port: 443\r\n"
                    b'Forwarded: for=203.0.113.7;proto=https, for="[2001:db8::1]"\r\n'
                    b"X-Real-IP: 203.0.113.7\r\n"
                    b"True-Client-IP: 203.0.113.7\r\n"
                    b"X-Forwarded: for=203.0.113.7\r\n"
                    b"Forwarded-For: 203.0.113.7\r\n"
                    b"Client-IP: 203.0.113.7\r\n"
                    b"X-Client-IP: 203.0.113.7\r\n"
                    b"X-Cluster-Client-IP: 203.0.113.7\r\n"
                    b"CF-Connecting-IP: 203.0.113.7\r\n"
                    b"CF-Pseudo-IPv4: 203.0.113.7\r\n"
                    b"Fastly-Client-IP: 203.0.113.7\r\n"
                    b"X-AppEngine-User-IP: 203.0.113.7\r\n"
                )
                answer = await exchange(
                    port,
                    b"GET / HTTP/1.1\r\nHost: web.x:8080\r\n"
                    + claims
                    + b"X-Kept: 1\r\nConnection: close\r\n\r\n",
                )
                assert answer.startswith(b"HTTP/1.1 200"), answer
            nursery.cancel_scope.cancel()
        (headers,) = seen
        assert sorted(headers) == [
            (b"forwarded", b'for=127.0.0.1;host="web.x:8080";proto=http'),
            (b"host", b"web.x:8080"),
            (b"x-forwarded-for", b"127.0.0.1"),
            (b"x-forwarded-host", b"web.x:8080"),
            (b"x-forwarded-proto", b"http"),
            (b"x-kept", b"1"),
        ]

    run(scenario)


def test_forwarded_names_an_ipv6_peer_and_quotes_what_is_not_a_token() -> None:
    headers = dict(forwarded_headers([(b"host", b"web.x")], "2001:db8::7", 'we"b\\x', "http"))
    assert headers[b"x-forwarded-for"] == b"2001:db8::7"
    assert headers[b"forwarded"] == b'for="[2001:db8::7]";host="we\\"b\\\\x";proto=http'
    unknown = dict(forwarded_headers([], "", "web.x", "http"))
    assert b"x-forwarded-for" not in unknown
    assert unknown[b"forwarded"] == b"for=unknown;host=web.x;proto=http"


def test_forwarding_headers_spelled_with_underscores_are_dropped_too() -> None:
    # Many application servers (CGI/WSGI) read X_Forwarded_For as X-Forwarded-For.
    sent = [
        (b"host", b"web.x"),
        (b"x_forwarded_for", b"198.51.100.1"),
        (b"x-forwarded_proto", b"https"),
        (b"x_real_ip", b"198.51.100.2"),
        (b"true_client_ip", b"198.51.100.3"),
        (b"x_forwarded", b"for=198.51.100.4"),
        (b"forwarded_for", b"198.51.100.5"),
        (b"client_ip", b"198.51.100.6"),
        (b"x_client_ip", b"198.51.100.7"),
        (b"x_cluster_client_ip", b"198.51.100.8"),
        (b"cf_connecting_ip", b"198.51.100.9"),
        (b"cf_pseudo_ipv4", b"198.51.100.10"),
        (b"fastly_client_ip", b"198.51.100.11"),
        (b"x_appengine_user_ip", b"198.51.100.12"),
        (b"x_statemesh_relay", b"1"),
        (b"x_kept", b"1"),
    ]
    names = [name for name, _ in forwarded_headers(sent, "10.0.0.1", "web.x", "http")]
    assert names == [
        b"host",
        b"x_kept",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"forwarded",
    ]


async def raw_replica(response: bytes, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """A replica that answers every request with `response` and then hangs up."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some(65536)
            await stream.send_all(response)

    await trio.serve_tcp(handle, 0, host="127.0.0.1", task_status=task_status)


def test_hop_headers_and_a_response_cut_short() -> None:
    response = (
        b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: secret\r\n"
        b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"7\r\npartial\r\n"
    )

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(raw_replica, response))
            port = listeners[0].socket.getsockname()[1]
            async with proxy({"web.x": [Route("web", "/", (Backend("127.0.0.1", port),))]}) as (
                client,
                app,
            ):
                proxy_port = client.base_url.port
                assert proxy_port is not None
                got = await exchange(proxy_port, b"GET / HTTP/1.1\r\nHost: web.x\r\n\r\n")
                head, _, body = got.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200") and b"x-hop" not in head.lower()
                assert head.lower().count(b"\r\ndate:") == 1
                assert b"partial" in body and not body.endswith(b"0\r\n\r\n")  # not made whole
                assert app.statistics.proxied == 0
            nursery.cancel_scope.cancel()

    run(scenario)


def test_request_bodies_that_are_too_large_too_slow_or_abandoned() -> None:
    async def scenario() -> None:
        ENTERED.clear()
        async with replicas(("upload", 0.0)) as (upload,):
            limits = ProxyLimits(max_body_bytes=1000, body_timeout=0.3)
            async with proxy({"web.x": [Route("web", "/", (upload,))]}, limits) as (client, app):
                port = client.base_url.port
                assert port is not None
                head = b"POST / HTTP/1.1\r\nHost: web.x\r\nConnection: close\r\n"
                declared = await exchange(port, head + b"Content-Length: 1000000000\r\n\r\n")
                assert declared.startswith(b"HTTP/1.1 413")
                slow = await exchange(port, head + b"Content-Length: 10\r\n\r\nabc")
                assert slow.startswith(b"HTTP/1.1 408")
                await exchange(port, head + b"Content-Length: 100\r\n\r\nhalf", hang_up=True)
                await settled(app)
                assert "upload" not in ENTERED  # nothing reached the replica
                assert app.statistics.too_large == 1 and app.statistics.too_slow == 1
                assert app._buffered == 0

    run(scenario)


def test_a_client_that_leaves_ends_the_relay() -> None:
    async def endless(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
            await trio.sleep(0.05)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(partial(serve_asgi, endless, "127.0.0.1", 0))
            route = Route("web", "/", (Backend("127.0.0.1", address[1]),))
            async with proxy({"web.x": [route]}) as (client, app):
                async with client.stream("GET", "/", headers={"Host": "web.x"}) as response:
                    async for _ in response.aiter_bytes():
                        break
                await settled(app)
            nursery.cancel_scope.cancel()

    run(scenario)


def test_a_replica_on_another_node_is_reached_through_its_proxy_and_never_further() -> None:
    async def scenario() -> None:
        tables: dict[str, RouteTable] = {}
        async with replicas(("a", 0.0), ("b", 0.0)) as (a, b), trio.open_nursery() as nursery:
            ports = {}
            for name in ("A", "B"):
                app = IngressProxy(partial(lambda n: tables[n], name))
                ports[name] = (await nursery.start(partial(serve_asgi, app, "127.0.0.1", 0)))[1]
            via_b = Backend("127.0.0.1", ports["B"], node="127.0.0.2", relay=True)
            via_a = Backend("127.0.0.1", ports["A"], node="127.0.0.3", relay=True)
            tables["A"] = RouteTable({"web.x": [Route("web", "/", (a, via_b))]})
            tables["B"] = RouteTable({"web.x": [Route("web", "/", (b, via_a))]})
            assert tables["A"].addresses("web.x") == ("127.0.0.1", "127.0.0.2")

            async def only_through_b() -> None:
                tables["A"] = RouteTable({"web.x": [Route("web", "/", (via_b,))]})

            await relayed_between_two_nodes(ports["A"], only_through_b)
            nursery.cancel_scope.cancel()

    run(scenario)


def test_a_backend_the_node_does_not_know_is_never_dialled() -> None:
    async def scenario() -> None:
        async with replicas(("a", 0.0), ("b", 0.0)) as (a, b):
            route = Route("web", "/", (a, b))
            async with proxy({"web.x": [route]}, may_dial=lambda x: x != b) as (client, _):
                seen = {
                    (await client.get("/", headers={"Host": "web.x"})).headers["x-replica"]
                    for _ in range(4)
                }
                assert seen == {"a"}
            async with proxy({"web.x": [Route("web", "/", (b,))]}, may_dial=lambda x: x != b) as (
                client,
                _,
            ):
                response = await client.get("/", headers={"Host": "web.x"})
                assert response.status_code == 502
                assert "not a known replica address" in response.text

    run(scenario)
