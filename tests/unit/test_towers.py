"""Node registration, Time Tower proofs and epoch transitions in the runtime."""

from __future__ import annotations

from dataclasses import replace

import chiavdf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.errors import InvalidTransaction
from chain.genesis import ChainSpec
from chain.keys import Keypair
from chain.runtime import epochs, nodes, system, towers
from chain.runtime.config import NodeClass, TowerConfig
from chain.runtime.nodes import Nodes, NodeStatus, registration_payload
from chain.runtime.towers import Towers, tower_challenge
from chain.vdf import GENERATOR
from tests.factories import ALICE, BOB, CHARLIE, DAVE, MemoryChain, spec_for

ITERATIONS = 1_000
EPOCH = 12
NODE_KEYS = [Keypair.from_seed(bytes([i + 1]) * 32) for i in range(4)]
OPERATORS = [BOB, CHARLIE, DAVE, ALICE]


def tower_spec(
    *, active: int = 2, max_misses: int = 2, jail: int = 1, bond: int = 0, interval: int = 1
) -> ChainSpec:
    spec = spec_for(ALICE, BOB, CHARLIE, DAVE)
    cpu = NodeClass(min_cores=1, min_memory_mb=256, min_disk_gb=1, active_set_size=active)
    tower_config = TowerConfig(
        min_iterations=ITERATIONS, anchor_window=8, epoch_length=EPOCH, max_misses=max_misses,
        jail_epochs=jail, bond=bond, classes={"cpu": cpu}, proof_interval=interval,
    )  # fmt: skip
    return replace(spec, runtime=replace(spec.runtime, towers=tower_config))


(REGISTER, _UPDATE, DEREGISTER) = Nodes().calls()
(SUBMIT,) = Towers().calls()


def registration(node: int, operator: Keypair, **changes: object):  # type: ignore[no-untyped-def]
    """A nodes.register call for NODE_KEYS[node], signed by the node for `operator`."""
    fields: dict[str, object] = {
        "node_id": NODE_KEYS[node].public,
        "node_signature": NODE_KEYS[node].sign(registration_payload(operator.public)),
        "node_class": "cpu", "cores": 2, "memory_mb": 1024, "disk_gb": 10, "gpus": 0,
        "address": "",
    }  # fmt: skip
    fields.update(changes)
    return REGISTER.call(**fields)


class TowerChain(MemoryChain):
    nonces: dict[bytes, int]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.nonces = {}

    def send(self, keypair: Keypair, call) -> object:  # type: ignore[no-untyped-def]
        nonce = self.nonces.get(keypair.public, 0)
        encoded = self.sign(keypair, call, nonce=nonce)
        self.runtime.validate_transaction(self.state, encoded, self.env())
        execution = self.execute([encoded])
        self.nonces[keypair.public] = nonce + 1
        return execution

    def register(self, i: int, cores: int = 2) -> None:
        operator = OPERATORS[i]
        self.send(operator, registration(i, operator, cores=cores, address="/ip4/127.0.0.1/tcp/1"))

    def proof_call(
        self,
        i: int,
        *,
        height: int | None = None,
        anchor: int | None = None,
        iterations: int = ITERATIONS,
        node_for_challenge: int | None = None,
    ):  # type: ignore[no-untyped-def]
        node_id = NODE_KEYS[i].public
        tower = towers.get_tower(self.state, node_id)
        height = tower.height + 1 if height is None else height
        anchor = self.number - 1 if anchor is None else anchor
        anchor_hash = system.recent_block_hash(self.state, anchor) or b"\x00" * 32
        source = NODE_KEYS[node_for_challenge if node_for_challenge is not None else i].public
        challenge = tower_challenge(source, tower.last_y, anchor_hash, height)
        out = chiavdf.prove(challenge, GENERATOR, 1024, iterations, "")
        return SUBMIT.call(
            node_id=node_id,
            height=height,
            anchor_number=anchor,
            iterations=iterations,
            y=out[:100],
            proof=out[100:],
        )

    def prove(self, i: int) -> None:
        self.send(OPERATORS[i], self.proof_call(i))

    def refuse(self, keypair: Keypair, call) -> str:  # type: ignore[no-untyped-def]
        root = self.root
        encoded = self.sign(keypair, call, nonce=self.nonces.get(keypair.public, 0))
        with pytest.raises(InvalidTransaction) as info:
            self.runtime.validate_transaction(self.state, encoded, self.env())
        assert self.root == root
        return info.value.message

    def skip_to_epoch_end(self) -> None:
        while (self.number + 1) % EPOCH:
            self.execute([])

    def status(self, i: int) -> NodeStatus:
        record = nodes.get_node(self.state, NODE_KEYS[i].public)
        assert record is not None
        return record.status


def test_registration_and_its_errors() -> None:
    chain = TowerChain(tower_spec(bond=5_000_000))
    before = system.account(chain.state, BOB.public).free
    chain.register(0)
    record = nodes.get_node(chain.state, NODE_KEYS[0].public)
    assert (
        record is not None and record.operator == BOB.public and record.status is NodeStatus.STANDBY
    )
    assert nodes.reserved(chain.state, BOB.public) == 5_000_000
    assert system.account(chain.state, BOB.public).free < before - 5_000_000
    again = registration(0, BOB)
    assert chain.refuse(BOB, again).startswith("nodes.NodeExists")
    forged = registration(1, BOB)  # node 1 signed for bob; charlie submits it
    assert chain.refuse(CHARLIE, forged).startswith("nodes.BadNodeSignature")
    small = registration(1, CHARLIE, cores=0)
    assert (
        chain.refuse(CHARLIE, small)
        == "nodes.BelowClassMinimum: class cpu needs cores >= 1, declared 0"
    )
    gpu = registration(1, CHARLIE, node_class="gpu", cores=8, memory_mb=8192, gpus=1)
    assert chain.refuse(CHARLIE, gpu).startswith(
        "nodes.UnknownClass: class 'gpu' is not one of cpu"
    )
    chain.send(BOB, DEREGISTER.call(node_id=NODE_KEYS[0].public))
    assert nodes.get_node(chain.state, NODE_KEYS[0].public) is None
    assert nodes.reserved(chain.state, BOB.public) == 0


def test_proofs_extend_the_tower_and_bad_ones_are_refused() -> None:
    chain = TowerChain(tower_spec())
    chain.register(0)
    chain.register(1)
    chain.execute([])
    chain.prove(0)
    chain.prove(0)
    assert towers.get_tower(chain.state, NODE_KEYS[0].public).height == 2
    replay = chain.proof_call(0, height=2)
    assert chain.refuse(BOB, replay).startswith("towers.WrongHeight: the tower is at height 2")
    assert chain.refuse(BOB, chain.proof_call(0, anchor=chain.number + 5)).startswith(
        "towers.StaleAnchor"
    )
    chain.execute([])
    old = chain.proof_call(0, anchor=0)
    for _ in range(9):
        chain.execute([])
    assert chain.refuse(BOB, old).startswith(
        "towers.StaleAnchor: anchor #0 is not one of the last 8"
    )
    few = chain.proof_call(0, iterations=ITERATIONS - 1)
    assert (
        chain.refuse(BOB, few)
        == f"towers.TooFewIterations: {ITERATIONS - 1} iterations, at least {ITERATIONS} required"
    )
    good = chain.proof_call(0)
    values = SUBMIT.decode_args(good.args)
    flipped = bytearray(values[5])
    flipped[10] ^= 1
    forged = SUBMIT.call(
        node_id=values[0],
        height=values[1],
        anchor_number=values[2],
        iterations=values[3],
        y=values[4],
        proof=bytes(flipped),
    )
    assert (
        chain.refuse(BOB, forged)
        == "towers.InvalidProof: the proof does not verify for this node, height and anchor"
    )
    short = SUBMIT.call(
        node_id=values[0],
        height=values[1],
        anchor_number=values[2],
        iterations=values[3],
        y=values[4][:50],
        proof=values[5],
    )
    assert chain.refuse(BOB, short).startswith("towers.MalformedProof")
    assert (
        chain.refuse(CHARLIE, good) == "towers.WrongNode: proofs of a node come from its operator"
    )
    copied = chain.proof_call(1, node_for_challenge=0)  # node 1 presents a proof made for node 0
    assert chain.refuse(CHARLIE, copied).startswith("towers.InvalidProof")


def test_a_proof_comes_no_sooner_than_the_interval_after_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chain = TowerChain(tower_spec(interval=3))
    chain.register(0)
    chain.execute([])
    chain.prove(0)  # the first proof waits for nothing
    last = towers.get_tower(chain.state, NODE_KEYS[0].public).last_proof_block
    verified: list[bytes] = []
    monkeypatch.setattr(
        towers,
        "verify_vdf",
        lambda *args: verified.append(args[0]) or True,  # type: ignore[func-returns-value]
    )
    early = chain.proof_call(0)
    message = chain.refuse(BOB, early)
    assert message == (
        f"towers.TooSoon: the last proof is in block #{last}: the next may be in "
        f"#{last + 3} or later, not #{last + 1}"
    )
    chain.execute([])
    assert chain.refuse(BOB, chain.proof_call(0)).startswith("towers.TooSoon")
    assert verified == []  # refused before the proof's costly check
    monkeypatch.undo()
    chain.execute([])
    chain.prove(0)
    tower = towers.get_tower(chain.state, NODE_KEYS[0].public)
    assert (tower.height, tower.last_proof_block) == (2, last + 3)


def test_epochs_activate_demote_jail_and_release() -> None:
    chain = TowerChain(tower_spec(active=2, max_misses=2, jail=1))
    for i in range(3):
        chain.register(i)
    chain.execute([])
    for i, proofs in enumerate((3, 2, 1)):
        for _ in range(proofs):
            chain.prove(i)
    chain.skip_to_epoch_end()
    chain.execute([])  # epoch 1 starts: the two longest towers are active
    assert [chain.status(i) for i in range(3)] == [
        NodeStatus.ACTIVE,
        NodeStatus.ACTIVE,
        NodeStatus.STANDBY,
    ]
    assert epochs.current_epoch(chain.state).active == 2
    # Epoch 1: node 1 stops proving.
    chain.prove(0)
    chain.prove(2)
    chain.skip_to_epoch_end()
    chain.execute([])
    assert [chain.status(i) for i in range(3)] == [
        NodeStatus.ACTIVE,
        NodeStatus.STANDBY,
        NodeStatus.ACTIVE,
    ]
    assert (NODE_KEYS[1].public, "demoted") in epochs.last_changes(chain.state)
    chain.prove(0)
    chain.prove(2)
    chain.skip_to_epoch_end()
    chain.execute([])  # second miss: jailed for one epoch
    assert chain.status(1) is NodeStatus.JAILED
    chain.prove(0)
    chain.prove(1)  # a jailed node may keep its tower growing
    chain.prove(2)
    chain.skip_to_epoch_end()
    chain.execute(
        []
    )  # jail over, but it proved in the jailed epoch: eligible, standby behind longer towers
    assert chain.status(1) is NodeStatus.STANDBY


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(st.sampled_from(["prove", "forge", "skip"]), min_size=3, max_size=3),
        min_size=1,
        max_size=4,
    )
)
def test_tower_invariants(plan: list[list[str]]) -> None:
    """Heights grow only by valid proofs; jailed nodes are never active; the active set
    never exceeds its size."""
    chain = TowerChain(tower_spec(active=2, max_misses=1, jail=1))
    for i in range(3):
        chain.register(i)
    chain.execute([])
    for epoch_plan in plan:
        for i, action in enumerate(epoch_plan):
            before = towers.get_tower(chain.state, NODE_KEYS[i].public).height
            if action == "prove":
                chain.prove(i)
                assert towers.get_tower(chain.state, NODE_KEYS[i].public).height == before + 1
            elif action == "forge":
                chain.refuse(OPERATORS[i], chain.proof_call(i, iterations=ITERATIONS - 1))
                assert towers.get_tower(chain.state, NODE_KEYS[i].public).height == before
        chain.skip_to_epoch_end()
        chain.execute([])
        statuses = [chain.status(i) for i in range(3)]
        assert statuses.count(NodeStatus.ACTIVE) <= 2
        for i, action in enumerate(epoch_plan):
            if action != "prove":
                assert statuses[i] is not NodeStatus.ACTIVE
