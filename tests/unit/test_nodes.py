"""The `nodes` module's declared capacity: a node may offer no compute at all (zero of every
resource), anything between zero and its class minimums is refused, and only a node's operator
may change what it declares."""

from __future__ import annotations

import pytest

from chain.blocks import Call
from chain.runtime import nodes
from chain.runtime.nodes import Nodes
from tests.factories import BOB, CHARLIE
from tests.unit.test_towers import NODE_KEYS, TowerChain, registration, tower_spec

(_REGISTER, UPDATE, _DEREGISTER) = Nodes().calls()
ZERO = {"cores": 0, "memory_mb": 0, "disk_gb": 0, "gpus": 0}
REGISTERED = (2, 1024, 10, 0)
"""What `TowerChain.register` declares."""


def update(node: int, **changes: object) -> Call:
    fields: dict[str, object] = {
        "node_id": NODE_KEYS[node].public, "cores": 2, "memory_mb": 1024, "disk_gb": 10,
        "gpus": 0, "address": "/ip4/127.0.0.1/tcp/1",
    }  # fmt: skip
    fields.update(changes)
    return UPDATE.call(**fields)


def capacity(chain: TowerChain, node: int) -> tuple[int, int, int, int]:
    record = nodes.get_node(chain.state, NODE_KEYS[node].public)
    assert record is not None
    return (record.cores, record.memory_mb, record.disk_gb, record.gpus)


def test_a_node_may_register_offering_no_compute() -> None:
    chain = TowerChain(tower_spec())
    chain.send(BOB, registration(0, BOB, **ZERO))
    assert capacity(chain, 0) == (0, 0, 0, 0)


def test_an_operator_may_withdraw_and_restore_a_nodes_compute() -> None:
    chain = TowerChain(tower_spec())
    chain.register(0)
    chain.send(BOB, update(0, **ZERO))
    assert capacity(chain, 0) == (0, 0, 0, 0)
    chain.send(BOB, update(0))
    assert capacity(chain, 0) == REGISTERED


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (
            {"cores": 0, "memory_mb": 4096, "disk_gb": 10, "gpus": 0},
            "nodes.BelowClassMinimum: class cpu needs cores >= 1, declared 0",
        ),
        (
            {"cores": 2, "memory_mb": 0, "disk_gb": 0, "gpus": 0},
            "nodes.BelowClassMinimum: class cpu needs memory_mb >= 256, declared 0",
        ),
        (
            {"cores": 2, "memory_mb": 1024, "disk_gb": 0, "gpus": 0},
            "nodes.BelowClassMinimum: class cpu needs disk_gb >= 1, declared 0",
        ),
        (
            {**ZERO, "gpus": 1},
            "nodes.BelowClassMinimum: class cpu needs cores >= 1, declared 0",
        ),
    ],
    ids=["no cores", "no memory or disk", "no disk", "only a gpu"],
)
def test_a_capacity_between_zero_and_the_class_minimums_is_refused(
    declared: dict[str, int], message: str
) -> None:
    chain = TowerChain(tower_spec())
    chain.register(0)
    assert chain.refuse(BOB, update(0, **declared)) == message
    assert capacity(chain, 0) == REGISTERED
    assert chain.refuse(CHARLIE, registration(1, CHARLIE, **declared)) == message
    assert nodes.get_node(chain.state, NODE_KEYS[1].public) is None


def test_only_its_operator_may_zero_a_node() -> None:
    chain = TowerChain(tower_spec())
    chain.register(0)  # operated by bob
    chain.register(1)  # operated by charlie
    assert chain.refuse(CHARLIE, update(0, **ZERO)) == (
        "nodes.NotOperator: only the node's operator may do that"
    )
    assert capacity(chain, 0) == REGISTERED
    assert chain.refuse(CHARLIE, update(2, **ZERO)) == (
        f"nodes.UnknownNode: node 0x{NODE_KEYS[2].public.hex()} is not registered"
    )
