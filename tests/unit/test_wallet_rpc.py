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
from node.commands.wallet import login_signature
from node.rpc.errors import RpcError
from node.rpc.registry import Method, Registry
from node.rpc.wallet_methods import WALLET_ERROR, register
from tests.unit.test_wallet_service import COORDINATOR, DEST, LOGIN, Network


def call(registry: Registry, name: str, *params: object) -> Any:
    entry = registry.get(name)
    assert isinstance(entry, Method)
    bound = entry.params.bind(name, list(params))

    async def main() -> Any:
        result = entry.handler(bound)
        return await result if inspect.isawaitable(result) else result

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_create_show_and_transfer_over_rpc(tmp_path: Path) -> None:
    net = Network(tmp_path)
    registry = Registry()
    register(registry, net.service(COORDINATOR), net.ledger)
    created = call(registry, "wallet_create", LOGIN.address)
    group = AccountId(bytes.fromhex(created["groupKey"][2:]))
    assert created["address"] == encode_address(group)
    assert created["threshold"] == 2
    assert created["committee"] == [encode_address(m) for m in net.committee]
    shown = call(registry, "wallet_show", created["address"])
    assert shown == {
        "address": created["address"],
        "groupKey": created["groupKey"],
        "committee": created["committee"],
        "threshold": 2,
        "login": LOGIN.address,
        "registeredAt": net.chain.number,
        "free": "0",
    }
    net.fund(group, 10**15)
    signature = login_signature(LOGIN, net.chain.genesis_hash, group, 0, DEST, 42)
    before = net.balance(DEST)
    tx_hash = call(
        registry, "wallet_transfer", created["address"], encode_address(DEST), "42",
        "0x" + signature.hex(),
    )  # fmt: skip
    assert tx_hash.startswith("0x") and len(tx_hash) == 66
    assert net.balance(DEST) == before + 42
    with pytest.raises(RpcError) as info:
        call(
            registry, "wallet_transfer", created["address"], encode_address(DEST), "42",
            "0x" + signature.hex(),
        )  # fmt: skip
    assert info.value.code == WALLET_ERROR
    assert info.value.message.startswith("0 of 3 committee members agreed to sign, 2 needed: ")
    assert call(registry, "wallet_show", encode_address(DEST)) is None
