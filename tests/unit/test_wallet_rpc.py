"""The wallet RPC methods over the in-memory committee, and the CLI's login signature."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from chain.address import encode_address
from chain.primitives import AccountId
from chain.runtime import wallets
from node.commands.wallet import login_signature
from node.rpc.errors import RpcError
from node.rpc.registry import Method, Registry
from node.rpc.wallet_methods import WALLET_ERROR, register
from tests.unit.test_towers import NODE_KEYS
from tests.unit.test_wallet_service import DEST, LOGIN, Network, run


def call(registry: Registry, name: str, *params: object) -> Any:
    entry = registry.get(name)
    assert isinstance(entry, Method)
    bound = entry.params.bind(name, list(params))

    async def main() -> Any:
        result = entry.handler(bound)
        return await result if inspect.isawaitable(result) else result

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_request_show_and_transfer_over_rpc(tmp_path: Path) -> None:
    net = Network(tmp_path)
    registry = Registry()
    request_id = net.request()
    coordinator = net.coordinator(request_id)
    register(registry, net.service(coordinator), net.ledger)
    # No method creates a wallet for the caller: the owner's own wallets.request does.
    assert registry.get("wallet_create") is None
    pending = call(registry, "wallet_request", request_id)
    committee = [encode_address(m) for m in net.committee]
    assert pending == {
        "id": request_id,
        "status": "pending",
        "purpose": "signing",
        "login": LOGIN.address,
        "committee": committee,
        "coordinator": committee[coordinator_index(net, coordinator)],
        "threshold": 2,
        "createdAt": net.chain.number,
        "expiresAt": net.chain.number + wallets.REQUEST_TTL_BLOCKS,
        "deposit": str(wallets.register_fee_bound(net.chain.runtime.config, 3)),
    }
    created = run(lambda: net.service(coordinator).create(request_id))
    address = encode_address(created.group_key)
    registered = call(registry, "wallet_request", request_id)
    shown = call(registry, "wallet_show", address)
    assert registered == {"id": request_id, "status": "registered", "wallet": shown}
    assert shown == {
        "address": address,
        "groupKey": "0x" + created.group_key.hex(),
        "committee": committee,
        "threshold": 2,
        "login": LOGIN.address,
        "registeredAt": net.chain.number,
        "free": "0",
        "purpose": "signing",
    }
    assert call(registry, "wallet_request", request_id + 1) is None
    group = AccountId(created.group_key)
    net.fund(group, 10**15)
    signature = login_signature(LOGIN, net.chain.genesis_hash, group, 0, DEST, 42)
    before = net.balance(DEST)
    tx_hash = call(
        registry, "wallet_transfer", address, encode_address(DEST), "42", "0x" + signature.hex(),
    )  # fmt: skip
    assert tx_hash.startswith("0x") and len(tx_hash) == 66
    assert net.balance(DEST) == before + 42
    with pytest.raises(RpcError) as info:
        call(
            registry, "wallet_transfer", address, encode_address(DEST), "42",
            "0x" + signature.hex(),
        )  # fmt: skip
    assert info.value.code == WALLET_ERROR
    assert info.value.message.startswith("0 of 3 committee members agreed to sign, 2 needed: ")
    assert call(registry, "wallet_show", encode_address(DEST)) is None


def coordinator_index(net: Network, node: int) -> int:
    return net.committee.index(NODE_KEYS[node].public)


def test_an_expired_request(tmp_path: Path) -> None:
    net = Network(tmp_path)
    registry = Registry()
    register(registry, net.service(0), net.ledger)
    request_id = net.request()
    for _ in range(wallets.REQUEST_TTL_BLOCKS):
        net.chain.execute([])
    assert call(registry, "wallet_request", request_id) == {"id": request_id, "status": "expired"}
