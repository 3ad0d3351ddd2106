"""Substrate's head subscriptions on a real dev node, with a real WebSocket client: under every
name, the current header at once, then each new one in order (no gap, no repeat, each the child
of the one before); unsubscribe under the aliases; the digest in every header."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket

from testkit.nodes import NodeProcess, RpcFailure
from testkit.progress import STALL_SECONDS

pytestmark = pytest.mark.integration

SUBSCRIPTIONS = {
    "chain_subscribeNewHeads": ("chain_newHead", "chain_unsubscribeNewHeads"),
    "chain_subscribeNewHead": ("chain_newHead", "chain_unsubscribeNewHead"),
    "subscribe_newHead": ("chain_newHead", "unsubscribe_newHead"),
    "chain_subscribeFinalizedHeads": ("chain_finalizedHead", "chain_unsubscribeFinalizedHeads"),
    "chain_subscribeFinalisedHeads": ("chain_finalizedHead", "chain_unsubscribeFinalisedHeads"),
    "chain_subscribeAllHeads": ("chain_allHead", "chain_unsubscribeAllHeads"),
}
FOLLOWED = 3
"""New headers each subscription must deliver after its first one."""


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = NodeProcess(Path(tmp_path_factory.mktemp("heads")) / "node").start()
    try:
        yield node
    finally:
        node.stop()


def test_every_subscription_starts_with_the_current_header_then_follows_without_gap(
    dev: NodeProcess,
) -> None:
    url = dev.url.replace("http", "ws")

    async def scenario() -> tuple[dict[str, list[dict[str, Any]]], dict[str, str], list[Any]]:
        received: dict[str, list[dict[str, Any]]] = {}
        methods: dict[str, str] = {}
        answers: dict[int, Any] = {}
        async with trio_websocket.open_websocket_url(url) as ws:

            async def read() -> None:
                message = json.loads(await ws.get_message())
                if "id" in message:
                    answers[message["id"]] = message
                else:
                    params = message["params"]
                    methods[params["subscription"]] = message["method"]
                    received.setdefault(params["subscription"], []).append(params["result"])

            async def call(request_id: int, method: str, *params: object) -> Any:
                request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
                await ws.send_message(json.dumps(request))
                while request_id not in answers:
                    await read()
                return answers[request_id]

            ids: dict[str, str] = {}
            # The chain's own progress bounds the wait: a stalled chain fails it.
            with trio.fail_after(STALL_SECONDS):
                for n, name in enumerate(SUBSCRIPTIONS, start=1):
                    ids[name] = (await call(n, name))["result"]
                while any(len(received.get(i, [])) < 1 + FOLLOWED for i in ids.values()):
                    await read()
                closed = [
                    await call(100 + n, SUBSCRIPTIONS[name][1], ids[name])
                    for n, name in enumerate(SUBSCRIPTIONS)
                ]
        by_name = {name: received[ids[name]] for name in SUBSCRIPTIONS}
        notified = {name: methods[ids[name]] for name in SUBSCRIPTIONS}
        return by_name, notified, [answer["result"] for answer in closed]

    received, notified, closed = trio.run(scenario)
    assert closed == [True] * len(SUBSCRIPTIONS)
    for name, headers in received.items():
        assert notified[name] == SUBSCRIPTIONS[name][0]
        numbers = [int(h["number"], 16) for h in headers]
        # No gap, no repeat, and each header the child of the one before.
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), (name, numbers)
        for parent, child in pairwise(headers):
            assert child["parentHash"] == parent["hash"], name
        first = headers[0]
        # The first header was current when subscribing: it is stored, with its own hash.
        assert dev.call("chain_getHeader", first["hash"]) == first
        for header in headers:
            logs = header["digest"]["logs"]
            if header["number"] == "0x0":
                assert logs == []  # the genesis header has none, as Substrate's
                continue
            pre_runtime, seal = logs
            assert pre_runtime.startswith("0x06" + b"aura".hex() + "20")
            assert int.from_bytes(bytes.fromhex(pre_runtime[14:]), "little") == header["slot"]
            assert seal == "0x05" + b"aura".hex() + "0101" + header["seal"][2:]


def test_the_aliases_are_listed_by_rpc_methods(dev: NodeProcess) -> None:
    listed = set(dev.call("rpc_methods")["methods"])
    for subscribe, (_, unsubscribe) in SUBSCRIPTIONS.items():
        assert {subscribe, unsubscribe} <= listed


def test_a_head_subscription_over_http_is_refused(dev: NodeProcess) -> None:
    for name in SUBSCRIPTIONS:
        with pytest.raises(RpcFailure, match="need a WebSocket"):
            dev.call(name)
