"""Who may connect and how much, on a real hypercorn server on 127.0.0.1: Origin and Host
refused with 403 (HTTP and WebSocket handshakes), CORS headers and preflights for allowed
origins, the per-address connection cap, the request body timeout, the server-wide
subscription budget, and a feed subscriber that does not read being told and dropped."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio
import trio_websocket

from node.rpc.feeds import Feed
from node.rpc.limits import RpcLimits
from node.rpc.origins import CorsPolicy
from node.rpc.registry import Params, Registry
from node.rpc.server import RpcServer
from node.rpc.serving import ServerAddress
from tests.unit.test_rpc_server import error, eventually, request, result, run, ws_call

JSON = {"content-type": "application/json"}


def registry(feed: Feed[int]) -> Registry:
    registry = Registry()
    registry.add_method("test_echo", lambda params: "echo", unsafe=False)

    @registry.subscription(
        "test_subscribeFeed", unsubscribe="test_unsubscribeFeed", notification="test_feed"
    )
    def subscribe(params: Params) -> Feed[int]:
        return feed

    return registry


def encode(item: int) -> str:
    return json.dumps({"n": item, "padding": "x" * 1000})


@asynccontextmanager
async def serving(
    limits: RpcLimits | None = None, *, cors: CorsPolicy | None = None
) -> AsyncIterator[tuple[RpcServer, ServerAddress, Feed[int]]]:
    feed: Feed[int] = Feed(encode)
    server = RpcServer(registry(feed), host="127.0.0.1", port=0, limits=limits, cors=cors)
    async with trio.open_nursery() as nursery:
        address: ServerAddress = await nursery.start(server.run)
        yield server, address, feed
        nursery.cancel_scope.cancel()


def call_body() -> bytes:
    return json.dumps(request("test_echo")).encode()


def test_http_from_another_origin_is_refused_and_allowed_origins_get_cors_headers() -> None:
    async def scenario() -> None:
        async with serving() as (server, address, _), httpx.AsyncClient() as client:
            url = address.http_url
            evil = await client.post(
                url, content=call_body(), headers={**JSON, "origin": "http://evil.example"}
            )
            assert evil.status_code == 403
            assert "access-control-allow-origin" not in evil.headers
            assert evil.json() == error(
                -32600,
                "origin not allowed: http://evil.example (the node's --rpc-cors allows "
                "http://127.0.0.1:*,http://localhost:*,https://127.0.0.1:*,https://localhost:*)",
            )
            mine = await client.post(
                url, content=call_body(), headers={**JSON, "origin": "http://localhost:5173"}
            )
            assert mine.json() == result("echo")
            assert mine.headers["access-control-allow-origin"] == "http://localhost:5173"
            assert mine.headers["vary"] == "origin"
            plain = await client.post(url, content=call_body(), headers=JSON)
            assert plain.json() == result("echo")
            assert "access-control-allow-origin" not in plain.headers
            ask = {"access-control-request-method": "POST"}
            preflight = await client.options(url, headers={**ask, "origin": "http://localhost"})
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-origin"] == "http://localhost"
            assert preflight.headers["access-control-allow-methods"] == "POST, OPTIONS"
            assert preflight.headers["access-control-allow-headers"] == "content-type"
            denied = await client.options(url, headers={**ask, "origin": "https://evil.example"})
            assert denied.status_code == 403
            assert "access-control-allow-origin" not in denied.headers
            assert server.statistics().forbidden == 2

    run(scenario)


def test_rpc_cors_all_allows_every_origin() -> None:
    async def scenario() -> None:
        async with serving(cors=CorsPolicy.parse("all")) as (_, address, _):
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    address.http_url,
                    content=call_body(),
                    headers={**JSON, "origin": "https://app.example.com"},
                )
            assert response.headers["access-control-allow-origin"] == "https://app.example.com"

    run(scenario)


async def handshake_status(address: ServerAddress, headers: list[tuple[bytes, bytes]]) -> int:
    try:
        async with trio_websocket.open_websocket_url(address.ws_url, extra_headers=headers):
            return 101
    except trio_websocket.ConnectionRejected as rejected:
        return int(rejected.status_code)


def test_websocket_from_another_origin_or_host_is_refused() -> None:
    async def scenario() -> None:
        async with serving() as (server, address, _):
            assert await handshake_status(address, [(b"origin", b"http://evil.example")]) == 403
            assert await handshake_status(address, [(b"origin", b"http://localhost:3000")]) == 101
            assert await handshake_status(address, []) == 101
            assert server.statistics().forbidden == 1
            assert server.statistics().open_websockets == 0

    run(scenario)


def test_a_loopback_server_answers_only_host_names_of_this_machine() -> None:
    async def scenario() -> None:
        async with serving() as (_, address, _), httpx.AsyncClient() as client:
            url = address.http_url
            rebound = await client.post(
                url, content=call_body(), headers={**JSON, "host": "evil.example"}
            )
            assert rebound.status_code == 403
            assert rebound.json()["error"]["message"] == (
                "host not allowed: evil.example; a node listening on loopback answers only "
                "localhost, 127.0.0.1 and [::1]"
            )
            named = await client.post(
                url, content=call_body(), headers={**JSON, "host": f"localhost:{address.port}"}
            )
            assert named.json() == result("echo")

    run(scenario)


def test_one_address_gets_its_share_of_the_connections() -> None:
    limits = RpcLimits(max_connections=10, max_connections_per_ip=2)

    async def scenario() -> None:
        async with serving(limits) as (server, address, _), trio.open_nursery() as nursery:
            first = await trio_websocket.connect_websocket_url(nursery, address.ws_url)
            second = await trio_websocket.connect_websocket_url(nursery, address.ws_url)
            third = await trio_websocket.connect_websocket_url(nursery, address.ws_url)
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await third.get_message()
            assert closed.value.reason is not None
            assert (closed.value.reason.code, closed.value.reason.reason) == (
                1013,
                "server is busy: the limit of 2 connections from one address is reached",
            )
            async with httpx.AsyncClient() as client:
                busy = await client.post(address.http_url, content=call_body(), headers=JSON)
            assert busy.status_code == 503
            assert server.statistics().connections_refused == 2
            await first.aclose()
            await eventually(lambda: server.statistics().open_websockets == 1)
            async with httpx.AsyncClient() as client:
                again = await client.post(address.http_url, content=call_body(), headers=JSON)
            assert again.json() == result("echo")
            await second.aclose()
            nursery.cancel_scope.cancel()

    run(scenario)


async def stall(port: int) -> trio.SocketStream:
    """A request that announces a body and sends none of it."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    head = (
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 100000\r\n\r\n"
    )
    await stream.send_all(head.encode())
    return stream


async def read_to_end(stream: trio.SocketStream) -> bytes:
    """Everything until the server disconnects."""
    answer = b""
    while chunk := await stream.receive_some():
        answer += chunk
    await stream.aclose()
    return answer


def test_a_body_that_never_arrives_takes_no_connection_slot_and_is_cut_off() -> None:
    limits = RpcLimits(max_connections=1, request_body_timeout=3)

    async def scenario() -> None:
        async with serving(limits) as (server, address, _):
            started = trio.current_time()
            stalled = await stall(address.port)
            await eventually(lambda: server.statistics().receiving_bodies == 1)
            assert server.statistics().open_connections == 0
            # Calls are answered meanwhile, from the same address, in the one connection slot.
            async with httpx.AsyncClient() as client:
                response = await client.post(address.http_url, content=call_body(), headers=JSON)
            assert response.json() == result("echo")
            # A second stalled body finds no place among the bodies in progress: 503 at once.
            refused = await read_to_end(await stall(address.port))
            assert refused.startswith(b"HTTP/1.1 503 ")
            assert b"the limit of 1 requests still sending their body is reached" in refused
            # The first is answered 408 at the timeout, and disconnected.
            answer = await read_to_end(stalled)
            assert 2.95 < trio.current_time() - started < 5
            assert answer.startswith(b"HTTP/1.1 408 ")
            assert answer.endswith(
                b'{"jsonrpc":"2.0","error":{"code":-32600,"message":"request timeout: the body '
                b'did not arrive within 3 s"},"id":null}'
            )
            statistics = server.statistics()
            assert (statistics.body_timeouts, statistics.receiving_bodies) == (1, 0)
            assert statistics.connections_refused == 1

    run(scenario)


def test_the_server_wide_subscription_budget() -> None:
    limits = RpcLimits(max_subscriptions=3)

    async def scenario() -> None:
        async with serving(limits) as (server, address, _):
            url = address.ws_url
            async with (
                trio_websocket.open_websocket_url(url) as one,
                trio_websocket.open_websocket_url(url) as two,
            ):
                batch = [request("test_subscribeFeed", id=i) for i in range(2)]
                assert all("result" in a for a in await ws_call(one, batch))
                answers = await ws_call(two, batch)
                assert "result" in answers[0]
                assert answers[1] == error(
                    -32006,
                    "too many subscriptions: the server already serves 3, its limit, "
                    "try again later",
                    1,
                )
                assert server.statistics().subscriptions == 3
            await eventually(lambda: server.statistics().subscriptions == 0)

    run(scenario)


def test_a_feed_subscriber_that_does_not_read_is_told_and_dropped() -> None:
    limits = RpcLimits(max_queued_bytes_per_connection=64 * 1024)

    async def scenario() -> None:
        async with serving(limits) as (server, address, feed):
            async with trio_websocket.open_websocket_url(
                address.ws_url, message_queue_size=0
            ) as ws:
                subscription = (await ws_call(ws, request("test_subscribeFeed")))["result"]
                # Published faster than anybody reads: the queue bound is reached at once.
                for n in range(2000):
                    feed.publish(n)
                    if n % 100 == 0:
                        await trio.lowlevel.checkpoint()
                assert len(feed) == 0
                assert server.statistics().subscriptions == 0
                received = []
                while "error" not in (message := json.loads(await ws.get_message()))["params"]:
                    received.append(message["params"]["result"]["n"])
                assert received == list(range(len(received)))
                assert 0 < len(received) < 200
                assert message["params"]["subscription"] == subscription
                assert message["params"]["error"]["code"] == -32021
                assert message["params"]["error"]["message"].startswith(
                    "subscription dropped: the client is too slow, "
                )
                assert message["params"]["error"]["message"].endswith(
                    "bytes of notifications were waiting on this connection"
                )
                assert await ws_call(ws, request("test_echo", id=2)) == result("echo", 2)

    run(scenario)
