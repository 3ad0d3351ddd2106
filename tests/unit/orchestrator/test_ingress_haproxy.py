"""The ingress data plane in HAProxy, end to end: a real `haproxy` configured by the node's
rendering, real hypercorn replicas on 127.0.0.1, httpx and raw sockets as clients. The rules
are those of the Python proxy (`test_ingress.py`): routing, forwarding headers, relaying, what
may be dialled, the proxy's own answers; and the native plane's own duties: reloading on new
routes without dropping a kept-alive client, starting HAProxy again when it dies, counting
every request in the node's metrics."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio._core import _thread_cache

from node.rpc.serving import serve_asgi
from orchestrator import haproxy
from orchestrator.haproxy import FOLDER_PREFIX, HaproxyIngress, Rendered, render
from orchestrator.ingress import Backend, ProxyLimits, Route, RouteTable
from testkit import waiting
from tests.unit.orchestrator.test_ingress import (
    ENTERED,
    closed_port,
    exchange,
    relayed_between_two_nodes,
    replicas,
    run,
)


@asynccontextmanager
async def native(
    tables: Mapping[str, RouteTable] | Mapping[str, Sequence[Route]],
    limits: ProxyLimits | None = None,
    may_dial: Callable[[Backend], bool] = lambda _: True,
) -> AsyncIterator[tuple[httpx.AsyncClient, HaproxyIngress]]:
    """HAProxy serving `tables["now"]` (read again as the test changes it), or the hosts given."""
    box: dict[str, Any] = dict(tables) if "now" in tables else {"now": RouteTable(tables)}  # type: ignore[arg-type]
    plane = HaproxyIngress(lambda: box["now"], may_dial, limits=limits or ProxyLimits())
    async with trio.open_nursery() as nursery:
        address = await nursery.start(plane.serve, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{address[1]}") as client:
            client.tables = box  # type: ignore[attr-defined]
            yield client, plane
        nursery.cancel_scope.cancel()


eventually = partial(waiting.eventually, seconds=10.0, every=0.05)
"""A reload or a restart of HAProxy takes a second or two on a loaded machine."""


async def served(client: httpx.AsyncClient, host: str, status: int) -> httpx.Response:
    """The first answer of status `status` for `host`, asking every 50 ms for 10 s (a reload)."""
    with trio.fail_after(10):
        while True:
            response = await client.get("/", headers={"Host": host})
            if response.status_code == status:
                return response
            await trio.sleep(0.05)


def test_requests_reach_a_replica_with_method_path_body_and_the_peer_it_came_from() -> None:
    seen: list[list[tuple[bytes, bytes]]] = []

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append(list(scope["headers"]))
        text = f"{scope['method']} {scope['raw_path'].decode()}?{scope['query_string'].decode()}"
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": f"{text} {len(body)}".encode()})

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(partial(serve_asgi, echo, "127.0.0.1", 0))
            route = Route("web", "/", (Backend("127.0.0.1", address[1]),))
            async with native({"web.x": [route]}) as (client, _):
                response = await client.post(
                    "/p%20q/r?x=1&y=2", content=b"z" * 100_000, headers={"Host": "web.x"}
                )
                assert (response.status_code, response.text) == (
                    201,
                    "POST /p%20q/r?x=1&y=2 100000",
                )
                port = client.base_url.port
                assert port is not None
                claims = (
                    b"X-Forwarded-For: 203.0.113.7\r\nx-forwarded-for: 198.51.100.1\r\n"
                    b"X-Forwarded-Host: bank.example\r\nX-Forwarded-Proto: https\r\n"
                    b"X-Forwarded-Port: 443\r\nForwarded: for=203.0.113.7;proto=https\r\n"
                    b"X-Real-IP: 203.0.113.7\r\nTrue-Client-IP: 203.0.113.7\r\n"
                    b"X-Forwarded: for=203.0.113.7\r\nForwarded-For: 203.0.113.7\r\n"
                    b"Client-IP: 203.0.113.7\r\nX-Client-IP: 203.0.113.7\r\n"
                    b"X-Cluster-Client-IP: 203.0.113.7\r\nCF-Connecting-IP: 203.0.113.7\r\n"
                    b"CF-Pseudo-IPv4: 203.0.113.7\r\nFastly-Client-IP: 203.0.113.7\r\n"
                    b"X-AppEngine-User-IP: 203.0.113.7\r\nX_Forwarded_For: 203.0.113.8\r\n"
                    b"x-forwarded_proto: https\r\nX_Real_IP: 203.0.113.9\r\n"
                    b"X-StateMesh-Relay: 1\r\nX_StateMesh_Relay: 1\r\nTE: trailers\r\n"
                    b"Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eDp5\r\n"
                    b"X-Kept: 1\r\nConnection: close, x-forwarded-for\r\n\r\n"
                )
                answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: web.x:8080\r\n" + claims)
                assert answer.startswith(b"HTTP/1.1 201"), answer
            nursery.cancel_scope.cancel()
        assert sorted(seen[-1]) == [
            (b"forwarded", b'for=127.0.0.1;host="web.x:8080";proto=http'),
            (b"host", b"web.x:8080"),
            (b"x-forwarded-for", b"127.0.0.1"),
            (b"x-forwarded-host", b"web.x:8080"),
            (b"x-forwarded-proto", b"http"),
            (b"x-kept", b"1"),
        ]
        assert (b"forwarded", b"for=127.0.0.1;host=web.x;proto=http") in seen[0]

    run(scenario)


def test_routes_by_host_and_whole_path_elements_longest_first() -> None:
    async def scenario() -> None:
        async with replicas(("root", 0.0), ("api", 0.0), ("v1", 0.0)) as (root, api, v1):
            hosts = {
                "web.x": [
                    Route("web", "/", (root,)),
                    Route("web", "/api", (api,)),
                    Route("web", "/api/v1", (v1,)),
                ],
                "only.x": [Route("only", "/api", (api,))],
            }
            async with native(hosts) as (client, _):
                for path, host, replica in (
                    ("/", "web.x", "root"),
                    ("/apis", "web.x", "root"),
                    ("/api", "Web.X.:81", "api"),
                    ("/api/", "web.x", "api"),
                    ("/api/v2", "web.x", "api"),
                    ("/api/v1", "web.x", "v1"),
                    ("/api/v1/x/y", "web.x", "v1"),
                    ("/api/v1x", "web.x", "api"),
                    ("/api/x", "only.x", "api"),
                ):
                    response = await client.get(path, headers={"Host": host})
                    assert response.headers.get("x-replica") == replica, (path, host)
                    assert response.status_code == 201
                missing = await client.get("/apis", headers={"Host": "only.x"})
                assert missing.status_code == 404
                assert missing.text == "no application serves this path /apis (only.x)\n"

    run(scenario)


def test_the_proxy_says_what_went_wrong_and_refuses_what_could_step_around_a_rule() -> None:
    async def scenario() -> None:
        dead = Backend("127.0.0.1", closed_port())
        async with replicas(("slow", 3.0), ("public", 0.0)) as (slow, public):
            hosts = {
                "web.x": [Route("web", "/api", ()), Route("web", "/dead", (dead,))],
                "slow.x": [Route("slow", "/", (slow,))],
                "pub.x": [Route("pub", "/public", (public,))],
            }
            limits = ProxyLimits(max_body_bytes=1000, read_timeout=0.3)
            async with native(hosts, limits) as (client, plane):
                unknown = await client.get("/", headers={"Host": "nope.x"})
                assert (unknown.status_code, unknown.text) == (
                    404,
                    "no application serves this host (nope.x)\n",
                )
                for host in ("we b.x", "web.x/api", "[::1]", "web.x, pub.x"):
                    odd = await client.get("/api", headers={"Host": host})
                    assert odd.status_code == 404, host
                unready = await client.get("/api/v1", headers={"Host": "web.x"})
                assert unready.status_code == 503 and unready.headers["retry-after"] == "5"
                assert unready.text == "application web has no ready replica\n"
                refused = await client.get("/dead", headers={"Host": "web.x"})
                assert refused.status_code == 503
                assert refused.text.startswith("no ready replica accepted the connection")
                large = await client.post("/dead", headers={"Host": "web.x"}, content=b"x" * 1001)
                assert large.status_code == 413
                late = await client.get("/", headers={"Host": "slow.x"})
                assert late.status_code == 504 and "did not answer" in late.text
                port = client.base_url.port
                assert port is not None
                for target in (
                    b"/public/../admin",
                    b"/public/%2e%2E/admin",
                    b"/public/.%2e/admin",
                    b"/public/./x",
                    b"/public/..",
                    b"/public%2F..%2Fadmin",
                    b"/public/..%5cadmin",
                    b"/public/..;/admin",
                    b"/public/.;x/admin",
                    b"/public/..\\admin",
                    b"/%70ublic/x",
                    b"/public/%2E%2e;/admin",
                    b"*",
                    b"http://pub.x/public",
                ):
                    bad = await exchange(
                        port,
                        b"GET " + target + b" HTTP/1.1\r\nHost: pub.x\r\nConnection: close\r\n\r\n",
                    )
                    assert bad.startswith(b"HTTP/1.1 400"), (target, bad)
                    assert b"text/plain" in bad
                fine = await client.get("/public/a..b/.c?q=..", headers={"Host": "pub.x"})
                assert fine.status_code == 201
                spaced = await client.get("/public/a%20b;c", headers={"Host": "pub.x.."})
                assert spaced.status_code == 201
                websocket = {
                    "Host": "pub.x",
                    "Connection": "Upgrade",
                    "Upgrade": "websocket",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version": "13",
                }
                upgrade = await client.get("/public", headers=websocket)
                assert upgrade.status_code == 403
                assert upgrade.text == "upgrades (WebSocket) are not proxied\n"
                h2c = await client.get(
                    "/public", headers={"Host": "pub.x", "Connection": "Upgrade", "Upgrade": "h2c"}
                )
                assert h2c.status_code == 403
                # Every request is counted, under its application once routed.
                await eventually(
                    lambda: (
                        plane.metrics.traffic("web").requests >= 3
                        and plane.metrics.traffic("slow").requests >= 1
                        and plane.metrics.traffic("pub").requests >= 1
                    )
                )
                web = plane.metrics.traffic("web")
                assert web.by_code == {"503": 2, "413": 1} and web.errors == 2
                assert plane.metrics.traffic("slow").by_code == {"504": 1}
                assert plane.metrics.traffic("pub").by_code == {"201": 2}

    run(scenario)


async def many(client: httpx.AsyncClient, count: int) -> None:
    for _ in range(count):
        assert (await client.get("/", headers={"Host": "web.x"})).status_code == 201


def test_round_robin_and_a_replica_that_refuses_is_skipped() -> None:
    async def scenario() -> None:
        dead = Backend("127.0.0.1", closed_port())
        async with replicas(("a", 0.0), ("b", 0.0)) as (a, b):
            async with native({"web.x": [Route("web", "/", (a, dead, b))]}) as (client, plane):
                seen = []
                for _ in range(9):
                    response = await client.get("/", headers={"Host": "web.x"})
                    assert response.status_code == 201
                    assert "keep-alive" not in response.headers  # the replica's hop header
                    seen.append(response.headers["x-replica"])
                assert seen.count("a") >= 3 and seen.count("b") >= 3
                # Every request is counted, however fast they come (the log is read in bulk).
                async with trio.open_nursery() as nursery:
                    for _ in range(4):
                        nursery.start_soon(many, client, 100)
                await eventually(lambda: plane.metrics.traffic("web").requests >= 409)
                await trio.sleep(0.2)
                assert plane.metrics.traffic("web").by_code == {"201": 409}

    run(scenario)


def test_a_replica_on_another_node_is_reached_through_its_proxy_and_never_further() -> None:
    async def scenario() -> None:
        async with replicas(("a", 0.0), ("b", 0.0)) as (a, b), trio.open_nursery() as nursery:
            box_a: dict[str, RouteTable] = {"now": RouteTable({})}
            box_b: dict[str, RouteTable] = {"now": RouteTable({})}
            plane_a = HaproxyIngress(lambda: box_a["now"], lambda _: True)
            plane_b = HaproxyIngress(lambda: box_b["now"], lambda _: True)
            port_a = (await nursery.start(plane_a.serve, "127.0.0.1", 0))[1]
            port_b = (await nursery.start(plane_b.serve, "127.0.0.1", 0))[1]
            via_b = Backend("127.0.0.1", port_b, node="127.0.0.2", relay=True)
            via_a = Backend("127.0.0.1", port_a, node="127.0.0.3", relay=True)
            # B first: a request A relays on a kept-alive connection may otherwise find B's old
            # worker, which answers it by the routes it had, once, before closing.
            box_b["now"] = RouteTable({"web.x": [Route("web", "/", (b, via_a))]})
            await eventually(lambda: plane_b.reloads > 0)
            box_a["now"] = RouteTable({"web.x": [Route("web", "/", (a, via_b))]})
            await eventually(lambda: plane_a.reloads > 0)

            async def only_through_b() -> None:
                box_a["now"] = RouteTable({"web.x": [Route("web", "/", (via_b,))]})
                await eventually(lambda: plane_a.reloads > 1)

            await relayed_between_two_nodes(port_a, only_through_b)
            nursery.cancel_scope.cancel()

    run(scenario)


def test_a_backend_the_node_does_not_know_is_never_dialled() -> None:
    async def scenario() -> None:
        ENTERED.clear()
        async with replicas(("a", 0.0), ("b", 0.0)) as (a, b):
            route = Route("web", "/", (a, b))
            async with native({"web.x": [route]}, may_dial=lambda x: x != b) as (client, _):
                seen = {
                    (await client.get("/", headers={"Host": "web.x"})).headers["x-replica"]
                    for _ in range(4)
                }
                assert seen == {"a"} and "b" not in ENTERED
            lone = {"web.x": [Route("web", "/", (b,))]}
            async with native(lone, may_dial=lambda x: x != b) as (client, _):
                response = await client.get("/", headers={"Host": "web.x"})
                assert response.status_code == 503 and "b" not in ENTERED

    run(scenario)


def test_new_routes_are_served_after_a_reload_and_a_kept_alive_client_is_not_dropped() -> None:
    async def scenario() -> None:
        async with replicas(("a", 0.0), ("b", 0.0)) as (a, b):
            async with native({"web.x": [Route("web", "/", (a,))]}) as (client, plane):
                assert (await client.get("/", headers={"Host": "web.x"})).status_code == 201
                tables: dict[str, RouteTable] = client.tables  # type: ignore[attr-defined]
                tables["now"] = RouteTable(
                    {"web.x": [Route("web", "/", (a,))], "new.x": [Route("new", "/", (b,))]}
                )
                new = await served(client, "new.x", 201)
                assert new.headers["x-replica"] == "b"
                await eventually(lambda: plane.reloads == 1)
                # The same table again: nothing to reload.
                tables["now"] = RouteTable(dict(tables["now"].hosts))
                await trio.sleep(0.5)
                assert plane.reloads == 1
                for _ in range(20):
                    assert (await client.get("/", headers={"Host": "web.x"})).status_code == 201

    run(scenario, timeout=40)


def test_haproxy_is_started_again_when_it_dies() -> None:
    async def scenario() -> None:
        async with replicas(("a", 0.0)) as (a,):
            async with native({"web.x": [Route("web", "/", (a,))]}) as (client, plane):
                assert plane.pid is not None
                os.kill(plane.pid, signal.SIGKILL)
                await eventually(lambda: plane.restarts == 1 and plane.pid is not None)
                for _ in range(100):
                    try:
                        response = await client.get("/", headers={"Host": "web.x"})
                    except httpx.TransportError:  # the new HAProxy is not accepting yet
                        await trio.sleep(0.1)
                        continue
                    assert response.status_code == 201
                    break
                else:
                    raise AssertionError("HAProxy did not serve again")

    run(scenario, timeout=40)


def rendered_for(table: RouteTable) -> Rendered:
    return render(
        table,
        folder=Path("/run/x"),
        maps=Path("/run/x/g1"),
        listener_fd=3,
        limits=ProxyLimits(),
        may_dial=lambda _: True,
    )


def test_nothing_a_tenant_names_is_written_into_the_configuration_as_text() -> None:
    addr = Backend("10.1.2.3", 80)
    table = RouteTable(
        {
            "evil.x\n    server x 192.0.2.1:80": [Route("evil", "/", (addr,))],
            "ok.x": [
                Route("ok", "/a b", (addr,)),
                Route("ok", "/c\nuse_backend r0", (addr,)),
                Route("ok", "/d", ()),
            ],
            "odd.x": [Route('we"b\nodd.y r0', "/", (addr,))],
            "ip.x": [Route("ip", "/", (Backend("not-an-ip", 80),))],
        }
    )
    rendered = rendered_for(table)
    assert "192.0.2.1" not in rendered.config and "evil" not in "".join(rendered.files.values())
    assert "use_backend r0\n" not in rendered.files["exact.map"]
    assert "/a b" not in "".join(rendered.files.values())
    assert "application ok has no ready replica" in rendered.config
    assert "odd" not in rendered.config + "".join(rendered.files.values())
    assert "not-an-ip" not in rendered.config
    scoped = RouteTable(
        {"web.x": [Route("web", "/", (Backend("fe80::1%x\n    server s9 192.0.2.66:22\n#", 80),))]}
    )
    rendered = rendered_for(scoped)
    assert "192.0.2.66" not in rendered.config and "fe80" not in rendered.config


def test_haproxy_outlives_the_worker_threads_of_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """HAProxy is stopped by a signal when the thread that started it ends (so that it dies
    with a node killed outright): it must be started from the node's own thread, not from one
    of trio's worker threads, which end after a while idle (shortened here from 10 s)."""
    monkeypatch.setattr(_thread_cache, "IDLE_TIMEOUT", 0.1)

    async def scenario() -> None:
        async with replicas(("a", 0.0)) as (a,):
            async with native({"web.x": [Route("web", "/", (a,))]}) as (client, plane):
                await trio.to_thread.run_sync(lambda: None)
                await trio.sleep(1.5)  # past the idle threads' end and HAProxy's first check
                assert (await client.get("/", headers={"Host": "web.x"})).status_code == 201
                assert plane.restarts == 0

    run(scenario)


def test_the_folders_of_nodes_that_are_gone_are_removed() -> None:
    gone = Path(tempfile.gettempdir()) / (FOLDER_PREFIX + "gone-test")
    alive = Path(tempfile.gettempdir()) / (FOLDER_PREFIX + "alive-test")
    for folder, pid in ((gone, 2**22 + 1), (alive, os.getpid())):  # above pid_max: never a pid
        folder.mkdir(exist_ok=True)
        (folder / "node.pid").write_text(str(pid))

    async def scenario() -> None:
        async with native({}) as (client, _):
            assert (await client.get("/", headers={"Host": "web.x"})).status_code == 404

    try:
        run(scenario)
        assert not gone.exists() and alive.exists()
    finally:
        shutil.rmtree(gone, ignore_errors=True)
        shutil.rmtree(alive, ignore_errors=True)


def test_an_ipv6_peer_is_named_in_brackets() -> None:
    seen: list[dict[bytes, bytes]] = []

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(dict(scope["headers"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(partial(serve_asgi, echo, "127.0.0.1", 0))
            table = RouteTable({"web.x": [Route("web", "/", (Backend("127.0.0.1", address[1]),))]})
            plane = HaproxyIngress(lambda: table, lambda _: True)
            port = (await nursery.start(plane.serve, "::1", 0))[1]
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://[::1]:{port}/", headers={"Host": "web.x"})
            assert response.status_code == 200
            nursery.cancel_scope.cancel()
        assert seen[0][b"x-forwarded-for"] == b"::1"
        assert seen[0][b"forwarded"] == b'for="[::1]";host=web.x;proto=http'

    run(scenario)


async def answered(port: int, request: bytes) -> bytes:
    """What the proxy answers `request` on a new connection; b"" if it refuses the connection."""
    try:
        return await exchange(port, request)
    except (trio.BrokenResourceError, OSError):  # reset while connecting or sending
        return b""


def test_one_address_cannot_hold_every_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections that send nothing hold their slot until a timeout: one address may hold only
    its share, beyond which its connections are refused (here 20, by default 1,000 of
    20,000)."""
    monkeypatch.setattr(haproxy, "MAX_CONNECTIONS_PER_ADDRESS", 20)

    async def scenario() -> None:
        async with replicas(("a", 0.0)) as (a,):
            async with native({"web.x": [Route("web", "/", (a,))]}) as (client, _):
                port = client.base_url.port
                assert port is not None
                idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(20)]
                request = b"GET / HTTP/1.1\r\nHost: web.x\r\nConnection: close\r\n\r\n"
                assert await answered(port, request) == b""  # closed or reset at once
                for stream in idle:
                    await stream.aclose()
                # Served again once HAProxy has seen them go.
                for _ in range(100):
                    answer = await answered(port, request)
                    if answer:
                        break
                    await trio.sleep(0.05)
                assert answer.startswith(b"HTTP/1.1 201")

    run(scenario)
