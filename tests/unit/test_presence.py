"""A node declares on chain only the compute it can give: no capacity once it has lost it for a
while, its capacity again once it is back, and its registered address kept current. Its prover
starts a proof only when the next block may take it."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from chain.blocks import Call, Header
from chain.broadcast import Broadcast
from chain.keys import Keypair
from chain.runtime import nodes, towers
from testkit.trio_clock import TrioClock
from tests.unit.test_towers import NODE_KEYS, OPERATORS, TowerChain, registration, tower_spec
from vdf.presence import NO_COMPUTE_SECONDS, Capacity, PresenceService
from vdf.prover import TowerJob

ADDRESS = "/ip4/34.1.0.1/tcp/30333"


@dataclass
class StoreFake:
    """The best block of the in-memory chain, and its parent as the anchor of proofs."""

    chain: TowerChain

    def best_state(self) -> Any:
        return self.chain.state

    @property
    def best_header(self) -> Any:
        return SimpleNamespace(number=self.chain.number, parent_hash=b"parent")

    def require_header(self, _: bytes) -> Any:
        return SimpleNamespace(number=self.chain.number - 1, hash=bytes(32))


@dataclass
class ChainFake:
    """What the presence service reads and sends, over an in-memory chain: every transaction
    it sends is put in a block at once."""

    chain: TowerChain
    new_heads: Broadcast[Header] = field(default_factory=Broadcast)
    """Never published to: the services' looks at what is not chain state are what is tested."""

    @property
    def clock(self) -> TrioClock:
        return TrioClock()

    @property
    def store(self) -> Any:
        return StoreFake(self.chain)

    @property
    def runtime(self) -> Any:
        return self.chain.runtime

    def submit_signed(self, keypair: Keypair, call: Call) -> None:
        self.chain.send(keypair, call)


def test_compute_lost_then_back_is_declared_after_a_while_and_the_address_kept_current() -> None:
    chain = TowerChain(tower_spec())
    chain.send(OPERATORS[0], registration(0, OPERATORS[0], address=ADDRESS))
    compute = [True]
    presence = PresenceService(
        ChainFake(chain),  # type: ignore[arg-type]
        operator=OPERATORS[0],
        identity=NODE_KEYS[0],
        node_class="cpu",
        capacity=Capacity(2, 1024, 10, 0),
        address=ADDRESS,
        compute=lambda: compute[0],
    )

    def declared() -> tuple[int, int, int, bytes]:
        record = nodes.get_node(chain.state, NODE_KEYS[0].public)
        assert record is not None
        return record.cores, record.memory_mb, record.disk_gb, record.address

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(presence._keep_registration)
            await trio.sleep(30)
            assert declared() == (2, 1024, 10, ADDRESS.encode())  # nothing to change
            compute[0] = False
            await trio.sleep(NO_COMPUTE_SECONDS / 2)
            assert declared()[0] == 2  # an engine restart takes nothing away
            await trio.sleep(NO_COMPUTE_SECONDS)
            assert declared() == (0, 0, 0, ADDRESS.encode())
            compute[0] = True
            await trio.sleep(NO_COMPUTE_SECONDS * 1.5)
            assert declared() == (2, 1024, 10, ADDRESS.encode())
            presence.address = "/ip4/34.1.0.2/tcp/30333"
            await trio.sleep(NO_COMPUTE_SECONDS * 1.5)
            assert declared()[3] == b"/ip4/34.1.0.2/tcp/30333"
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_the_prover_starts_a_proof_only_when_the_next_block_may_take_it() -> None:
    chain = TowerChain(tower_spec(interval=3))
    chain.register(0)
    chain.execute([])
    chain.prove(0)
    last = towers.get_tower(chain.state, NODE_KEYS[0].public).last_proof_block
    fake = ChainFake(chain)
    presence = PresenceService(
        fake,  # type: ignore[arg-type]
        operator=OPERATORS[0],
        identity=NODE_KEYS[0],
        node_class="cpu",
        capacity=Capacity(2, 1024, 10, 0),
        address=ADDRESS,
    )
    jobs: list[TowerJob] = []

    async def main() -> None:
        async def take() -> None:
            jobs.append(await presence._next_job())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(take)
            for _ in range(2):  # blocks last + 1 and last + 2: too soon for the next proof
                await trio.sleep(5)
                assert jobs == [] and chain.number + 1 < last + 3
                chain.execute([])
                fake.new_heads.publish(None)  # type: ignore[arg-type]
            await trio.sleep(5)
            assert [(j.height, j.anchor_number) for j in jobs] == [(2, chain.number - 1)]
            assert chain.number + 1 == last + 3

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
