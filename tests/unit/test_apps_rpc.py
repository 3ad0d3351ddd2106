"""The application queries over RPC: an app's instance, and the deleted instances of a name
whose volumes are still kept (`apps_retained`), on a real chain database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import rlp
import trio

from chain.address import encode_address
from chain.blocks import Call
from chain.keys import Keypair, sign_transaction
from consensus.chain_service import ChainService
from node.chain_spec import development_spec
from node.commands.app import autoscaling_lines
from node.rpc.errors import RpcError
from node.rpc.methods import SystemInfo, build_registry
from node.rpc.registry import Registry
from tests.factories import ALICE, BOB
from tests.unit.test_app_retention import db
from tests.unit.test_apps import CREATE, DELETE
from tests.unit.test_apps_autoscaling import autoscaled
from tests.unit.test_chain_service import block_at, open_chain
from tests.unit.test_wallet_rpc import call

RETENTION_MS = 30_000
"""The development chain's, which `open_chain` runs."""


class Chain:
    def __init__(self, path: Path) -> None:
        self.service: ChainService = open_chain(path)
        self.slot = 0
        self.nonces: dict[bytes, int] = {}
        info = SystemInfo("test", "0", development_spec())
        self.registry: Registry = build_registry(self.service, info)

    def send(self, keypair: Keypair, call: Call) -> None:
        nonce = self.nonces.get(keypair.public, 0)
        self.nonces[keypair.public] = nonce + 1
        tx = sign_transaction(
            keypair, genesis_hash=self.service.runtime.genesis_hash, nonce=nonce, call=call
        )
        self.slot += 1
        store = self.service.store
        block = block_at(self.service, store.best_hash, self.slot, [rlp.encode(tx)])
        assert len(block.extrinsics) == 1
        assert trio.run(self.service.import_block, block)


def test_an_app_shows_its_instance_and_a_deleted_one_its_retention(tmp_path: Path) -> None:
    chain = Chain(tmp_path / "db")
    registry = chain.registry
    chain.send(ALICE, CREATE.call(manifest=db()))
    assert call(registry, "apps_get", "db")["instance"] == 1
    assert call(registry, "apps_retained", "db") == []
    chain.send(ALICE, DELETE.call(app="db"))
    deleted_at = chain.slot  # one block per slot from genesis
    assert call(registry, "apps_get", "db") is None
    alices = {
        "name": "db",
        "owner": encode_address(ALICE.public),
        "instance": 1,
        "deletedAt": deleted_at,
        "retainedUntil": chain.slot * 1_000 + RETENTION_MS,
    }
    assert call(registry, "apps_retained", "db") == [alices]
    chain.send(BOB, CREATE.call(manifest=db()))
    got = call(registry, "apps_get", "db")
    assert (got["owner"], got["instance"]) == (encode_address(BOB.public), 2)
    assert call(registry, "apps_retained", "db") == [alices]
    # At an earlier block, before the delete.
    first = chain.service.store.canonical_hash(1)
    assert first is not None
    assert call(registry, "apps_retained", "db", "0x" + first.hex()) == []
    assert call(registry, "apps_get", "db", "0x" + first.hex())["instance"] == 1


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (7, "invalid param 'name': expected an application name"),
        (None, "missing required param 'name' (position 0)"),
        ("", "invalid param 'name': an application name is 1 to 63 bytes"),
        ("x" * 64, "invalid param 'name': an application name is 1 to 63 bytes"),
        ("é" * 32, "invalid param 'name': an application name is 1 to 63 bytes"),
        ("\ud800", "invalid param 'name': an application name is text"),
    ],
)
def test_bad_names_are_invalid_params(tmp_path: Path, name: Any, message: str) -> None:
    registry = Chain(tmp_path / "db").registry
    for method in ("apps_retained", "apps_get", "apps_autoscaling"):
        with pytest.raises(RpcError) as info:
            call(registry, method, *([] if name is None else [name]))
        assert (info.value.code, info.value.message) == (-32602, message)


def test_an_unknown_block_is_refused(tmp_path: Path) -> None:
    registry = Chain(tmp_path / "db").registry
    with pytest.raises(RpcError) as info:
        call(registry, "apps_retained", "db", "0x" + "11" * 32)
    assert info.value.message == "unknown block 0x" + "11" * 32


def test_an_autoscaled_app_shows_its_autoscaler(tmp_path: Path) -> None:
    chain = Chain(tmp_path / "db")
    registry = chain.registry
    chain.send(ALICE, CREATE.call(manifest=db()))
    assert call(registry, "apps_autoscaling", "db") is None
    assert call(registry, "apps_autoscaling", "nope") is None
    chain.send(ALICE, CREATE.call(manifest=autoscaled()))
    got = call(registry, "apps_autoscaling", "web")
    assert got == {
        "minReplicas": 2,
        "maxReplicas": 6,
        "targetCPUUtilizationPercentage": 60,
        "behavior": {
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "selectPolicy": "Max",
                "policies": [
                    {"type": "Pods", "value": 4, "periodSeconds": 15},
                    {"type": "Percent", "value": 100, "periodSeconds": 15},
                ],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": 300,
                "selectPolicy": "Max",
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
            },
        },
        "currentReplicas": 0,  # no active node on this chain: both replicas pending
        "desiredReplicas": 2,
        "utilisation": None,
        "lastPeriod": None,
        "reason": None,
        "decisions": [],
    }
    change = {"period": 3, "from": 2, "to": 4, "utilisation": 120, "reason": "ScaleUp: x"}
    shown = {**got, "utilisation": 120, "lastPeriod": 3, "reason": "ScaleUp: x"}
    lines = autoscaling_lines({**shown, "decisions": [change]})
    assert lines == [
        "  autoscaling 2 to 6 replicas at 60% CPU: current 0  desired 2  utilisation 120%",
        "    last decision (period 3): ScaleUp: x",
        "    period 3: 2 -> 4  ScaleUp: x",
    ]
