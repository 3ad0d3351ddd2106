"""Safe and unsafe methods (`--rpc-methods`): which servers serve the unsafe ones, what a safe
server answers for them, what `rpc_methods` lists, and that every method a full node registers
says which it is."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from chain.keys import dev_keypair
from node.chain_spec import DEV_AUTHORITY, DEV_OPERATOR, resolve_spec
from node.rpc.exposure import RpcMethods, is_loopback
from node.rpc.jsonrpc import handle_payload
from node.rpc.limits import RpcLimits
from node.rpc.registry import Params, Registry
from node.runner import Node, NodeConfig


@pytest.mark.parametrize(
    ("methods", "host", "allowed"),
    [
        (RpcMethods.AUTO, "127.0.0.1", True),
        (RpcMethods.AUTO, "127.0.0.2", True),
        (RpcMethods.AUTO, "::1", True),
        (RpcMethods.AUTO, "localhost", True),
        (RpcMethods.AUTO, "0.0.0.0", False),
        (RpcMethods.AUTO, "::", False),
        (RpcMethods.AUTO, "192.168.1.10", False),
        (RpcMethods.AUTO, "node.example.com", False),
        (RpcMethods.SAFE, "127.0.0.1", False),
        (RpcMethods.SAFE, "0.0.0.0", False),
        (RpcMethods.UNSAFE, "127.0.0.1", True),
        (RpcMethods.UNSAFE, "0.0.0.0", True),
    ],
)
def test_which_servers_serve_unsafe_methods(methods: RpcMethods, host: str, allowed: bool) -> None:
    assert methods.allows_unsafe(host) is allowed


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.255.0.9", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "", "localhost.evil"))


def registry() -> Registry:
    registry = Registry()
    registry.add_method("test_public", lambda params: "public", unsafe=False)
    registry.add_method("test_admin", lambda params: "admin", unsafe=True)
    registry.add_method("test_forgotten", lambda params: "forgotten")

    async def nothing() -> AsyncIterator[int]:
        yield 1

    @registry.subscription(
        "test_subscribeAdmin",
        unsubscribe="test_unsubscribeAdmin",
        notification="test_admin",
        unsafe=True,
    )
    def subscribe(params: Params) -> AsyncIterator[int]:
        return nothing()

    return registry


def call(served: Registry, method: str) -> dict[str, object]:
    payload = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []})
    reply = trio.run(handle_payload, payload, served, RpcLimits(), None)
    assert reply.body is not None
    answer: dict[str, object] = json.loads(reply.body)
    return answer


def test_a_safe_server_refuses_unsafe_and_unclassified_methods_as_substrate_does() -> None:
    safe = registry().exposed(allow_unsafe=False)
    for method in ("test_admin", "test_forgotten", "test_subscribeAdmin", "test_unsubscribeAdmin"):
        assert call(safe, method)["error"] == {
            "code": -32601,
            "message": "RPC call is unsafe to be called externally",
            "data": f"{method} is an unsafe method, which this server does not serve (start the "
            "node with --rpc-methods unsafe to serve it, only where no stranger can reach the "
            "RPC port)",
        }
    assert call(safe, "test_public")["result"] == "public"
    assert call(safe, "test_nope")["error"] == {
        "code": -32601,
        "message": "method not found: test_nope",
    }
    assert call(safe, "rpc_methods")["result"] == {"methods": ["rpc_methods", "test_public"]}


def test_an_unsafe_server_serves_and_lists_everything() -> None:
    full = registry().exposed(allow_unsafe=True)
    assert call(full, "test_admin")["result"] == "admin"
    assert call(full, "test_forgotten")["result"] == "forgotten"
    assert call(full, "rpc_methods")["result"] == {
        "methods": [
            "rpc_methods",
            "test_admin",
            "test_forgotten",
            "test_public",
            "test_subscribeAdmin",
            "test_unsubscribeAdmin",
        ]
    }
    assert registry().unclassified() == ["test_forgotten"]


def test_every_method_of_a_full_node_says_whether_it_is_unsafe(tmp_path: Path) -> None:
    """Built as `statemesh node --dev` builds it (network, operator, wallet, workloads,
    ingress): a method added without a classification fails here."""
    config = NodeConfig(
        spec=resolve_spec("dev"),
        base_path=tmp_path,
        name="classified",
        signer=dev_keypair(DEV_AUTHORITY),
        operator=dev_keypair(DEV_OPERATOR),
        p2p_port=0,
        rpc_port=0,
    )
    node = Node.open(config)
    try:
        served = node.rpc.app.registry
        assert served.unclassified() == []
        names = set(served.names())
        assert {"system_peers", "node_workloads", "ingress_routes"} <= names
        assert {"chain_subscribeNewHeads", "author_submitExtrinsic", "wallet_show"} <= names
        safe = served.exposed(allow_unsafe=False)
        assert "system_peers" not in safe.names()
        assert "chain_getHeader" in safe.names()
    finally:
        node.db.close()
