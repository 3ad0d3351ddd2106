"""The JSON-RPC server end to end: a real hypercorn server on 127.0.0.1 (ephemeral port), with
httpx for HTTP and trio-websocket for WebSocket as clients."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio_websocket
import wsproto
import wsproto.events

from node.rpc.errors import RpcError
from node.rpc.hello import hello_app
from node.rpc.limits import RpcLimits
from node.rpc.registry import Params, Registry
from node.rpc.server import RpcApp, RpcServer
from node.rpc.serving import ServerAddress, serve_asgi
from testkit import waiting

# -- the methods the tests call --------------------------------------------------------------


@dataclass
class Probe:
    """What the test methods let the tests observe and control."""

    release: trio.Event = field(default_factory=trio.Event)
    entered: trio.Event = field(default_factory=trio.Event)
    closed: list[str] = field(default_factory=list)
    closed_event: trio.Event = field(default_factory=trio.Event)


def build_registry(probe: Probe) -> Registry:
    registry = Registry()

    @registry.method("test_add", params=["a", "b?"])
    def add(params: Params) -> int:
        return params.required("a", int) + params.optional("b", int, 0)

    @registry.method("test_wait")
    async def wait(params: Params) -> str:
        probe.entered.set()
        await probe.release.wait()
        return "released"

    @registry.method("test_fail")
    def fail(params: Params) -> None:
        raise RpcError(4003, "unknown block 0x00")

    @registry.method("test_crash")
    def crash(params: Params) -> None:
        raise RuntimeError("disk at /secret/path is on fire")

    @registry.method("test_big", params=["size"])
    def big(params: Params) -> str:
        return "x" * params.required("size", int)

    async def count(limit: int, then: RpcError | None = None) -> AsyncIterator[int]:
        for i in range(limit):
            await trio.lowlevel.checkpoint()
            yield i
        if then is not None:
            raise then

    @registry.subscription(
        "test_subscribeCount",
        unsubscribe="test_unsubscribeCount",
        notification="test_count",
        params=["limit"],
    )
    async def subscribe_count(params: Params) -> AsyncIterator[int]:
        return count(params.required("limit", int))

    @registry.subscription(
        "test_subscribeFailing",
        unsubscribe="test_unsubscribeFailing",
        notification="test_failing",
    )
    async def subscribe_failing(params: Params) -> AsyncIterator[int]:
        return count(2, then=RpcError(1010, "invalid: bad nonce"))

    async def forever(name: str) -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                await trio.sleep(0.005)
        finally:
            probe.closed.append(name)
            probe.closed_event.set()

    @registry.subscription(
        "test_subscribeForever",
        unsubscribe="test_unsubscribeForever",
        notification="test_forever",
        params=["name?"],
    )
    def subscribe_forever(params: Params) -> AsyncIterator[int]:
        return forever(params.optional("name", str, "forever"))

    async def not_json() -> AsyncIterator[object]:
        yield 1
        yield object()

    @registry.subscription(
        "test_subscribeNotJson",
        unsubscribe="test_unsubscribeNotJson",
        notification="test_notJson",
    )
    def subscribe_not_json(params: Params) -> AsyncIterator[object]:
        return not_json()

    async def burst() -> AsyncIterator[int]:
        # No checkpoint: the producer outruns any socket, as a flood of blocks would.
        for i in range(100):
            yield i

    @registry.subscription(
        "test_subscribeBurst",
        unsubscribe="test_unsubscribeBurst",
        notification="test_burst",
    )
    def subscribe_burst(params: Params) -> AsyncIterator[int]:
        return burst()

    return registry


# -- harness ---------------------------------------------------------------------------------


@dataclass
class Served:
    server: RpcServer
    address: ServerAddress
    probe: Probe

    @property
    def url(self) -> str:
        return self.address.http_url


@asynccontextmanager
async def serving(limits: RpcLimits | None = None) -> AsyncIterator[Served]:
    probe = Probe()
    server = RpcServer(build_registry(probe), host="127.0.0.1", port=0, limits=limits)
    async with trio.open_nursery() as nursery:
        address: ServerAddress = await nursery.start(server.run)
        yield Served(server, address, probe)
        nursery.cancel_scope.cancel()


def run(scenario: Callable[[], Awaitable[None]], timeout: float = 10.0) -> None:
    async def main() -> None:
        with trio.fail_after(timeout):
            await scenario()

    trio.run(main)


def request(method: str, params: object = None, id: object = 1) -> dict[str, object]:
    message: dict[str, object] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        message["params"] = params
    return message


def error(code: int, message: str, id: object = None) -> dict[str, object]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id}


def result(value: object, id: object = 1) -> dict[str, object]:
    return {"jsonrpc": "2.0", "result": value, "id": id}


async def post(client: httpx.AsyncClient, url: str, payload: object) -> httpx.Response:
    return await client.post(url, json=payload)


async def ws_call(ws: trio_websocket.WebSocketConnection, payload: object) -> Any:
    await ws.send_message(json.dumps(payload))
    return json.loads(await ws.get_message())


def close_reason(closed: trio_websocket.ConnectionClosed) -> tuple[int, str | None]:
    assert closed.reason is not None
    return closed.reason.code, closed.reason.reason


eventually = partial(waiting.eventually, seconds=2.0, every=0.01)
"""For the server to notice something the client did on its socket."""


async def still_serves(served: Served) -> None:
    async with httpx.AsyncClient() as client:
        response = await post(client, served.url, request("test_add", [40, 2], id="after"))
    assert response.json() == result(42, id="after")


# -- HTTP ------------------------------------------------------------------------------------


def test_started_value_is_the_bound_address() -> None:
    async def scenario() -> None:
        async with serving() as served:
            assert served.address.host == "127.0.0.1"
            assert served.address.port > 0
            _, port = served.address
            assert served.url == f"http://127.0.0.1:{port}/"
            assert served.address.ws_url == f"ws://127.0.0.1:{port}/"

    run(scenario)


def test_http_calls_positional_and_named_on_one_keep_alive_connection() -> None:
    async def scenario() -> None:
        async with serving() as served, httpx.AsyncClient() as client:
            ports = set()
            for i in range(5):
                response = await post(client, served.url, request("test_add", [i, 1], id=i))
                assert response.status_code == 200
                assert response.headers["content-type"] == "application/json"
                assert response.json() == result(i + 1, id=i)
                response = await post(client, served.url, request("test_add", {"a": i}, id=i))
                assert response.json() == result(i, id=i)
                ports.add(response.extensions["network_stream"].get_extra_info("client_addr"))
            assert len(ports) == 1  # one connection, kept alive
            assert served.server.statistics().requests_served == 10

    run(scenario)


def test_every_error_code_over_http_and_the_server_keeps_serving() -> None:
    cases: list[tuple[bytes, dict[str, object]]] = [
        (
            b"{nope",
            error(
                -32700,
                "parse error: Expecting property name enclosed in double quotes at line 1 column 2",
            ),
        ),
        (
            b'{"jsonrpc":"2.0","id":1}',
            error(-32600, 'invalid request: "method" must be a string, got null', 1),
        ),
        (
            json.dumps(request("test_nope")).encode(),
            error(-32601, "method not found: test_nope", 1),
        ),
        (
            json.dumps(request("test_add", ["x"])).encode(),
            error(-32602, "invalid param 'a': expected integer, got string", 1),
        ),
        (json.dumps(request("test_crash")).encode(), error(-32603, "internal error", 1)),
        (json.dumps(request("test_fail")).encode(), error(4003, "unknown block 0x00", 1)),
        (
            json.dumps(request("test_subscribeCount", [3])).encode(),
            error(
                -32020,
                "test_subscribeCount is a subscription method: subscriptions need a WebSocket "
                "connection",
                1,
            ),
        ),
    ]

    async def scenario() -> None:
        async with serving() as served, httpx.AsyncClient() as client:
            for body, expected in cases:
                response = await client.post(
                    served.url, content=body, headers={"content-type": "application/json"}
                )
                assert (response.status_code, response.json()) == (200, expected)
                await still_serves(served)

    run(scenario)


def test_internal_errors_do_not_leak_to_the_client(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with serving() as served, httpx.AsyncClient() as client:
            response = await post(client, served.url, request("test_crash"))
            assert "secret" not in response.text

    run(scenario)
    assert "RPC method test_crash failed" in caplog.text
    assert "disk at /secret/path is on fire" in caplog.text  # the traceback stays server-side


def test_http_batch_mixed_and_notifications_only() -> None:
    async def scenario() -> None:
        async with serving() as served, httpx.AsyncClient() as client:
            batch = [
                request("test_add", [1, 1], id=1),
                {"jsonrpc": "2.0", "method": "test_add", "params": [1]},
                {"jsonrpc": "2.0", "method": 7, "id": 2},
                request("test_nope", id=3),
            ]
            response = await post(client, served.url, batch)
            assert response.json() == [
                result(2, id=1),
                error(-32600, 'invalid request: "method" must be a string, got integer', 2),
                error(-32601, "method not found: test_nope", 3),
            ]
            response = await post(
                client, served.url, [{"jsonrpc": "2.0", "method": "test_add", "params": [1]}] * 2
            )
            assert (response.status_code, response.content) == (204, b"")
            response = await post(
                client, served.url, {"jsonrpc": "2.0", "method": "test_add", "params": [1]}
            )
            assert (response.status_code, response.content) == (204, b"")
            response = await post(client, served.url, [])
            assert response.json() == error(-32600, "invalid request: empty batch")
            await still_serves(served)

    run(scenario)


def test_http_routes_methods_and_content_types() -> None:
    async def scenario() -> None:
        async with serving() as served, httpx.AsyncClient() as client:
            response = await client.get(served.url)
            assert response.status_code == 405
            assert response.headers["allow"] == "POST, OPTIONS"
            assert response.json() == error(
                -32600,
                "use POST with Content-Type: application/json for JSON-RPC calls, or open a "
                "WebSocket on this address",
            )
            response = await client.get(served.url + "health")
            assert (response.status_code, response.json()) == (200, {"status": "ok"})
            response = await post(client, served.url + "other", request("test_add", [1]))
            assert (response.status_code, response.json()) == (
                404,
                error(-32600, "not found: /other; JSON-RPC is served on /"),
            )
            body = json.dumps(request("test_add", [1])).encode()
            unsupported = error(
                -32600,
                "unsupported content type: JSON-RPC calls need Content-Type: application/json",
            )
            for headers in ({}, {"content-type": "text/plain"}):
                response = await client.post(served.url, content=body, headers=headers)
                assert (response.status_code, response.json()) == (415, unsupported)
            response = await client.post(
                served.url,
                content=body,
                headers={"content-type": "Application/JSON; charset=utf-8"},
            )
            assert response.json() == result(1)

    run(scenario)


def test_oversize_body_is_413_with_a_json_rpc_error() -> None:
    limits = RpcLimits(max_request_bytes=1000)
    too_large = error(-32007, "request too large: the body exceeds 1000 bytes")

    async def scenario() -> None:
        async with serving(limits) as served, httpx.AsyncClient() as client:
            payload = request("test_big", ["y" * 1000])
            response = await post(client, served.url, payload)
            assert (response.status_code, response.json()) == (413, too_large)

            # Streamed without a length: the limit is enforced while reading.
            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(4):
                    yield b" " * 400

            response = await client.post(
                served.url, content=chunks(), headers={"content-type": "application/json"}
            )
            assert (response.status_code, response.json()) == (413, too_large)
            # At the limit exactly is fine.
            body = json.dumps(request("test_add", [1])).encode()
            body = body + b" " * (1000 - len(body))
            response = await client.post(
                served.url, content=body, headers={"content-type": "application/json"}
            )
            assert response.json() == result(1)
            await still_serves(served)

    run(scenario)


def test_oversize_response_becomes_an_error() -> None:
    limits = RpcLimits(max_response_bytes=1000)

    async def scenario() -> None:
        async with serving(limits) as served, httpx.AsyncClient() as client:
            response = await post(client, served.url, request("test_big", [2000]))
            assert response.json() == error(
                -32008, "response too large: 2036 bytes, the limit is 1000", 1
            )
            response = await post(client, served.url, request("test_big", [900]))
            assert response.json() == result("x" * 900)

    run(scenario)


# -- connection limit ------------------------------------------------------------------------


def test_http_requests_in_flight_count_against_the_connection_limit() -> None:
    limits = RpcLimits(max_connections=1)
    busy = error(-32009, "server is busy: the limit of 1 connections is reached, try again later")

    async def scenario() -> None:
        async with serving(limits) as served, httpx.AsyncClient() as client:
            answers: list[Any] = []

            async def slow_call() -> None:
                async with httpx.AsyncClient() as other:
                    answers.append((await post(other, served.url, request("test_wait"))).json())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow_call)
                await served.probe.entered.wait()
                response = await post(client, served.url, request("test_add", [1]))
                assert (response.status_code, response.json()) == (503, busy)
                assert response.headers["retry-after"] == "1"
                served.probe.release.set()
            assert answers == [result("released")]
            await still_serves(served)
            assert served.server.statistics().connections_refused == 1

    run(scenario)


def test_websockets_count_against_the_connection_limit() -> None:
    limits = RpcLimits(max_connections=2)

    async def scenario() -> None:
        async with serving(limits) as served:
            url = served.address.ws_url
            async with trio_websocket.open_websocket_url(url) as first:
                async with trio_websocket.open_websocket_url(url) as second:
                    assert await ws_call(second, request("test_add", [1])) == result(1)
                    assert served.server.statistics().open_connections == 2
                    async with httpx.AsyncClient() as client:
                        response = await post(client, served.url, request("test_add", [1]))
                    assert response.status_code == 503
                    async with trio_websocket.open_websocket_url(url) as third:
                        with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                            await third.get_message()
                        assert close_reason(closed.value) == (
                            1013,
                            "server is busy: the limit of 2 connections is reached",
                        )
                assert await ws_call(first, request("test_add", [2])) == result(2)
                await eventually(lambda: served.server.statistics().open_connections == 1)
                await still_serves(served)
            assert served.server.statistics().connections_refused == 2

    run(scenario)


# -- WebSocket -------------------------------------------------------------------------------


def test_websocket_calls_batches_and_errors() -> None:
    async def scenario() -> None:
        async with serving() as served:
            async with trio_websocket.open_websocket_url(served.address.ws_url) as ws:
                assert await ws_call(ws, request("test_add", {"a": 1, "b": 2})) == result(3)
                assert await ws_call(ws, [request("test_add", [1], id=1), request("x", id=2)]) == [
                    result(1, 1),
                    error(-32601, "method not found: x", 2),
                ]
                await ws.send_message("{oops")
                assert json.loads(await ws.get_message()) == error(
                    -32700,
                    "parse error: Expecting property name enclosed in double quotes at line 1 "
                    "column 2",
                )
                await ws.send_message(json.dumps(request("test_add", [5])).encode())  # binary
                assert json.loads(await ws.get_message()) == result(5)
                # A notification gets nothing: the next message answers the next call.
                await ws.send_message(
                    json.dumps({"jsonrpc": "2.0", "method": "test_add", "params": [1]})
                )
                assert await ws_call(ws, request("test_add", [6])) == result(6)

    run(scenario)


def test_websocket_path_other_than_root_is_refused() -> None:
    async def scenario() -> None:
        async with serving() as served:
            with pytest.raises(trio_websocket.ConnectionRejected) as refused:
                async with trio_websocket.open_websocket_url(served.address.ws_url + "other"):
                    pass
            assert refused.value.status_code == 404

    run(scenario)


def test_oversize_websocket_message_is_answered_then_closed_with_1009() -> None:
    limits = RpcLimits(max_request_bytes=1000)

    async def scenario() -> None:
        async with serving(limits) as served:
            async with trio_websocket.open_websocket_url(served.address.ws_url) as ws:
                await ws.send_message(json.dumps(request("test_big", ["é" * 600])))
                assert json.loads(await ws.get_message()) == error(
                    -32007, "request too large: the message exceeds 1000 bytes"
                )
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await ws.get_message()
                assert close_reason(closed.value) == (1009, "message too big")
            await still_serves(served)

    run(scenario)


async def next_message(ws: trio_websocket.WebSocketConnection) -> Any:
    return json.loads(await ws.get_message())


def test_subscription_delivers_in_order_then_ends_by_itself() -> None:
    async def scenario() -> None:
        async with serving() as served:
            async with trio_websocket.open_websocket_url(served.address.ws_url) as ws:
                subscribed = await ws_call(ws, request("test_subscribeCount", [20], id=7))
                subscription = subscribed["result"]
                assert subscribed == result(subscription, id=7)
                assert isinstance(subscription, str)
                for i in range(20):
                    assert await next_message(ws) == {
                        "jsonrpc": "2.0",
                        "method": "test_count",
                        "params": {"subscription": subscription, "result": i},
                    }
                # Ended by itself: it is gone, and nothing more arrives.
                assert await ws_call(ws, request("test_unsubscribeCount", [subscription])) == (
                    result(False)
                )
                assert served.server.statistics().subscriptions == 0

    run(scenario)


def test_subscription_ending_with_an_error_notifies_it() -> None:
    async def scenario() -> None:
        async with serving() as served:
            async with trio_websocket.open_websocket_url(served.address.ws_url) as ws:
                subscription = (await ws_call(ws, request("test_subscribeFailing")))["result"]
                messages = [await next_message(ws) for _ in range(3)]
                assert [m["params"] for m in messages] == [
                    {"subscription": subscription, "result": 0},
                    {"subscription": subscription, "result": 1},
                    {
                        "subscription": subscription,
                        "error": {"code": 1010, "message": "invalid: bad nonce"},
                    },
                ]

    run(scenario)


def test_subscription_item_that_is_not_json_ends_it_with_an_internal_error() -> None:
    async def scenario() -> None:
        async with serving() as served:
            async with trio_websocket.open_websocket_url(served.address.ws_url) as ws:
                subscription = (await ws_call(ws, request("test_subscribeNotJson")))["result"]
                messages = [(await next_message(ws))["params"] for _ in range(2)]
                assert messages == [
                    {"subscription": subscription, "result": 1},
                    {
                        "subscription": subscription,
                        "error": {"code": -32603, "message": "internal error"},
                    },
                ]
                assert await ws_call(ws, request("test_add", [1])) == result(1)

    run(scenario)


def test_websocket_calls_are_answered_in_the_order_sent() -> None:
    async def scenario() -> None:
        async with serving() as served:
            async with trio_websocket.open_websocket_url(served.address.ws_url) as ws:
                for i in range(50):
                    await ws.send_message(json.dumps(request("test_add", [i], id=i)))
                answers = [await next_message(ws) for _ in range(50)]
                assert answers == [result(i, id=i) for i in range(50)]
                assert served.server.statistics().requests_served == 50

    run(scenario)


def test_unsubscribe_stops_notifications_and_closes_the_producer() -> None:
    async def scenario() -> None:
        async with serving() as served:
            async with trio_websocket.open_websocket_url(served.address.ws_url) as ws:
                subscription = (await ws_call(ws, request("test_subscribeForever")))["result"]
                for i in range(3):
                    assert (await next_message(ws))["params"]["result"] == i
                assert served.server.statistics().subscriptions == 1
                await ws.send_message(
                    json.dumps(request("test_unsubscribeForever", [subscription], id="u"))
                )
                while (message := await next_message(ws)).get("id") != "u":
                    assert message["method"] == "test_forever"  # already on its way
                assert message == result(True, id="u")
                await served.probe.closed_event.wait()
                assert served.probe.closed == ["forever"]
                # Nothing follows the unsubscribe answer.
                assert await ws_call(ws, request("test_add", [1], id="next")) == result(1, "next")
                assert served.server.statistics().subscriptions == 0
                # The wrong kind of unsubscribe does not close someone else's subscription.
                other = (await ws_call(ws, request("test_subscribeCount", [0])))["result"]
                assert await ws_call(ws, request("test_unsubscribeForever", [other])) == (
                    result(False)
                )

    run(scenario)


def test_subscription_limit_per_connection() -> None:
    limits = RpcLimits(max_subscriptions_per_connection=3)

    async def scenario() -> None:
        async with serving(limits) as served:
            url = served.address.ws_url
            async with trio_websocket.open_websocket_url(url) as ws:
                # One batch, so no notification interleaves with the answers.
                batch = [request("test_subscribeForever", [f"s{i}"], id=i) for i in range(4)]
                answers = await ws_call(ws, batch)
                ids = [a["result"] for a in answers[:3]]
                assert len(set(ids)) == 3
                assert answers[3] == error(
                    -32006, "too many subscriptions: this connection already has 3, the limit", 3
                )
                assert served.server.statistics().subscriptions == 3
                # Another connection has its own allowance.
                async with trio_websocket.open_websocket_url(url) as other:
                    assert "result" in await ws_call(other, request("test_subscribeCount", [0]))
                await ws.send_message(
                    json.dumps(request("test_unsubscribeForever", [ids[0]], id="u"))
                )
                while (await next_message(ws)).get("id") != "u":
                    pass
                await ws.send_message(
                    json.dumps(request("test_subscribeForever", ["again"], id="a"))
                )
                while (message := await next_message(ws)).get("id") != "a":
                    pass
                assert isinstance(message["result"], str)

    run(scenario)


def test_slow_subscriber_is_told_and_dropped() -> None:
    limits = RpcLimits(subscription_buffer=4)

    async def scenario() -> None:
        async with serving(limits) as served:
            async with trio_websocket.open_websocket_url(served.address.ws_url) as ws:
                subscription = (await ws_call(ws, request("test_subscribeBurst")))["result"]
                messages = []
                while "error" not in (message := await next_message(ws))["params"]:
                    messages.append(message["params"]["result"])
                assert messages == list(range(len(messages)))  # in order, a prefix
                assert message == {
                    "jsonrpc": "2.0",
                    "method": "test_burst",
                    "params": {
                        "subscription": subscription,
                        "error": {
                            "code": -32021,
                            "message": "subscription dropped: the client is too slow, "
                            "4 notifications were waiting",
                        },
                    },
                }
                assert await ws_call(ws, request("test_unsubscribeBurst", [subscription])) == (
                    result(False)
                )
                assert await ws_call(ws, request("test_add", [1])) == result(1)
                assert served.server.statistics().subscriptions == 0

    run(scenario)


def test_closing_the_socket_cancels_its_subscriptions() -> None:
    async def scenario() -> None:
        async with serving() as served:
            async with trio_websocket.open_websocket_url(served.address.ws_url) as ws:
                await ws_call(ws, request("test_subscribeForever", ["gone"]))
                await next_message(ws)
            await served.probe.closed_event.wait()
            assert served.probe.closed == ["gone"]
            await eventually(lambda: served.server.statistics().open_websockets == 0)
            assert served.server.statistics().subscriptions == 0

    run(scenario)


def test_cancelling_the_server_ends_everything_promptly() -> None:
    async def scenario() -> None:
        probe = Probe()
        server = RpcServer(build_registry(probe), port=0)
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                address = await nursery.start(server.run)
                ws = await trio_websocket.connect_websocket_url(nursery, address.ws_url)
                await ws_call(ws, request("test_subscribeForever", ["live"]))
                await next_message(ws)
                async with httpx.AsyncClient() as client:
                    nursery.start_soon(post, client, address.http_url, request("test_wait"))
                    await probe.entered.wait()
                    nursery.cancel_scope.cancel()
        assert probe.closed == ["live"]
        assert server.statistics().open_connections == 0

    run(scenario)


def test_idle_websockets_outlive_the_http_keep_alive_timeout() -> None:
    async def scenario() -> None:
        app = RpcApp(build_registry(Probe()))
        async with trio.open_nursery() as nursery:
            address: ServerAddress = await nursery.start(
                lambda task_status: serve_asgi(
                    app, "127.0.0.1", 0, keep_alive_timeout=0.1, task_status=task_status
                )
            )
            async with trio_websocket.open_websocket_url(address.ws_url) as ws:
                await trio.sleep(0.5)
                assert await ws_call(ws, request("test_add", [1])) == result(1)
            nursery.cancel_scope.cancel()

    run(scenario)


def test_the_server_sends_no_frame_but_answers() -> None:
    # A short-lived client connects, makes one call and closes; a ping the server sent on its
    # own (hypercorn's first one left the moment the socket was accepted) could reach it while
    # closing, and trio-websocket then failed answering it. Read the raw frames: only the
    # answer comes.
    async def scenario() -> None:
        async with serving() as served:
            host, port = served.address
            stream = await trio.open_tcp_stream(host, port)
            client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
            await stream.send_all(client.send(wsproto.events.Request(host=host, target="/")))
            events: list[wsproto.events.Event] = []
            call = json.dumps(request("test_add", [2]))
            with trio.move_on_after(1.0):
                while True:
                    client.receive_data(await stream.receive_some())
                    for event in client.events():
                        events.append(event)
                        if isinstance(event, wsproto.events.AcceptConnection):
                            await stream.send_all(
                                client.send(wsproto.events.TextMessage(data=call))
                            )
            await stream.aclose()
            assert [type(event) for event in events] == [
                wsproto.events.AcceptConnection,
                wsproto.events.TextMessage,
            ], events
            assert json.loads(events[1].data) == result(2)

    run(scenario)


def test_accepted_connections_are_probed_by_tcp_keep_alive() -> None:
    # Quiet WebSockets are kept in NAT tables, and dropped once their peer vanishes, by the
    # kernel's keep-alive probes: ss shows the timer on the server's side of the connection.
    async def scenario() -> None:
        async with serving() as served:
            async with trio_websocket.open_websocket_url(served.address.ws_url) as ws:
                assert await ws_call(ws, request("test_add", [1])) == result(1)
                _, port = served.address
                for _ in range(50):  # the timer shows once the answer is acknowledged
                    shown = await trio.run_process(
                        ["ss", "-tnoH", "state", "established", f"( sport = :{port} )"],
                        capture_stdout=True,
                    )
                    lines = shown.stdout.decode().splitlines()
                    assert len(lines) == 1, lines
                    if "timer:(keepalive," in lines[0]:
                        break
                    await trio.sleep(0.05)
                assert "timer:(keepalive," in lines[0], lines[0]

    run(scenario)


# -- measurement -----------------------------------------------------------------------------


def test_measure_requests_per_second_against_hello_world(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not a timed assertion: prints req/s of a trivial method and of a bare app, same stack."""
    count = 400
    figures: dict[str, float] = {}

    async def measure(name: str, url: str, payload: bytes) -> None:
        async with httpx.AsyncClient() as client:
            headers = {"content-type": "application/json"}
            await client.post(url, content=payload, headers=headers)  # connect and warm up
            start = time.perf_counter()
            for _ in range(count):
                response = await client.post(url, content=payload, headers=headers)
                assert response.status_code == 200
            figures[name] = count / (time.perf_counter() - start)

    async def scenario() -> None:
        payload = json.dumps(request("test_add", [1, 2])).encode()
        async with serving() as served:
            await measure("rpc test_add", served.url, payload)
        async with trio.open_nursery() as nursery:
            address: ServerAddress = await nursery.start(
                lambda task_status: serve_asgi(hello_app, "127.0.0.1", 0, task_status=task_status)
            )
            await measure("hello world", address.http_url, payload)
            nursery.cancel_scope.cancel()

    run(scenario, timeout=25)
    with capsys.disabled():
        ratio = figures["rpc test_add"] / figures["hello world"]
        print(
            f"\nHTTP keep-alive, one client, {count} requests: "
            f"rpc {figures['rpc test_add']:.0f} req/s, hello {figures['hello world']:.0f} req/s, "
            f"ratio {ratio:.2f}"
        )
